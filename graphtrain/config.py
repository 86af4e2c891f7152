"""Typed, validated configs: one per stage.

Each config validates itself on construction and raises :class:`ConfigError` naming
the field, the value and the fix. Configs are plain dataclasses so they pickle to
Ray workers unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

from graphtrain import storage
from graphtrain.errors import ConfigError

DOMAIN_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
SPLITS = ("auto", "column", "leave-one-out", "ratio", "temporal")
LR_SCHEDULES = ("cosine", "constant")
NEGATIVES = ("uniform", "popularity")
EMBEDDINGS = ("auto", "replicated", "distributed")
DEDUPE = ("latest", "sum")
PARTITION_METHODS = ("auto", "metis", "random", "hash")
MAX_BATCHES_PER_DRAW = 16  # EdgeBatchSampler marks nodes and edges with one bit per batch (its _MARK type)
# alpha_ij: "none" = degree normalisation only; "weight" / "log1p" = the edges'
# interaction weights (raw, or log(1 + w) for heavy-tailed counts and dwell times).
EDGE_WEIGHTS = ("none", "weight", "log1p")


def _positive(name: str, value: int | float) -> None:
    if not value > 0:
        raise ConfigError(name, value, "must be > 0")


def _fraction(name: str, value: float, *, upper_open: bool = True) -> None:
    ok = 0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0
    if not ok:
        raise ConfigError(name, value, "must be a fraction in [0, 1)")


def resolve_paths(config, *names: str) -> None:
    """Make the local paths in ``names`` absolute, against the working directory of
    the person who typed them: Ray workers, actors and jobs have working
    directories of their own. URIs with a scheme (s3://, gs://) are left as given."""
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            resolved = tuple(absolute(v) for v in value)
        else:
            resolved = absolute(value)
        object.__setattr__(config, name, resolved)


def absolute(uri: str) -> str:
    """A local path made absolute (against the working directory); a URI with a scheme as given."""
    return storage.local_path(uri) if isinstance(uri, str) and storage.is_local(uri) else uri


def check_domain(name: str, value: str) -> None:
    if not isinstance(value, str) or not DOMAIN_NAME.match(value):
        raise ConfigError(name, value, "domain names use letters, digits, '_' and '-' only")


@dataclass(frozen=True)
class IngestConfig:
    """Read interaction logs, validate, normalise, split and write a dataset artifact."""

    inputs: Sequence[str]
    output: str
    source_domain: Optional[str] = None
    target_domain: Optional[str] = None
    domain: Optional[str] = None  # stands in for a missing `domain` column
    strict: bool = False
    # "auto": honour a `split` column when every row has one, else leave-one-out.
    split: str = "auto"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # for "ratio" and "temporal"
    cold_start_fraction: float = 0.2
    dedupe: str = "latest"  # or "sum": keep the latest row, summing repeated weights
    min_interactions: int = 0  # k-core filter; 0 or 1 = off
    id_maps: Optional[str] = None  # an earlier dataset whose indices must be kept
    storage_options: dict = field(default_factory=dict)  # pyarrow/fsspec filesystem options
    seed: int = 0
    # User buckets rows are shuffled into (each a Ray task's share); None: one per
    # BUCKET_INPUT_BYTES of input, at least 2.
    buckets: Optional[int] = None

    def __post_init__(self):
        if self.buckets is not None and not 1 <= self.buckets <= 65536:
            raise ConfigError("buckets", self.buckets, "use 1..65536, or leave it unset to size it from the input")
        if isinstance(self.inputs, str) or not self.inputs:
            raise ConfigError("inputs", self.inputs, "give a list of one or more URIs")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        resolve_paths(self, "inputs", "output", "id_maps")
        for name in ("source_domain", "target_domain", "domain"):
            value = getattr(self, name)
            if value is not None:
                check_domain(name, value)
        if (self.source_domain is None) != (self.target_domain is None):
            raise ConfigError(
                "target_domain", self.target_domain, "set both source_domain and target_domain, or neither"
            )
        if self.source_domain is not None and self.source_domain == self.target_domain:
            raise ConfigError("target_domain", self.target_domain, "must differ from source_domain")
        if self.split not in SPLITS:
            raise ConfigError("split", self.split, f"use one of {SPLITS}")
        fractions = tuple(float(f) for f in self.split_fractions)
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError("split_fractions", self.split_fractions, "give three non-negative fractions summing to 1")
        object.__setattr__(self, "split_fractions", fractions)
        _fraction("cold_start_fraction", self.cold_start_fraction)
        if self.dedupe not in DEDUPE:
            raise ConfigError("dedupe", self.dedupe, f"use one of {DEDUPE}")
        if self.min_interactions < 0:
            raise ConfigError("min_interactions", self.min_interactions, "must be >= 0 (0 turns the k-core filter off)")


@dataclass(frozen=True)
class PartitionConfig:
    dataset: str
    output: str
    num_parts: int = 1
    method: str = "auto"

    def __post_init__(self):
        resolve_paths(self, "dataset", "output")
        _positive("num_parts", self.num_parts)
        if self.method not in PARTITION_METHODS:
            raise ConfigError("method", self.method, f"use one of {PARTITION_METHODS}")


@dataclass(frozen=True)
class ModelConfig:
    """The migration GNN (DESIGN.md "Transfer learning").

    ``lightgcn=True`` is the special case W = I, sigma = identity: the default, as it
    scored better than learned W + LeakyReLU in the sport->cloth tuning runs (the
    learned-W layer was not rerun at the final learning rate and weight decay).
    """

    embedding_dim: int = 64
    num_layers: int = 2
    lightgcn: bool = True
    transfer: bool = True
    transfer_hidden: int = 128
    item_bias: bool = True  # score u·i + b_i (b_i learns item popularity)
    edge_weights: str = "none"  # EDGE_WEIGHTS: what alpha_ij is made of

    def __post_init__(self):
        _positive("embedding_dim", self.embedding_dim)
        _positive("num_layers", self.num_layers)
        _positive("transfer_hidden", self.transfer_hidden)
        if self.edge_weights not in EDGE_WEIGHTS:
            raise ConfigError("edge_weights", self.edge_weights, f"use one of {EDGE_WEIGHTS}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    dataset: str
    partitions: str
    output: str
    source_domain: str
    target_domain: str
    model: ModelConfig = field(default_factory=ModelConfig)
    workers: int = 2
    epochs: int = 5
    batch_size: int = 1024
    fanouts: tuple[int, ...] = (10, 10)
    num_negatives: int = 1
    # Mini-batches whose neighbourhoods are drawn together (EdgeBatchSampler.sample_group):
    # one draw per layer, and so one request per remote partition, serves them all.
    # 1 draws every batch alone, as DGL's NeighborSampler does. Measured (sport_cloth,
    # bench/scaling.py, alternating in one session): scaling efficiency medians 0.78,
    # 0.77 at 8 and 0.88, 0.88 at 16 (two nodes 211-275k and 297-332k seeds/s); 32 no
    # better. bench/quality.py, seeds 0 and 1: every case and metric of 16 within 2.2 %
    # of 8 (cold-start sampled NDCG@10 0.0910, 0.0913 against 0.0914, 0.0921), where
    # the two seeds differ by up to 19 %.
    batches_per_draw: int = MAX_BATCHES_PER_DRAW
    negatives: str = "uniform"  # or "popularity": drawn in proportion to training interactions
    learning_rate: float = 0.005
    # L2 on the representations a batch scores; sparse interaction data needs it strong
    # (sport->cloth cold-start valid NDCG@10, LightGCN layer: best 0.062 at 1e-4, 0.078 at 0.1).
    weight_decay: float = 0.1
    # Weight of the transfer head's own BPR term (target items ranked from T(m_u) alone).
    # Measured, seed 0, 6 epochs (bench/quality.py): 1.0 gave sport->cloth cold sampled
    # NDCG@10 0.0836 but phone->electronic warm 0.1318 (< LightGCN target-only 0.1333);
    # 0.1 gave 0.0757 and 0.1422; 0 gave 0.0733 and 0.1405.
    transfer_loss_weight: float = 0.1
    # Optional alignment loss on overlapping users: ||T(m_u) - h_u||^2 (DESIGN.md "Loss"); 0 = off.
    alignment_loss_weight: float = 0.0
    lr_schedule: str = "cosine"  # or "constant"; cosine decays to 0 over `epochs`
    # Per-epoch validation scores the valid rows of a seeded sample of this many
    # target users (bounded on any graph; None: every valid user).
    validation_users: Optional[int] = 5000
    max_steps_per_epoch: Optional[int] = None  # cap on steps per epoch (benchmarks; None: the whole shard)
    patience: int = 3  # stop after this many epochs without a better valid NDCG@10; 0 = never
    # Wall-clock seconds of training (None: no limit): no epoch starts that would end
    # past it, by the mean epoch time so far; export then takes the best epoch.
    time_budget_s: Optional[float] = None
    # Node embedding tables: "replicated" (nn.Embedding on every worker, DDP), "distributed"
    # (DGL KVStore beside the graph partitions, sparse updates) or "auto": distributed once
    # the tables and their Adam moments would exceed `replicated_embeddings_mb` per worker.
    embeddings: str = "auto"
    replicated_embeddings_mb: int = 2048
    gpu: bool = False
    seed: int = 0
    # A checkpoint (or checkpoints root) whose weights a new run starts from; the
    # dataset must keep its id maps (ingest --id-maps). A resumed run ignores it.
    warm_start: Optional[str] = None

    def __post_init__(self):
        resolve_paths(self, "dataset", "partitions", "output", "warm_start")
        check_domain("source_domain", self.source_domain)
        check_domain("target_domain", self.target_domain)
        if self.embeddings not in EMBEDDINGS:
            raise ConfigError("embeddings", self.embeddings, f"use one of {EMBEDDINGS}")
        _positive("replicated_embeddings_mb", self.replicated_embeddings_mb)
        for name in ("workers", "epochs", "batch_size", "batches_per_draw", "num_negatives", "learning_rate"):
            _positive(name, getattr(self, name))
        object.__setattr__(self, "fanouts", tuple(int(f) for f in self.fanouts))
        if len(self.fanouts) != self.model.num_layers:
            raise ConfigError(
                "fanouts", self.fanouts, f"give one fanout per GNN layer ({self.model.num_layers} layers)"
            )
        if any(f <= 0 for f in self.fanouts):
            raise ConfigError("fanouts", self.fanouts, "every fanout must be > 0")
        if self.batches_per_draw > MAX_BATCHES_PER_DRAW:
            raise ConfigError("batches_per_draw", self.batches_per_draw, f"use 1 to {MAX_BATCHES_PER_DRAW}")
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", self.weight_decay, "must be >= 0")
        for name in ("transfer_loss_weight", "alignment_loss_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "must be >= 0")
        if self.negatives not in NEGATIVES:
            raise ConfigError("negatives", self.negatives, f"use one of {NEGATIVES}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError("lr_schedule", self.lr_schedule, f"use one of {LR_SCHEDULES}")
        for name in ("validation_users", "max_steps_per_epoch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1, or None for no cap")
        if self.patience < 0:
            raise ConfigError("patience", self.patience, "must be >= 0 (0 turns early stopping off)")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError("time_budget_s", self.time_budget_s, "give a positive number of seconds, or None for no limit")


@dataclass(frozen=True)
class EvalConfig:
    dataset: str
    model: str
    output: str
    ks: tuple[int, ...] = (10, 20)
    # Full ranking over a seeded sample of this many test users per group (warm,
    # cold); None: every test user.
    max_users: Optional[int] = None

    def __post_init__(self):
        resolve_paths(self, "dataset", "model", "output")
        if not self.ks or any(k <= 0 for k in self.ks):
            raise ConfigError("ks", self.ks, "give positive cut-offs, e.g. (10, 20)")
        if self.max_users is not None and self.max_users < 1:
            raise ConfigError("max_users", self.max_users, "must be >= 1, or None for every test user")


@dataclass(frozen=True)
class ServeConfig:
    """`graphtrain serve`: the Ray Serve app (``graphtrain.serve.app``).

    ``replicas`` is a fixed count; setting ``max_replicas`` instead turns on Serve's
    autoscaling between ``min_replicas`` and ``max_replicas`` at
    ``target_ongoing_requests`` per replica. ``interaction_log`` is where folded-in
    interactions are kept (default: ``interactions/`` beside the model folder).
    Catalogues above ``approximate_above`` items are searched with a faiss index
    (``ann``: hnsw or ivf).
    """

    model: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_k: int = 1000
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: Optional[int] = None
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 64
    cpus_per_replica: float = 0.0
    request_timeout_s: float = 30.0
    interaction_log: Optional[str] = None
    approximate_above: int = 200_000
    ann: str = "hnsw"
    # Serve the registry's current version instead of ``model``; replicas watch its
    # pointer every ``registry_poll_s`` and swap to a newly promoted (or rolled back) one.
    registry: Optional[str] = None
    registry_poll_s: float = 2.0
    # Bearer token: $GRAPHTRAIN_SERVE_TOKEN or this file; required beyond loopback, and
    # on loopback too with require_token (graphtrain.serve.auth).
    token_file: Optional[str] = None
    require_token: bool = False

    def __post_init__(self):
        resolve_paths(self, "model", "interaction_log", "registry", "token_file")
        if self.model is not None and self.registry is None and storage.exists(storage.join(self.model, "current.json")):
            # DESIGN's contract: --model may name a registry, which serves its current version.
            object.__setattr__(self, "registry", self.model)
            object.__setattr__(self, "model", None)
        if (self.model is None) == (self.registry is None):
            raise ConfigError("model", self.model, "give exactly one of model (an artifact) and registry")
        _positive("registry_poll_s", self.registry_poll_s)
        if not 0 < self.port < 65536:
            raise ConfigError("port", self.port, "use a TCP port in 1..65535")
        for name in ("max_k", "replicas", "min_replicas", "max_ongoing_requests", "approximate_above"):
            _positive(name, getattr(self, name))
        for name in ("target_ongoing_requests", "request_timeout_s"):
            _positive(name, getattr(self, name))
        if self.cpus_per_replica < 0:
            raise ConfigError("cpus_per_replica", self.cpus_per_replica, "use 0 (share the node's CPUs) or more")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ConfigError("max_replicas", self.max_replicas, f"use at least min_replicas={self.min_replicas}")
        if self.ann not in ("hnsw", "ivf"):
            raise ConfigError("ann", self.ann, "use hnsw or ivf")


@dataclass(frozen=True)
class RunConfig:
    """`graphtrain run`: ingest -> partition -> train -> export -> evaluate in one workdir."""

    inputs: Sequence[str]
    source_domain: str
    target_domain: str
    workdir: str
    workers: int = 2
    epochs: int = 5
    num_parts: int = 1
    partition_method: str = "auto"
    cold_start_fraction: float = 0.2
    seed: int = 0
    gpu: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = 1024
    fanouts: tuple[int, ...] = (10, 10)
    batches_per_draw: int = TrainConfig.batches_per_draw
    learning_rate: float = TrainConfig.learning_rate
    weight_decay: float = TrainConfig.weight_decay
    lr_schedule: str = TrainConfig.lr_schedule
    validation_users: Optional[int] = TrainConfig.validation_users
    max_steps_per_epoch: Optional[int] = TrainConfig.max_steps_per_epoch
    patience: int = TrainConfig.patience
    time_budget_s: Optional[float] = TrainConfig.time_budget_s
    negatives: str = TrainConfig.negatives
    embeddings: str = TrainConfig.embeddings
    transfer_loss_weight: float = TrainConfig.transfer_loss_weight
    alignment_loss_weight: float = TrainConfig.alignment_loss_weight
    id_maps: Optional[str] = None  # an earlier dataset or model whose user/item indices are kept
    warm_start: Optional[str] = None  # TrainConfig.warm_start

    def __post_init__(self):
        resolve_paths(self, "inputs", "workdir", "id_maps", "warm_start")
        if self.partition_method not in PARTITION_METHODS:  # PartitionConfig calls this field `method`
            raise ConfigError("partition_method", self.partition_method, f"use one of {PARTITION_METHODS}")
        # Every stage's config checks its own fields now, not after the stages before it ran.
        self.ingest_config(output="dataset")
        self.partition_config(dataset="dataset", output="partitions")
        self.train_config(dataset="dataset", partitions="partitions", output="checkpoints")

    def ingest_config(self, output: str) -> IngestConfig:
        return IngestConfig(
            inputs=self.inputs, output=output, source_domain=self.source_domain, target_domain=self.target_domain,
            cold_start_fraction=self.cold_start_fraction, seed=self.seed, id_maps=self.id_maps,
        )

    def partition_config(self, dataset: str, output: str) -> PartitionConfig:
        return PartitionConfig(dataset=dataset, output=output, num_parts=self.num_parts, method=self.partition_method)

    def train_config(self, dataset: str, partitions: str, output: str) -> TrainConfig:
        """The train stage's config: every field RunConfig shares with TrainConfig, by name."""
        shared = {f.name for f in dataclasses.fields(TrainConfig)} & {f.name for f in dataclasses.fields(self)}
        return TrainConfig(dataset=dataset, partitions=partitions, output=output, **{n: getattr(self, n) for n in shared})


@dataclass(frozen=True)
class RetrainConfig:
    """`graphtrain retrain`: ``run`` on new logs, warm-started from the registry's
    current version, gated against it (``graphtrain.retrain``).

    ``tolerance``: the candidate's target NDCG@10 (warm and cold, full ranking) may be
    at most this fraction below the current version's. ``interactions``: a log of
    folded-in interactions to ingest with the new logs (default: the registry's own
    ``interactions/``, when it has any). ``serve_url``: an endpoint to watch until it
    answers from the promoted version.
    """

    registry: str
    run: RunConfig
    tolerance: float = 0.02
    force: bool = False
    warm_start: bool = True
    interactions: Optional[str] = None
    serve_url: Optional[str] = None
    serve_wait_s: float = 120.0

    def __post_init__(self):
        resolve_paths(self, "registry", "interactions")
        _fraction("tolerance", self.tolerance)
        _positive("serve_wait_s", self.serve_wait_s)
        if self.interactions is None:
            object.__setattr__(self, "interactions", storage.join(self.registry, "interactions"))
