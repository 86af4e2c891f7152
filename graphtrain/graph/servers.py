"""DGL graph servers run by Ray actors.

One :class:`GraphServerActor` per partition. The actor picks a free port on its
node, starts ``python -m graphtrain.graph.server_main`` as a child process (with
``DGL_ROLE=server`` and one OpenMP thread), watches it, and kills it when asked or
when the actor itself dies (the child has PR_SET_PDEATHSIG). The driver uses
:class:`GraphServerGroup` as a context manager: servers stop on success, on
failure and on cancellation.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from graphtrain import storage
from graphtrain.errors import GraphServerError
from graphtrain.graph.partition import PART_CONFIG
from graphtrain.ray_env import THREAD_ENV, actor_runtime_env

READY_LINE = "start graph service"
START_TIMEOUT_S = 60.0
# Placement-group bundles must hold some resource. Servers take no CPU (their DGL
# process is outside Ray's accounting), so each bundle holds a token of logical memory.
BUNDLE = {"memory": 64 * 1024 * 1024}


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def shares_hosts(ip_config: str) -> bool:
    """True when two partitions' servers run on one host (then no shared memory)."""
    hosts = [line.split()[0] for line in ip_config.splitlines() if line.strip()]
    return len(set(hosts)) < len(hosts)


def node_ip() -> str:
    """The address Ray registered for this node (127.0.0.1 for a loopback-only
    local instance; the node's cluster address otherwise)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node["NodeID"] == node_id:
            return node["NodeManagerAddress"]
    return ray.util.get_node_ip_address()


class GraphServerActor:
    """Owns one DGL server process for one partition (wrapped by ``ray.remote``)."""

    def __init__(self, partition_id: int, partitions_uri: str):
        self.partition_id = partition_id
        self.workdir = tempfile.mkdtemp(prefix=f"graphtrain-server{partition_id}-")
        self.partitions_dir = storage.materialize(partitions_uri)
        self.process: subprocess.Popen | None = None
        self.log_path = os.path.join(self.workdir, "server.log")

    def reserve_address(self) -> tuple[str, int]:
        ip = node_ip()
        self.ip, self.port = ip, _free_port(ip)
        return ip, self.port

    def start(self, ip_config: str, num_clients: int, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the server and wait until it has loaded its partition."""
        config_path = os.path.join(self.workdir, "ip_config.txt")
        with open(config_path, "w") as f:
            f.write(ip_config)
        env = {
            **os.environ,
            **THREAD_ENV,
            "PYTHONUNBUFFERED": "1",
            "DGL_ROLE": "server",
            "DGL_DIST_MODE": "distributed",
            "DGL_SERVER_ID": str(self.partition_id),
            "DGL_NUM_SERVER": "1",
            "DGL_NUM_CLIENT": str(num_clients),
            "DGL_IP_CONFIG": config_path,
            "DGL_CONF_PATH": os.path.join(self.partitions_dir, PART_CONFIG),
            "DGL_GRAPH_FORMAT": "csc",
            "GRAPHTRAIN_SHARED_MEM": "0" if shares_hosts(ip_config) else "1",
        }
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "graphtrain.graph.server_main"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GraphServerError(
                    f"graph server {self.partition_id} exited with code {self.process.returncode} "
                    f"while starting:\n{self.log_tail()}"
                )
            if READY_LINE in self._log():
                return f"{self.ip}:{self.port}"
            time.sleep(0.1)
        self.stop(grace_s=0)
        raise GraphServerError(f"graph server {self.partition_id} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def _log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._log().splitlines()[-lines:])

    def health(self) -> dict:
        running = self.process is not None and self.process.poll() is None
        return {"partition": self.partition_id, "running": running, "pid": self.process.pid if self.process else None}

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Wait up to ``grace_s`` for the server to exit on its own (clients called
        ``exit_client``), then terminate, then kill. Returns the exit code."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                return self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class GraphServerGroup:
    """Start one server actor per partition; yields the DGL ``ip_config`` text.

    ``with GraphServerGroup(partitions_uri, num_parts, num_clients) as group:`` then
    hand ``group.ip_config`` to the clients.
    """

    def __init__(self, partitions_uri: str, num_parts: int, num_clients: int):
        self.partitions_uri = partitions_uri
        self.num_parts = num_parts
        self.num_clients = num_clients
        self.actors = []
        self.placement_group = None
        self.ip_config = ""

    def __enter__(self) -> "GraphServerGroup":
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        remote = ray.remote(num_cpus=0, max_restarts=0)(GraphServerActor)
        try:
            # One partition per node where there are enough nodes (SPREAD is soft:
            # a single machine holds them all).
            self.placement_group = placement_group([BUNDLE] * self.num_parts, strategy="SPREAD")
            ray.get(self.placement_group.ready(), timeout=START_TIMEOUT_S)
            self.actors = [
                remote.options(
                    scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=p),
                    memory=BUNDLE["memory"],
                    runtime_env=actor_runtime_env(),  # reads the partitions from any storage URI
                ).remote(p, self.partitions_uri)
                for p in range(self.num_parts)
            ]
            addresses = ray.get([a.reserve_address.remote() for a in self.actors])
            self.ip_config = "".join(f"{ip} {port}\n" for ip, port in addresses)
            ray.get([a.start.remote(self.ip_config, self.num_clients) for a in self.actors], timeout=START_TIMEOUT_S + 30)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def health(self) -> list[dict]:
        import ray

        return ray.get([a.health.remote() for a in self.actors])

    def __exit__(self, exc_type, exc, tb) -> None:
        import ray

        grace = 10.0 if exc_type is None else 0.0
        try:
            ray.get([a.stop.remote(grace) for a in self.actors], timeout=grace + 20)
        except Exception:  # the actor may already be gone; its child dies with it
            pass
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.placement_group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.placement_group)
            self.placement_group = None
