"""Shared helpers for the side-by-side benchmarks in bench/.

Each benchmark measures graphtrain and a baseline in the same run and writes
``bench/results/<name>.json`` with ``{"name", "unit", "ours", "baseline", "ratio",
"params", "machine"}`` (ratio = ours / baseline, higher is better).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time

import psutil

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def process_role(process: psutil.Process) -> str:
    """What a process under the bench is, from its name and command line."""
    try:
        name = process.name()
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if "graphtrain.cli" in command:  # a stage run as a user runs it, in its own process
        return "driver"
    if "server_main" in command:
        return "graph_server"
    if "ServeReplica" in command or "ServeReplica" in name:
        return "serve_replica"
    if "RayTrainWorker" in command or "RayTrainWorker" in name:
        return "train_worker"
    if name.startswith("ray::") or command.startswith("ray::"):
        return "ray_worker"
    return "ray_system"


class PeakMemory:
    """Peak resident memory of this process and all its descendants (Ray's raylet,
    workers and object store included when Ray was started here), sampled every 0.1 s.

    Besides the tree's total, it keeps per role (``process_role``) the peak RSS of the
    single largest process: the driver is this process.
    """

    def __init__(self, interval_s: float = 0.1, self_role: str = "driver"):
        self.interval_s = interval_s
        self.self_role = self_role
        self.peak_bytes = 0
        self.role_peak_bytes: dict[str, int] = {}
        self._stop = threading.Event()

    def _total(self) -> int:
        root = psutil.Process()
        total = root.memory_info().rss
        self._note(self.self_role, total)
        for child in root.children(recursive=True):
            try:
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            self._note(process_role(child), rss)
        return total

    def _note(self, role: str, rss: int) -> None:
        self.role_peak_bytes[role] = max(self.role_peak_bytes.get(role, 0), rss)

    def _run(self):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._total())
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakMemory":
        self.peak_bytes = self._total()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._total())

    @property
    def peak_gib(self) -> float:
        return round(self.peak_bytes / 2**30, 2)

    def role_gib(self) -> dict[str, float]:
        """Peak RSS of the largest process of each role, GiB."""
        return {role: round(b / 2**30, 3) for role, b in sorted(self.role_peak_bytes.items())}


def write_result(name: str, unit: str, ours: float, baseline: float, params: dict, extra: dict | None = None) -> dict:
    """Write ``bench/results/<name>.json``; ``extra`` adds detailed results under their own keys."""
    os.makedirs(RESULTS, exist_ok=True)
    result = {
        "name": name,
        "unit": unit,
        "ours": ours,
        "baseline": baseline,
        "ratio": ours / baseline if baseline else None,
        "params": params,
        "machine": machine(),
        **(extra or {}),
    }
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return result
