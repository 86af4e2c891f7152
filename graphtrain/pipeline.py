"""`graphtrain run` and `graphtrain demo`: the stages chained in one workdir.

Workdir layout (DESIGN.md): ``dataset/``, ``partitions/``, ``checkpoints/``,
``model/``, ``reports/`` (``report.json`` + ``metrics.png``); the demo adds ``raw/``
(the generated logs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

from graphtrain import storage
from graphtrain.config import EvalConfig, RunConfig, ServeConfig
from graphtrain.net import free_port


@dataclass(frozen=True)
class Workdir:
    """The URIs of every stage's artifact under one workdir."""

    raw: str
    dataset: str
    partitions: str
    checkpoints: str
    model: str
    reports: str

    @classmethod
    def at(cls, root: str) -> "Workdir":
        return cls(**{name: storage.join(root, name) for name in cls.__dataclass_fields__})


# Written into each stage's artifact by `run`: what it was made from. A rerun skips a
# stage whose committed artifact carries the fingerprint the stage would write now.
FINGERPRINT = "_fingerprint.json"


def _settings(config, *drop: str) -> dict:
    """A stage config's fields as JSON-able values, less the paths ``drop`` names."""
    values = dataclasses.asdict(config)
    return {k: v for k, v in values.items() if k not in drop}


def input_listing(inputs) -> list:
    """(path, size, mtime) of every file ingest reads (``expand_inputs``): a changed,
    added or removed input file changes the ingest fingerprint."""
    from graphtrain.data.ingest import expand_inputs

    paths = sorted(p for found in expand_inputs(tuple(inputs)).values() for p in found)
    fs, _ = storage.filesystem(inputs[0])  # ingest takes all inputs from one filesystem
    return [[i.path, i.size, i.mtime_ns] for i in fs.get_file_info(paths)]


def fingerprint(stage: str, settings: dict, upstream: str = "") -> str:
    text = json.dumps({"stage": stage, "settings": settings, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _recorded(uri: str) -> str | None:
    try:
        return storage.read_json(storage.join(uri, FINGERPRINT)).get("fingerprint")
    except (OSError, ValueError):
        return None


def _record(uri: str, stage: str, fp: str) -> None:
    storage.write_json(storage.join(uri, FINGERPRINT), {"stage": stage, "fingerprint": fp,
                                                        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _set_aside_stale_checkpoints(uri: str, fp: str, log) -> None:
    """Checkpoints of another config must not be resumed: move them beside, kept."""
    if not storage.exists(uri):
        return
    old = _recorded(uri)
    if old == fp:
        return
    aside = f"{uri.rstrip('/')}-{old or 'earlier'}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    if storage.is_local(uri):
        os.rename(storage.local_path(uri), storage.local_path(aside))
    else:  # object stores have no rename: copy, then delete
        import pyarrow.fs as pafs

        fs, path = storage.filesystem(uri)
        pafs.copy_files(path, storage.filesystem(aside)[1], source_filesystem=fs, destination_filesystem=fs)
        fs.delete_dir(path)
    log(f"   the config changed since {uri} was written: training starts over; the old checkpoints are in {aside}")


CONFIG_FILE = "config.yaml"


def write_config(config: RunConfig, uri: str) -> None:
    """Every field of ``config``, defaults included, as ``graphtrain run --config``
    reads it, headed by the versions that ran it."""
    import yaml

    versions = {"graphtrain": _version("graphtrain"), "ray": _version("ray"), "dgl": _version("dgl"), "torch": _version("torch")}
    values = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists
    text = "# graphtrain run --config this file reproduces the run\n# versions: " + json.dumps(versions) + "\n"
    text += yaml.safe_dump(values, sort_keys=False)
    fs, path = storage.filesystem(uri)
    storage.write_bytes(fs, path, text.encode())


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def run(config: RunConfig, log=print) -> dict:
    """ingest -> partition -> train -> export -> evaluate; returns the report.

    Rerun on the same workdir, it skips every stage whose artifact was made from the
    same inputs and settings (a fingerprint in each artifact), resumes a training run
    that was cut short, and redoes a stage and all after it when anything it depends
    on changed."""
    from graphtrain.data.ingest import format_summary, ingest
    from graphtrain.eval.evaluate import REPORT, evaluate, format_table
    from graphtrain.graph.partition import partition
    from graphtrain.inference.export import export
    from graphtrain.ray_env import ensure_ray
    from graphtrain.train import checkpoint
    from graphtrain.train.trainer import check_resources, train

    work = Workdir.at(config.workdir)
    write_config(config, storage.join(config.workdir, CONFIG_FILE))
    timings = {}
    train_config = config.train_config(dataset=work.dataset, partitions=work.partitions, output=work.checkpoints)
    eval_config = EvalConfig(dataset=work.dataset, model=work.model, output=work.reports)
    # Before ingest and partition: a run the cluster cannot hold fails now, not at train.
    ensure_ray()
    check_resources(train_config)

    def stage(name, uri, fp, fn, done=None):
        """Run ``fn`` unless ``uri`` already holds its output for fingerprint ``fp``."""
        finished = (done or storage.is_committed)(uri)
        if finished and _recorded(uri) == fp:
            log(f"== {name}: up to date ({fp}), skipped")
            timings[name] = 0.0
            return None
        log(f"== {name}")
        started = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - started, 2)
        _record(uri, name, fp)
        return result

    ingest_fp = fingerprint("ingest", {**_settings(config.ingest_config(output=work.dataset), "output"),
                                       "files": input_listing(config.inputs)})
    meta = stage("ingest", work.dataset, ingest_fp, lambda: ingest(config.ingest_config(output=work.dataset)))
    log(format_summary(meta or storage.read_json(storage.join(work.dataset, "meta.json"))))
    partition_config = config.partition_config(dataset=work.dataset, output=work.partitions)
    partition_fp = fingerprint("partition", _settings(partition_config, "dataset", "output"), ingest_fp)
    stage("partition", work.partitions, partition_fp, lambda: partition(partition_config))

    train_fp = fingerprint("train", _settings(train_config, "dataset", "partitions", "output"), partition_fp)

    def train_fresh_or_resumed():
        _set_aside_stale_checkpoints(work.checkpoints, train_fp, log)
        _record(work.checkpoints, "train", train_fp)  # first: a cut-short run resumes, not restarts
        return train(train_config, log=log)

    latest = storage.join(work.checkpoints, checkpoint.LATEST)
    stage("train", work.checkpoints, train_fp, train_fresh_or_resumed, done=lambda uri: storage.exists(latest))
    log(f"checkpoint {storage.read_json(latest)['checkpoint']}")
    export_fp = fingerprint("export", storage.read_json(latest), train_fp)
    stage("export", work.model, export_fp, lambda: export(work.dataset, work.checkpoints, work.model, partitions=work.partitions))
    evaluate_fp = fingerprint("evaluate", _settings(eval_config, "dataset", "model", "output"), export_fp)
    report = stage("evaluate", work.reports, evaluate_fp, lambda: evaluate(eval_config))
    report = report or storage.read_json(storage.join(work.reports, REPORT))
    report["stage_seconds"] = timings
    log("stages: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
    log(format_table(report))
    return report


def http_get_json(url: str, timeout: float = 30.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def demo(workdir: str | None = None, epochs: int = 5, port: int | None = None, log=print) -> dict:
    """Generate data, run every stage with 2 workers and 1 graph server, serve, query."""
    import ray

    from graphtrain.data.dataset import Dataset
    from graphtrain.data.synthetic import SyntheticSpec, generate, source_only_users, write_logs
    from graphtrain.ray_env import ensure_ray
    from graphtrain.serve import app

    workdir = workdir or tempfile.mkdtemp(prefix="graphtrain-demo-")
    work = Workdir.at(workdir)
    spec = SyntheticSpec()
    logs = generate(spec)
    write_logs(logs, work.raw)
    log(f"generated {len(logs):,} interactions into {work.raw}")
    ensure_ray()
    try:
        report = run(
            RunConfig(
                inputs=[work.raw],
                source_domain=spec.source_domain,
                target_domain=spec.target_domain,
                workdir=workdir,
                workers=2,
                epochs=epochs,
                num_parts=1,
            ),
            log=log,
        )
        dataset = Dataset.load(work.dataset)
        warm_user = warm_test_user(dataset, spec.target_domain)
        cold_user = source_only_users(logs, spec.source_domain, spec.target_domain)[0]
        base = app.start(ServeConfig(model=work.model, port=port or free_port()))
        answers = {}
        for label, user in (("warm", warm_user), ("cold-start", cold_user), ("unknown", "no-such-user")):
            query = urllib.parse.urlencode({"user_id": user, "k": 5, "domain": spec.target_domain})
            answers[label] = http_get_json(f"{base}/recommend?{query}")
        health = http_get_json(f"{base}/health")
    finally:
        try:
            app.stop()
        finally:
            ray.shutdown()
    log("")
    log(f"== recommendations from {base} (model {health['model_version']})")
    for label, answer in answers.items():
        items = ", ".join(f"{i['item_id']} ({i['score']:.2f})" for i in answer["items"])
        log(f"{label:<11} user {answer['user_id']:<14} reason {answer['reason']:<9} {items}")
    log("")
    log(f"evaluation above: {spec.target_domain}, full ranking; *_sampled: 1 vs 999 sampled items")
    log(f"artifacts in {workdir}: dataset/ partitions/ checkpoints/ model/ reports/report.json")
    return {"report": report, "answers": answers, "workdir": workdir}


def warm_test_user(dataset, domain: str) -> str:
    """The raw id of a test user with training history in ``domain``."""
    from graphtrain.eval.evaluate import warm_and_cold_users

    warm, _ = warm_and_cold_users(dataset, domain)
    return str(dataset.users.set_index("user_idx").loc[int(warm[0]), "user_id"])
