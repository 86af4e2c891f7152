"""The `graphtrain` command: one subcommand per stage, plus `run` and `demo`.

Every subcommand is a thin layer over the stage function of the same name.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from graphtrain.config import DEDUPE, PARTITION_METHODS, SPLITS
from graphtrain.errors import GraphtrainError


def _fanouts(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def _duration(text: str) -> float:
    """Seconds from 90, 90s, 30m or 2h."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1].lower() in units:
            return float(text[:-1]) * units[text[-1].lower()]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds, or a number with s, m or h (90s, 30m, 2h)") from None


def _key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, {"true": True, "false": False}.get(value.lower(), value)


def _training_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `run` and `train` (defaults: TrainConfig and ModelConfig)."""
    from graphtrain.config import EDGE_WEIGHTS, EMBEDDINGS, LR_SCHEDULES, NEGATIVES, ModelConfig, TrainConfig

    p.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    p.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay, help="L2 on the rows a batch scores")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=TrainConfig.lr_schedule)
    p.add_argument("--patience", type=int, default=TrainConfig.patience,
                   help="stop after N epochs without a better valid NDCG@10 (0: never)")
    p.add_argument("--time-budget", dest="time_budget_s", type=_duration, default=None,
                   help="wall-clock limit on training, e.g. 90s, 30m, 2h: no epoch starts that would end past it")
    p.add_argument("--validation-users", type=int, default=TrainConfig.validation_users,
                   help="per-epoch validation scores the valid rows of a seeded sample of this many users")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap on training steps per epoch (benchmarks)")
    p.add_argument("--negatives", choices=NEGATIVES, default=TrainConfig.negatives, help="how negative items are drawn")
    p.add_argument("--batches-per-draw", type=int, default=TrainConfig.batches_per_draw,
                   help="mini-batches whose neighbourhoods are drawn together (1: each alone)")
    p.add_argument("--embedding-dim", type=int, default=ModelConfig.embedding_dim)
    p.add_argument("--embeddings", choices=EMBEDDINGS, default=TrainConfig.embeddings,
                   help="node tables replicated per worker, or in the graph servers' KVStore (auto: by size)")
    p.add_argument("--layer", choices=("lightgcn", "gnn"), default="lightgcn" if ModelConfig.lightgcn else "gnn",
                   help="lightgcn: W = I, no nonlinearity; gnn: learned W and LeakyReLU per layer")
    p.add_argument("--edge-weights", choices=EDGE_WEIGHTS, default=ModelConfig.edge_weights,
                   help="alpha_ij from degree only (none), or weighted by the edges' interaction weights")
    p.add_argument("--no-transfer", dest="transfer", action="store_false", help="without the transfer head (ablation)")
    p.add_argument("--transfer-loss-weight", type=float, default=TrainConfig.transfer_loss_weight,
                   help="weight of the transfer head's own BPR term")
    p.add_argument("--alignment-loss-weight", type=float, default=TrainConfig.alignment_loss_weight,
                   help="pull T(m_u) toward the target-side user representation on overlapping users (0: off)")


def _run_flags(p: argparse.ArgumentParser) -> None:
    """Flags of `run` and `retrain`: RunConfig's fields."""
    p.add_argument("--config", help="a YAML file of RunConfig fields (a workdir's config.yaml reproduces that run); "
                                    "flags given as well override it")
    p.add_argument("--input", action="append", help="logs URI (repeatable; required unless --config gives inputs)")
    p.add_argument("--source-domain")
    p.add_argument("--target-domain")
    p.add_argument("--workdir")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--num-parts", type=int, default=1)
    p.add_argument("--partition-method", choices=PARTITION_METHODS, default="auto",
                   help="auto: metis up to 5M train edges, else hash (Ray tasks; no process holds the graph)")
    p.add_argument("--cold-start-fraction", type=float, default=0.2)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--fanouts", type=_fanouts, default=(10, 10), help="per layer, e.g. 10,10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu", action="store_true")
    _training_flags(p)


def _given(parser: argparse.ArgumentParser, command: str, argv: list[str]) -> set[str]:
    """The dests of the flags typed on the command line (not left at their defaults)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    typed = {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}
    return {a.dest for a in sub._actions if typed & set(a.option_strings)}


def run_config_from(args: argparse.Namespace, given: set[str]):
    """RunConfig from ``--config`` (if any) with the typed flags over it; every other
    field from the flags' defaults. Unknown keys and missing fields name the fix."""
    import dataclasses

    import yaml

    from graphtrain import config as cfg
    from graphtrain.errors import ConfigError

    file: dict = {}
    if args.config:
        try:
            with open(args.config) as f:
                file = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError("config", args.config, f"cannot be read as YAML ({err})") from err
        if not isinstance(file, dict):
            raise ConfigError("config", args.config, "must hold a mapping of RunConfig fields")
    fields = {f.name for f in dataclasses.fields(cfg.RunConfig)}
    model_fields = {f.name for f in dataclasses.fields(cfg.ModelConfig)}
    unknown = sorted(set(file) - fields)
    if unknown:
        raise ConfigError(unknown[0], file[unknown[0]], f"is not a RunConfig field; use one of {sorted(fields)}")
    unknown = sorted(set(file.get("model") or {}) - model_fields)
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", file["model"][unknown[0]],
                          f"is not a ModelConfig field; use one of {sorted(model_fields)}")
    flags = {**{k: v for k, v in vars(args).items() if k in fields}, "inputs": args.input}
    typed = given | ({"inputs"} if "input" in given else set())
    values = {k: v for k, v in flags.items() if k in typed or k not in file}
    values.update({k: v for k, v in file.items() if k not in typed and k != "model"})
    model_flags = dataclasses.asdict(model_from_args(args))
    model_typed = {"embedding_dim", "edge_weights"} & given | ({"lightgcn"} if "layer" in given else set()) \
        | ({"transfer"} if "transfer" in given else set()) | ({"num_layers"} if "fanouts" in given else set())
    model_file = dict(file.get("model") or {})
    if "fanouts" in file and "num_layers" not in model_file:
        model_file["num_layers"] = len(file["fanouts"])
    model = {k: v for k, v in model_flags.items() if k in model_typed or k not in model_file}
    model.update({k: v for k, v in model_file.items() if k not in model_typed})
    values["model"] = cfg.ModelConfig(**model)
    for name in ("inputs", "source_domain", "target_domain", "workdir"):
        if not values.get(name):
            flag = "--input" if name == "inputs" else "--" + name.replace("_", "-")
            raise ConfigError(name, None, f"give {flag}, or set {name} in --config")
    values["inputs"] = tuple(values["inputs"]) if isinstance(values["inputs"], (list, tuple)) else (values["inputs"],)
    values["fanouts"] = tuple(values["fanouts"])
    return cfg.RunConfig(**values)


def model_from_args(args: argparse.Namespace):
    from graphtrain.config import ModelConfig

    return ModelConfig(
        embedding_dim=args.embedding_dim, num_layers=len(args.fanouts), lightgcn=args.layer == "lightgcn", transfer=args.transfer,
        edge_weights=args.edge_weights,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphtrain", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show Ray's, DGL's and every worker's own output (default: graphtrain's lines and warnings)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="whole pipeline on generated data, then serve and query it")
    p.add_argument("--workdir", help="where to write (default: a new temporary directory)")
    p.add_argument("--epochs", type=int, default=5)

    p = sub.add_parser("run", help="ingest -> partition -> train -> export -> evaluate")
    _run_flags(p)
    p.add_argument("--id-maps", help="an earlier dataset or model URI whose user/item indices must be kept")
    p.add_argument("--warm-start", help="a checkpoint to start from (the dataset must keep its id maps: --id-maps)")

    p = sub.add_parser("retrain", help="run on new logs, warm-started and gated against the registry's current model")
    _run_flags(p)
    p.add_argument("--registry", required=True, help="model registry URI (models/<version>/ and current.json)")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="promote unless target NDCG@10 (warm or cold) falls more than this fraction below the current's")
    p.add_argument("--force", action="store_true", help="promote even when the gate rejects the candidate (logged)")
    p.add_argument("--no-warm-start", dest="warm_start", action="store_false", help="train from scratch")
    p.add_argument("--interactions", help="folded-in interactions to ingest too (default: the registry's interactions/)")
    p.add_argument("--serve-url", help="an endpoint serving from the registry: wait until it answers from the new version")

    p = sub.add_parser("models", help="the model registry: list versions, promote or roll back")
    models = p.add_subparsers(dest="models_command", required=True)
    q = models.add_parser("list", help="every version, its gate decision and metrics; * marks the current one")
    q.add_argument("--registry", required=True)
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q = models.add_parser("promote", help="make a version current (a rollback is a promote of an older one)")
    q.add_argument("--registry", required=True)
    q.add_argument("--version", type=int, required=True)
    q.add_argument("--force", action="store_true", help="also a version the gate rejected")

    p = sub.add_parser("ingest", help="logs -> dataset artifact (Ray Data)")
    p.add_argument("--input", action="append", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--domain", help="domain of every row, when the logs have no domain column")
    p.add_argument("--source-domain")
    p.add_argument("--target-domain")
    p.add_argument("--cold-start-fraction", type=float, default=0.2)
    p.add_argument("--split", choices=SPLITS, default="auto", help="auto: the split column if every row has one, else leave-one-out")
    p.add_argument("--split-fractions", type=_floats, default=(0.8, 0.1, 0.1), help="train,valid,test for ratio/temporal")
    p.add_argument("--dedupe", choices=DEDUPE, default="latest", help="repeated (user, item, domain) rows")
    p.add_argument("--min-interactions", type=int, default=0, help="k-core filter (0: off)")
    p.add_argument("--id-maps", help="an earlier dataset URI whose user/item indices must be kept")
    p.add_argument(
        "--storage-option", dest="storage_options", action="append", type=_key_value, default=[],
        help="filesystem option KEY=VALUE, e.g. endpoint_override=127.0.0.1:9000 (repeatable)",
    )
    p.add_argument("--strict", action="store_true", help="fail on any bad row or unreadable file instead of quarantining it")
    p.add_argument("--buckets", type=int, help="user buckets the rows are shuffled into (default: one per 32 MiB of input)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("partition", help="dataset -> DGL partitions")
    p.add_argument("--dataset", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--num-parts", type=int, default=1)
    p.add_argument("--method", choices=PARTITION_METHODS, default="auto",
                   help="auto: metis up to 5M train edges, else hash (Ray tasks; no process holds the graph)")

    p = sub.add_parser("train", help="Ray Train over DGL graph servers")
    p.add_argument("--dataset", required=True)
    p.add_argument("--partitions", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--source-domain", required=True)
    p.add_argument("--target-domain", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--fanouts", type=_fanouts, default=(10, 10), help="per layer, e.g. 10,10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--warm-start", help="a checkpoint to start from (the dataset must keep its id maps)")
    _training_flags(p)

    p = sub.add_parser("export", help="checkpoint -> model artifact")
    p.add_argument("--dataset", required=True)
    p.add_argument("--checkpoint", required=True, help="a checkpoint directory or the checkpoints root")
    p.add_argument("--output", required=True)
    p.add_argument("--partitions", help="the dataset's partition artifact: Ray tasks infer layer by layer over it "
                                        "(no process holds the graph); without it, one process does")

    p = sub.add_parser("evaluate", help="model artifact -> report.json")
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--max-users", type=int, help="rank a seeded sample of this many test users per group (default: all)")

    p = sub.add_parser("serve", help="Ray Serve HTTP endpoint for a model artifact")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model artifact URI")
    source.add_argument("--registry", help="a model registry URI: serve its current version and follow promotions")
    p.add_argument("--host", default="127.0.0.1",
                   help="bind address; anything but loopback needs a bearer token ($GRAPHTRAIN_SERVE_TOKEN or --token-file)")
    p.add_argument("--token-file", help="file holding the bearer token every API request must carry")
    p.add_argument("--require-token", action="store_true", help="require the bearer token on loopback too")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-k", type=int, default=1000, help="largest k a request may ask for")
    p.add_argument("--replicas", type=int, default=1, help="fixed replica count (ignored with --max-replicas)")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, help="turn on autoscaling between --min-replicas and this")
    p.add_argument("--target-ongoing-requests", type=float, default=2.0, help="autoscaling target per replica")
    p.add_argument("--max-ongoing-requests", type=int, default=64, help="requests one replica takes at once")
    p.add_argument("--cpus-per-replica", type=float, default=0.0)
    p.add_argument("--request-timeout-s", type=float, default=30.0)
    p.add_argument("--interaction-log", help="URI for folded-in interactions (default: interactions/ beside the model)")
    p.add_argument("--approximate-above", type=int, default=200_000,
                   help="catalogues with more items than this are searched with a faiss index")
    p.add_argument("--ann", choices=["hnsw", "ivf"], default="hnsw")
    p.add_argument("--reload", action="store_true",
                   help="point the app already running on this Ray cluster at --model (no failed requests) and exit")
    return parser


def config_from_args(cls, args: argparse.Namespace, **values):
    """Build a config dataclass from the parsed flags of the same names (+ ``values``)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**given, **values})


def dispatch(args: argparse.Namespace, given: set[str] = frozenset()) -> None:
    from graphtrain import config as cfg

    if args.command == "demo":
        from graphtrain.pipeline import demo

        demo(args.workdir, epochs=args.epochs)
    elif args.command == "run":
        from graphtrain.pipeline import run

        run(run_config_from(args, given))
    elif args.command == "retrain":
        from graphtrain.retrain import retrain

        run_config = run_config_from(args, given)
        steps = retrain(config_from_args(cfg.RetrainConfig, args, run=run_config))
        print(json.dumps({k: steps[k] for k in ("version", "promoted", "serving", "gate")}, indent=2, default=str))
    elif args.command == "models":
        _models(args)
    elif args.command == "ingest":
        from graphtrain.data.ingest import format_summary, ingest

        options = dict(args.storage_options)
        meta = ingest(config_from_args(cfg.IngestConfig, args, inputs=args.input, storage_options=options))
        print(format_summary(meta))
    elif args.command == "partition":
        from graphtrain.graph.partition import partition

        print(json.dumps(partition(config_from_args(cfg.PartitionConfig, args))))
    elif args.command == "train":
        from graphtrain.train.trainer import train

        result = train(config_from_args(cfg.TrainConfig, args, model=model_from_args(args)))
        print(json.dumps(result, indent=2, default=str))
    elif args.command == "export":
        from graphtrain.inference.export import export

        partitions = cfg.absolute(args.partitions) if args.partitions else None
        manifest = export(cfg.absolute(args.dataset), cfg.absolute(args.checkpoint), cfg.absolute(args.output),
                          partitions=partitions)
        print(f"model {manifest['version']} (epoch {manifest['epoch']}) written to {args.output}")
    elif args.command == "evaluate":
        from graphtrain.eval.evaluate import evaluate, format_table

        print(format_table(evaluate(config_from_args(cfg.EvalConfig, args))))
    elif args.command == "serve":
        config = config_from_args(cfg.ServeConfig, args)
        if args.reload:  # join the cluster that runs the app (RAY_ADDRESS, or the local `ray start`)
            import ray

            from graphtrain.serve import app

            ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
            app.reload(config)
            print(f"reloading {config.model or config.registry} into the running app")
        else:
            _serve(config)


def _serve(config) -> None:
    import time

    from graphtrain.serve import app

    url = app.start(config)
    print(f"serving {config.model or f'the current version of {config.registry}'} at {url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()


def _models(args: argparse.Namespace) -> None:
    from graphtrain.registry import Registry

    registry = Registry(args.registry)
    if args.models_command == "promote":
        pointer = registry.promote(args.version, "promoted by hand (graphtrain models promote)", force=args.force)
        print(f"current version of {registry.uri} is now {pointer['version']} (was {pointer['previous']})")
        return
    rows = registry.listing()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'':2}{'version':>7}  {'created':<20}  {'gate':<8}  {'warm ndcg@10':>12}  {'cold ndcg@10':>12}  reason")
    for row in rows:
        metrics = row["metrics"]
        print(f"{'*' if row['current'] else '':2}{row['version']:>7}  {row['created_at'] or '':<20}  "
              f"{'accepted' if row['accepted'] else 'rejected':<8}  {metrics.get('warm', float('nan')):>12.4f}  "
              f"{metrics.get('cold', float('nan')):>12.4f}  {row['reason']}")
    if not rows:
        print(f"  (no versions in {registry.uri})")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:  # children (Ray workers, job drivers) read it from the environment
        os.environ["GRAPHTRAIN_VERBOSE"] = "1"
    # graphtrain's own progress lines; other libraries' loggers stay at WARNING.
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logging.getLogger("graphtrain").setLevel(logging.INFO)
    try:
        dispatch(args, _given(parser, args.command, argv))
    except GraphtrainError as exc:
        print(f"graphtrain {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
