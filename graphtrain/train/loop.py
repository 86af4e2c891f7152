"""The per-worker training loop: a plain function of a config and a graph source.

It runs the same under Ray Train (:mod:`graphtrain.train.trainer` supplies a
``DistGraphSource`` and a reporter that checkpoints through Ray) and without Ray
(a ``LocalGraphSource``; how it is measured on a GPU machine that has no Ray).
Every worker iterates its own shard of the training edges; shards have equal size so
DDP workers take the same number of steps.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist

from graphtrain.config import TrainConfig
from graphtrain.data.dataset import Dataset
from graphtrain.graph.batch import MiniBatch
from graphtrain.graph.sampling import EdgeBatchSampler, GraphSource
from graphtrain.models.gnn import MigrationGNN
from graphtrain.models.losses import alignment_loss, bpr_loss, l2_penalty
from graphtrain.names import item_type
from graphtrain.train.data import TrainData
from graphtrain.train.edges import TrainEdges, load_share, plan_shares
from graphtrain.train.embeddings import DISTRIBUTED, REPLICATED, KVStoreEmbeddings, placement, set_learning_rate
from graphtrain.train.validation import Validation, learning_rate_at, should_stop, stop_reason

# report(epoch, metrics, model, optimizer, history) -> None; called after every epoch.
Reporter = Callable[[int, dict, MigrationGNN, torch.optim.Optimizer, list], None]


def rank_partitions_of(source: GraphSource, world_size: int) -> list[Optional[int]]:
    """The partition every rank samples in-process (gathered from all ranks)."""
    if not _distributed(world_size):
        return [source.local_partition]
    gathered: list[Optional[int]] = [None] * world_size
    dist.all_gather_object(gathered, source.local_partition)
    return gathered


def my_edges(data: TrainData, source: GraphSource, rank: int, world_size: int, seed: int) -> tuple[TrainEdges, int]:
    """This rank's share of the train edges (read from its own partition first) and
    the share size every rank pads to."""
    shares, size = plan_shares(data.edge_counts, rank_partitions_of(source, world_size))
    return load_share(shares[rank], data.load_edges, data.domains, seed), size


def pick_device(gpu: bool) -> torch.device:
    if gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class BatchLoss(torch.nn.Module):
    """The whole loss of one mini-batch as a module, so DDP sees every parameter use
    (the transfer head included) inside one ``forward``.

    BPR per domain, L2 on the rows used, and the transfer head's own BPR: target
    items ranked from T(m_u) alone, which trains T on users with source history.
    Optionally, an alignment loss pulls T(m_u) toward the target-side representation
    of users who have both histories.
    """

    def __init__(self, model: MigrationGNN, config: TrainConfig):
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, batch) -> torch.Tensor:
        model, config = self.model, self.config
        final, source_message = model.propagate(batch.input_nodes, batch.layers)
        loss = final["user"].new_zeros(())
        for domain, pairs in batch.pairs.items():
            items = final[f"item@{domain}"]
            users = model.user_representation(final["user"], source_message, domain)[pairs.users]
            pos, neg = items[pairs.pos_items], items[pairs.neg_items]
            loss = loss + bpr_loss(model.score(users, pos), model.score(users, neg))
            loss = loss + config.weight_decay * l2_penalty(users, pos, neg.flatten(0, 1))
            if domain == model.target_domain and model.transfer is not None and source_message is not None:
                mapped = model.transfer(source_message[pairs.users])  # T(m_u) alone, for both terms below
                transferred = model.augment_users(mapped)
                loss = loss + config.transfer_loss_weight * bpr_loss(
                    model.score(transferred, pos), model.score(transferred, neg)
                )
                if config.alignment_loss_weight > 0:
                    overlapping = source_message[pairs.users].abs().sum(1) > 0  # has source history too
                    loss = loss + config.alignment_loss_weight * alignment_loss(mapped, final["user"][pairs.users], overlapping)
        return loss


def train_worker(
    config: TrainConfig,
    data: "TrainData | Dataset",
    source: GraphSource,
    *,
    rank: int = 0,
    world_size: int = 1,
    report: Optional[Reporter] = None,
    resume: Optional[Callable[[MigrationGNN, torch.optim.Optimizer], tuple[int, list]]] = None,
    max_steps: Optional[int] = None,
) -> list[dict]:
    """Train for ``config.epochs`` epochs; returns per-epoch metrics of this worker.

    ``resume(model, optimizer)`` restores state and returns (last finished epoch,
    history); ``report`` is called after each epoch (checkpointing lives there).
    ``max_steps`` caps steps per epoch (benchmarks). ``data`` is what the worker reads
    (:class:`TrainData`); a loaded ``Dataset`` stands for its in-process graph.
    """
    if isinstance(data, Dataset):
        data = TrainData.from_dataset(data)
    torch.manual_seed(config.seed)
    device = pick_device(config.gpu)
    node_embeddings = None
    if placement(config, data.num_nodes, source.has_kvstore) == DISTRIBUTED:
        node_embeddings = KVStoreEmbeddings(source, data.num_nodes, config.model.embedding_dim)
    model = MigrationGNN(config.model, data.num_nodes, config.source_domain, config.target_domain, node_embeddings)
    popularity = data.popularity
    model.init_item_bias({item_type(d): torch.from_numpy(counts) for d, counts in popularity.items()})
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    sparse_optimizer = node_embeddings.optimizer(config.learning_rate) if node_embeddings is not None else None
    first_epoch, history = 0, []
    if resume is not None:
        last, history = resume(model, optimizer)
        first_epoch = last + 1
    if node_embeddings is not None and _distributed(world_size):
        dist.barrier()  # rank 0 has written the restored tables before anyone trains
    model.to(device)
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                state[key] = value.to(device)
    step_loss: torch.nn.Module = BatchLoss(model, config)
    if _distributed(world_size):
        step_loss = torch.nn.parallel.DistributedDataParallel(
            step_loss, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    edges, share_size = my_edges(data, source, rank, world_size, config.seed)
    sampler = EdgeBatchSampler(
        source, data.domains, data.num_items, config.fanouts,
        config.num_negatives, negative_weights=popularity if config.negatives == "popularity" else None,
        edge_weights=data.edge_alpha(config.model.edge_weights),
    )
    # Rank 0 validates and decides; the others follow its decision.
    validation = None
    if rank == 0:
        sample = data.validation_sample(config.target_domain, config.validation_users, config.seed)
        validation = Validation.of(sample, config.target_domain, config.seed, sampler, source, device, config.validation_users)
    run_started, epochs_run = time.perf_counter(), 0
    for epoch in range(first_epoch, config.epochs):
        if should_stop(history, config.patience):  # a resumed run that had already stopped early
            break
        learning_rate = learning_rate_at(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        if sparse_optimizer is not None:
            set_learning_rate(sparse_optimizer, learning_rate)
        shard = edges.epoch(share_size, epoch, config.seed, rank)
        rng = seed_epoch(source, config.seed, epoch, rank)
        started, sample_s, seeds, total_loss, steps = time.perf_counter(), 0.0, 0, 0.0, 0
        step_loss.train()
        begins = list(range(0, len(shard.users), config.batch_size))[: max_steps or config.max_steps_per_epoch]
        for group in range(0, len(begins), config.batches_per_draw):
            t0 = time.perf_counter()
            batches = sampler.sample_group([shard.rows(b, config.batch_size) for b in begins[group:group + config.batches_per_draw]], rng)
            sample_s += time.perf_counter() - t0
            for batch in batches:
                t0 = time.perf_counter()
                batch = batch.to(device)
                sample_s += time.perf_counter() - t0
                total_loss += _train_step(batch, step_loss, optimizer, sparse_optimizer)
                seeds += batch.num_seeds
                steps += 1
        seconds = time.perf_counter() - started
        metrics = {
            "epoch": epoch,
            "loss": total_loss / max(steps, 1),
            "steps": steps,
            "seeds": seeds,
            "epoch_seconds": seconds,
            "sample_seconds": sample_s,
            "seeds_per_s": seeds / seconds if seconds > 0 else 0.0,
            "learning_rate": learning_rate,
            "device": device.type,
            "embeddings": DISTRIBUTED if node_embeddings is not None else REPLICATED,
        }
        if validation is not None:
            started = time.perf_counter()
            metrics.update(validation(model))
            metrics["valid_seconds"] = time.perf_counter() - started
        history.append(metrics)
        epochs_run += 1
        # Rank 0 decides (it holds the validation); the reason goes into this epoch's
        # metrics, so the checkpoint and the report say why training ended.
        reason = stop_reason(history, config, time.perf_counter() - run_started, epochs_run) if rank == 0 else None
        if reason is not None:
            metrics["stopped"] = reason
        if report is not None:
            report(epoch, metrics, model, optimizer, history)
        if _stop_everywhere(reason is not None, world_size, device):
            break
    return history


def _train_step(batch: MiniBatch, step_loss: torch.nn.Module, optimizer, sparse_optimizer) -> float:
    """One optimiser step on ``batch``; returns its loss."""
    loss = step_loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if sparse_optimizer is not None:
        sparse_optimizer.zero_grad()  # DGL: the step below then clears the rows it used
        sparse_optimizer.step()  # collective across workers: every rank steps every batch
    return float(loss.detach())


def seed_epoch(source: GraphSource, seed: int, epoch: int, rank: int) -> np.random.Generator:
    """Seed every RNG one epoch draws from (seed, epoch, rank) alone.

    The sampler's state is then a function of numbers a checkpoint already holds
    (config seed, epoch, rank), so a resumed run draws the same batches, negatives and
    (in-process) neighbours as an uninterrupted one. Returns the negatives' generator.
    """
    epoch_seed = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0] >> 1)  # DGL takes an int32
    torch.manual_seed(epoch_seed)
    source.seed(epoch_seed)
    return np.random.default_rng([seed, epoch, rank, 1])


def _distributed(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def _stop_everywhere(stop: bool, world_size: int, device: torch.device) -> bool:
    """Rank 0's early-stopping decision, shared with every worker (DDP steps in lockstep)."""
    if _distributed(world_size):
        flag = torch.tensor([1 if stop else 0], device=device)  # NCCL needs it on the GPU
        dist.broadcast(flag, src=0)
        return bool(flag.item())
    return stop

