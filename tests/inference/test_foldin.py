"""Fold-in reproduces full-graph inference, and its explanations add up where the
model is linear."""

import numpy as np
import pytest

from graphtrain.config import ModelConfig
from graphtrain.inference.foldin import FoldIn, Neighbourhood, known_neighbourhoods
from tests.small_model import DOMAINS, N_USERS, small_artifact as _artifact

CONFIGS = [
    ModelConfig(embedding_dim=8, transfer_hidden=6),
    ModelConfig(embedding_dim=8, transfer_hidden=6, lightgcn=False),
    ModelConfig(embedding_dim=8, transfer_hidden=6, edge_weights="log1p", num_layers=3),
    ModelConfig(embedding_dim=8, transfer=False, item_bias=False),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["lightgcn", "learned-W", "weighted-3-layers", "no-transfer"])
def test_fold_in_of_an_unchanged_neighbourhood_is_the_exported_vector(config):
    artifact, _, _ = _artifact(config)
    fold = FoldIn(artifact)
    for user in range(N_USERS):
        hoods = known_neighbourhoods(artifact, fold, user)
        for d in DOMAINS:
            exported = artifact.user_vector(d, user)
            folded = fold.scoring_vectors(fold.user_input_of(user), hoods, d)
            np.testing.assert_allclose(folded, exported, rtol=1e-4, atol=1e-5, err_msg=f"user {user} domain {d}")


def test_a_new_interaction_moves_the_user_toward_the_item_side():
    artifact, _, _ = _artifact(CONFIGS[0])
    fold = FoldIn(artifact)
    new_user = fold.user_input_of(None)
    empty = {d: Neighbourhood.of([], []) for d in DOMAINS}
    before = fold.scoring_vectors(new_user, empty, "movies")
    with_books = {**empty, "books": Neighbourhood.of([3, 4, 5], [1, 1, 1])}
    after = fold.scoring_vectors(new_user, with_books, "movies")
    assert not np.allclose(before, after)  # source history reaches the target vector (transfer head)


def test_contributions_add_up_for_a_linear_model():
    config = ModelConfig(embedding_dim=8, transfer=False)
    artifact, _, _ = _artifact(config)
    fold = FoldIn(artifact)
    user = 7
    hoods = known_neighbourhoods(artifact, fold, user)
    item_vector = np.asarray(artifact.item_vectors("movies")[2])
    score, parts = fold.contributions(fold.user_input_of(user), hoods, "movies", item_vector)
    zero = {d: np.zeros(len(h), dtype=np.float32) for d, h in hoods.items()}
    own = float(fold.scoring_vector(fold.state(fold.user_input_of(user), hoods, zero), "movies") @ item_vector)
    assert len(parts) == sum(len(h) for h in hoods.values()) > 0
    assert sum(c for _, _, c in parts) == pytest.approx(score - own, rel=1e-4, abs=1e-5)
    assert score == pytest.approx(float(artifact.user_vector("movies", user) @ item_vector), rel=1e-4, abs=1e-5)
