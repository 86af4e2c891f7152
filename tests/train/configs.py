"""A small TrainConfig for loop-level tests on the tiny generated dataset."""

from graphtrain.config import ModelConfig, TrainConfig


def tiny_train_config(**overrides) -> TrainConfig:
    base = dict(
        dataset="unused", partitions="unused", output="unused", source_domain="books", target_domain="movies",
        model=ModelConfig(embedding_dim=16), epochs=3, batch_size=256, fanouts=(5, 5), learning_rate=0.02,
    )
    return TrainConfig(**{**base, **overrides})
