"""`graphtrain run` and `graphtrain demo`: the stages chained in one workdir.

Workdir layout (DESIGN.md): ``dataset/``, ``partitions/``, ``checkpoints/``,
``model/``, ``reports/`` (``report.json`` + ``metrics.png``); the demo adds ``raw/``
(the generated logs).
"""

from __future__ import annotations

import json
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


def run(config: RunConfig, log=print) -> dict:
    """ingest -> partition -> train -> export -> evaluate; returns the report."""
    from graphtrain.data.ingest import format_summary, ingest
    from graphtrain.eval.evaluate import evaluate, format_table
    from graphtrain.graph.partition import partition
    from graphtrain.inference.export import export
    from graphtrain.ray_env import ensure_ray
    from graphtrain.train.trainer import check_resources, train

    work = Workdir.at(config.workdir)
    timings = {}
    # Before ingest and partition: a run the cluster cannot hold fails now, not at train.
    ensure_ray()
    check_resources(config.train_config(dataset=work.dataset, partitions=work.partitions, output=work.checkpoints))

    def stage(name, fn):
        log(f"== {name}")
        started = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - started, 2)
        return result

    meta = stage(
        "ingest",
        lambda: ingest(config.ingest_config(output=work.dataset)),
    )
    log(format_summary(meta))
    stage(
        "partition",
        lambda: partition(config.partition_config(dataset=work.dataset, output=work.partitions)),
    )
    trained = stage(
        "train",
        lambda: train(config.train_config(dataset=work.dataset, partitions=work.partitions, output=work.checkpoints)),
    )
    log(f"checkpoint {trained['checkpoint']}")
    stage("export", lambda: export(work.dataset, work.checkpoints, work.model))
    report = stage("evaluate", lambda: evaluate(EvalConfig(dataset=work.dataset, model=work.model, output=work.reports)))
    report["stage_seconds"] = timings
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
    from graphtrain.eval.evaluate import format_table
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
    log(f"== evaluation on {spec.target_domain} (full ranking; *_sampled: 1 vs 999 sampled items), report {storage.join(work.reports, 'report.json')}")
    log(format_table(report))
    return {"report": report, "answers": answers, "workdir": workdir}


def warm_test_user(dataset, domain: str) -> str:
    """The raw id of a test user with training history in ``domain``."""
    from graphtrain.eval.evaluate import warm_and_cold_users

    warm, _ = warm_and_cold_users(dataset, domain)
    return str(dataset.users.set_index("user_idx").loc[int(warm[0]), "user_id"])
