"""`graphtrain retrain`: train a candidate on new logs, gate it against the served
version, add it to the registry, and promote it when it is not worse.

Steps (each one's outcome goes into ``<workdir>/retrain.json`` and into the
version's ``version.json``):

1. ingest the new logs (and, optionally, what Serve folded in) with the current
   version's id maps, so every known user and item keeps its index;
2. partition; 3. train, warm-started from the current version's weights;
4. evaluate the candidate, and the current version on the same new dataset: its
   weights with the new ids' rows freshly initialised, propagated over the new
   training graph (what it would answer if kept);
5. gate: promote only when the candidate's target NDCG@10 (full ranking, warm and
   cold test users) is at least ``(1 - tolerance)`` times the current version's;
6. add the candidate to the registry (rejected ones too, with the reason) and move
   ``current`` when promoted. Serve replicas that serve from the registry load it.

The first retrain into an empty registry has nothing to compare with and promotes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

from graphtrain import storage
from graphtrain.config import EvalConfig, RetrainConfig
from graphtrain.pipeline import Workdir, http_get_json
from graphtrain.registry import Registry

logger = logging.getLogger(__name__)
GATED_GROUPS = ("warm", "cold")
GATE_METRIC = "ndcg@10"
RETRAIN_REPORT = "retrain.json"


def retrain(config: RetrainConfig, log=print) -> dict:
    from graphtrain.pipeline import run

    registry = Registry(config.registry)
    current = registry.current()
    work = Workdir.at(config.run.workdir)
    steps: dict = {"registry": registry.uri, "current": current.number if current else None, "started_at": _now()}
    inputs = list(config.run.inputs)
    if config.interactions and _has_files(config.interactions):
        inputs.append(config.interactions)
    steps["inputs"] = inputs
    run_config = dataclasses.replace(
        config.run,
        inputs=inputs,
        id_maps=current.model if current else None,
        warm_start=current.checkpoint if (current and config.warm_start) else None,
    )
    log(f"== retrain: current version {current.number if current else 'none'}; warm start {bool(run_config.warm_start)}")
    candidate = run(run_config, log=log)
    steps["candidate"] = _gated_metrics(candidate)
    steps["stage_seconds"] = candidate.get("stage_seconds", {})

    incumbent = None
    if current is not None:
        started = time.perf_counter()
        incumbent = evaluate_incumbent(current, work, config.run.workdir)
        steps["current_on_new_data"] = _gated_metrics(incumbent)
        steps["stage_seconds"]["evaluate_current"] = round(time.perf_counter() - started, 2)
    gate = decide(candidate, incumbent, config.tolerance)
    steps["gate"] = gate
    log(f"== gate: {'accepted' if gate['accepted'] else 'rejected'}: {gate['reason']}")

    trained = storage.read_json(storage.join(work.checkpoints, "latest.json"))
    info = {"gate": gate, "inputs": inputs, "workdir": config.run.workdir, "parent": current.number if current else None,
            "metrics": steps["candidate"], "warm_start": bool(run_config.warm_start)}
    version = registry.add(work.model, trained["checkpoint"], candidate, info)
    steps["version"] = version.number
    promote = gate["accepted"] or config.force
    if promote:
        reason = gate["reason"] if gate["accepted"] else f"forced past the gate ({gate['reason']})"
        if not gate["accepted"]:
            logger.warning("version %d promoted with --force although the gate rejected it: %s", version.number, gate["reason"])
        registry.promote(version.number, reason, force=config.force)
    steps["promoted"] = promote
    steps["serving"] = (registry.pointer() or {}).get("version")
    if promote and config.serve_url:
        steps["served"] = wait_until_served(config.serve_url, version.number, config.serve_wait_s)
    steps["finished_at"] = _now()
    _write_report(work, steps)
    log(f"== version {version.number} {'promoted' if promote else 'kept, not served'}; current is {steps['serving']}")
    return steps


def decide(candidate: dict, incumbent: dict | None, tolerance: float) -> dict:
    """The gate: candidate >= (1 - tolerance) x current on every gated group."""
    if incumbent is None:
        return {"accepted": True, "reason": "first version: nothing to compare with", "tolerance": tolerance}
    new, old = _gated_metrics(candidate), _gated_metrics(incumbent)
    worse = [
        f"{group} {GATE_METRIC} {new[group]:.4f} < {1 - tolerance:g} x {old[group]:.4f}"
        for group in old if group in new and new[group] < (1 - tolerance) * old[group]
    ]
    missing = [g for g in old if g not in new]
    if missing:
        worse.append(f"the candidate has no {', '.join(missing)} test users")
    compared = ", ".join(f"{g} {new.get(g, float('nan')):.4f} vs {old[g]:.4f}" for g in old)
    return {
        "accepted": not worse, "tolerance": tolerance, "candidate": new, "current": old,
        "reason": ("; ".join(worse) if worse else f"not worse than the current version ({compared})"),
    }


def _gated_metrics(report: dict) -> dict[str, float]:
    groups = report["models"]["graphtrain"]
    return {g: float(groups[g][GATE_METRIC]) for g in GATED_GROUPS if g in groups}


def evaluate_incumbent(current, work: Workdir, workdir: str) -> dict:
    """The current version's report on the new dataset (see the module docstring)."""
    import torch

    from graphtrain.config import ModelConfig
    from graphtrain.data.dataset import Dataset
    from graphtrain.models.popularity import item_popularity
    from graphtrain.eval.evaluate import evaluate
    from graphtrain.inference.export import export
    from graphtrain.models.gnn import MigrationGNN
    from graphtrain.names import item_type
    from graphtrain.train import checkpoint

    dataset = Dataset.load(work.dataset)
    shape = storage.read_json(storage.join(current.checkpoint, "model.json"))
    torch.manual_seed(0)
    model = MigrationGNN(ModelConfig(**shape["model"]), dataset.num_nodes, shape["source_domain"], shape["target_domain"])
    model.init_item_bias({item_type(d): torch.from_numpy(item_popularity(dataset, d)) for d in dataset.domains})
    model.load_full_state_dict(checkpoint.warm_start_state(current.checkpoint, model, dataset.users, dataset.items))
    base = storage.join(workdir, "current")
    refit = storage.join(base, "checkpoint")
    if storage.is_local(refit):
        os.makedirs(refit, exist_ok=True)
    state = storage.read_json(storage.join(current.checkpoint, "state.json"))
    checkpoint.save(refit, model, torch.optim.Adam(model.parameters()), state["epoch"], [], {"from_version": current.number},
                    id_maps=(dataset.users, dataset.items))
    export(work.dataset, refit, storage.join(base, "model"))
    return evaluate(EvalConfig(dataset=work.dataset, model=storage.join(base, "model"), output=storage.join(base, "reports")))


def wait_until_served(base_url: str, version: int, timeout_s: float) -> dict:
    """Poll ``GET /version`` until the endpoint answers from ``version``."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout_s:
        try:
            last = http_get_json(f"{base_url.rstrip('/')}/version", timeout=5).get("registry_version")
        except OSError as err:
            last = f"error: {err}"
        if last == version:
            return {"served": True, "seconds": round(time.monotonic() - started, 2)}
        time.sleep(0.5)
    return {"served": False, "seconds": round(time.monotonic() - started, 2), "last_answer": last}


def _has_files(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = storage.filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return any(i.type == pafs.FileType.File and i.size for i in infos)


def _write_report(work: Workdir, steps: dict) -> None:
    fs, root = storage.filesystem(work.reports.rsplit("/", 1)[0] if not storage.is_local(work.reports) else os.path.dirname(work.reports))
    with fs.open_output_stream(f"{root.rstrip('/')}/{RETRAIN_REPORT}") as f:
        f.write((json.dumps(steps, indent=2, sort_keys=True, default=str) + "\n").encode())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
