"""What a train worker reads: sizes, popularity, its edges, edge weights, and the
validation sample.

``TrainData.from_partitions`` is the cluster path: a worker reads the dataset's
``meta.json``, its own partition's train edges and every partition's per-item counts
(``graph.train_shards``); edge weights are memory-mapped; rank 0 reads a bounded
sample of valid users. ``TrainData.from_dataset`` serves an in-process graph whose
ids are the dataset's (tests, benchmarks, the GPU machine without Ray).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from graphtrain import storage
from graphtrain.data.dataset import Dataset
from graphtrain.graph.sampling import EdgeWeights
from graphtrain.models.alpha import alpha_of
from graphtrain.names import USER, canonical_etypes, item_type
from graphtrain.train.edges import TrainEdges


@dataclass
class TrainData:
    domains: list[str]
    num_users: int
    num_items: dict[str, int]
    popularity: dict[str, np.ndarray]  # train interactions per item (float32)
    edge_counts: list[int]  # train edges per partition
    load_edges: Callable[[int], TrainEdges]  # one partition's train edges
    raw_weights: "dict[str, np.ndarray] | EdgeWeights"  # interaction weights: by dataset edge id, or by graph edge id
    validation_sample: Callable[[str, Optional[int], int], Dataset]  # (domain, max users, seed) -> rows to validate on

    @property
    def num_nodes(self) -> dict[str, int]:
        return {USER: self.num_users, **{item_type(d): self.num_items[d] for d in self.domains}}

    def edge_alpha(self, mode: str) -> "dict[str, np.ndarray] | EdgeWeights | None":
        """The sampler's ``edge_weights`` for ``ModelConfig.edge_weights`` = ``mode``."""
        if mode == "none":
            return None
        raw = self.raw_weights
        if isinstance(raw, dict):
            return {d: alpha_of(w, mode) for d, w in raw.items()}
        return lambda etype, ids: alpha_of(raw(etype, ids), mode)

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> "TrainData":
        """A loaded dataset as one partition (an in-process graph over dataset ids)."""
        from graphtrain.models.popularity import item_popularity

        edges = TrainEdges.from_dataset(dataset)

        def sample(domain: str, max_users: Optional[int], seed: int) -> Dataset:
            return dataset  # Validation takes the sample of max_users

        return cls(
            domains=dataset.domains, num_users=dataset.num_users,
            num_items={d: dataset.num_items(d) for d in dataset.domains},
            popularity={d: item_popularity(dataset, d) for d in dataset.domains},
            edge_counts=[len(edges)], load_edges=lambda part: edges,
            raw_weights={d: dataset.train_edge_weights(d) for d in dataset.domains},
            validation_sample=sample,
        )

    @classmethod
    def from_partitions(cls, partitions_dir: str, dataset_uri: str, partitions_uri: Optional[str] = None) -> "TrainData":
        """A partition artifact's local copy (its small files: ``graph.client``), the
        artifact's URI where train edges are read (default: the copy), and the
        dataset's URI; reads no edges yet."""
        partitions_uri = partitions_uri or partitions_dir
        from graphtrain.graph import train_shards

        meta = storage.read_json(storage.join(dataset_uri, "meta.json"))
        domains = sorted(meta["domains"])  # the order train_shards' domain column indexes
        num_items = {d: int(meta["num_items"][d]) for d in domains}

        def load_edges(part: int) -> TrainEdges:
            columns = ("domain", "user_idx", "item_idx", "edge_id")  # not the weights
            return TrainEdges.from_columns(domains, train_shards.read_train_edges(partitions_uri, part, columns))

        def sample(domain: str, max_users: Optional[int], seed: int) -> Dataset:
            users = max_users if max_users is not None else int(meta["num_users"])
            return Dataset.load_user_sample(dataset_uri, domain, "valid", users, seed)

        return cls(
            domains=domains, num_users=int(meta["num_users"]), num_items=num_items,
            popularity=train_shards.item_popularity(partitions_dir, domains, num_items),
            edge_counts=train_shards.train_edge_counts(partitions_uri), load_edges=load_edges,
            raw_weights=train_shards.PartitionedEdgeWeights(partitions_dir, canonical_etypes(domains)),
            validation_sample=sample,
        )
