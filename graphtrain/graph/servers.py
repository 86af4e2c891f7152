"""DGL graph servers run by Ray actors.

One :class:`GraphServerActor` per partition. The actor reserves a free port on its
node (held until its server starts, so servers sharing a host never get the same
one), starts ``python -m graphtrain.graph.server_main`` as a child process (with
``DGL_ROLE=server`` and one OpenMP thread), watches it, and kills it when asked or
when the actor itself dies (the child has PR_SET_PDEATHSIG). The driver uses
:class:`GraphServerGroup` as a context manager: servers stop on success, on
failure and on cancellation. Clients get the group's :class:`ServerEndpoints`.

Every server publishes its partition in shared memory, and a client on the same
Ray node samples that partition in-process (DGL's fast path) and asks the other
servers over RPC. DGL names the shared memory after the graph, so when several
servers share a host (a simulated multi-node cluster) each gets its own name.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

from graphtrain import storage
from graphtrain.errors import GraphServerError
from graphtrain.graph.partition import PART_CONFIG
from graphtrain.net import hold_free_port
from graphtrain.ray_env import GRAPH_SERVER_RESOURCE, THREAD_ENV, actor_runtime_env, node_type_resource

READY_LINE = "start graph service"
START_TIMEOUT_S = 60.0
# Placement-group bundles must hold some resource. Servers take no CPU (their DGL
# process is outside Ray's accounting), so each bundle holds a token of logical memory.
BUNDLE = {"memory": 64 * 1024 * 1024}


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class ServerEndpoints:
    """Where each partition's graph server listens, and on which Ray node.

    ``addresses[p]`` is partition p's ``(ip, port)``, ``node_ids[p]`` its Ray node.
    """

    addresses: tuple[tuple[str, int], ...]
    node_ids: tuple[str, ...]

    def __post_init__(self):
        if len(set(self.addresses)) < len(self.addresses):
            raise GraphServerError(f"graph servers share an address: {list(self.addresses)}; each partition's "
                                   "server needs its own port (GraphServerActor.reserve_address holds one per server)")

    @property
    def ip_config(self) -> str:
        """DGL's ip_config text: one "ip port" line per partition, in partition order."""
        return "".join(f"{ip} {port}\n" for ip, port in self.addresses)

    @property
    def co_located(self) -> bool:
        """Several servers on one host: their shared memory needs distinct names."""
        hosts = [ip for ip, _ in self.addresses]
        return len(set(hosts)) < len(hosts)

    def local_partition(self, node_id: Optional[str]) -> Optional[int]:
        """The partition served on ``node_id`` (the first, if several), else None.

        Chosen by Ray node rather than by DGL's match of interface IPs, which takes
        the first server on a shared host for every client there."""
        return self.node_ids.index(node_id) if node_id in self.node_ids else None

    def shared_memory_name(self, graph_name: str, partition_id: Optional[int]) -> str:
        """The name partition ``partition_id``'s server publishes its shared memory under
        (a name no server uses for ``None``: the client then has no local partition)."""
        if partition_id is None:
            return f"{graph_name}-nolocal"
        return f"{graph_name}-part{partition_id}" if self.co_located else graph_name


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

    def reserve_address(self) -> tuple[str, int, str]:
        """(ip, free port, Ray node id) of this actor's node. The port stays bound
        until ``start``: two actors on one host reserving at once once got the same
        port, and both servers then listened on it (clients hung connecting)."""
        import ray

        ip = node_ip()
        self._port_holder = hold_free_port(ip)
        self.ip, self.port = ip, self._port_holder.getsockname()[1]
        return ip, self.port, ray.get_runtime_context().get_node_id()

    def _partition_config(self, endpoints: ServerEndpoints) -> str:
        """DGL's partition config, renamed to this partition's shared-memory name when
        servers share a host (DGL reads the name from the config)."""
        original = os.path.join(self.partitions_dir, PART_CONFIG)
        if not endpoints.co_located:
            return original
        try:
            with open(original) as f:
                config = json.load(f)
        except (OSError, ValueError) as err:
            raise GraphServerError(f"graph server {self.partition_id}: cannot read the partition config {original}: {err}") from err
        config["graph_name"] = endpoints.shared_memory_name(config["graph_name"], self.partition_id)
        for key, files in config.items():  # part files are relative to the config's folder
            if key.startswith("part-"):
                config[key] = {field: os.path.join(self.partitions_dir, path) for field, path in files.items()}
        renamed = os.path.join(self.workdir, PART_CONFIG)
        with open(renamed, "w") as f:
            json.dump(config, f)
        return renamed

    def start(self, endpoints: ServerEndpoints, num_clients: int, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the server and wait until it has loaded its partition."""
        config_path = os.path.join(self.workdir, "ip_config.txt")
        with open(config_path, "w") as f:
            f.write(endpoints.ip_config)
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
            "DGL_CONF_PATH": self._partition_config(endpoints),
            "DGL_GRAPH_FORMAT": "csc",
        }
        log = open(self.log_path, "w")
        self._port_holder.close()  # the server binds it now
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
            # Drop the Popen now: collected at actor teardown instead, its __del__ can
            # meet Ray's SIGTERM and print a SystemExit traceback for a clean stop.
            self.process = None


class GraphServerGroup:
    """Start one server actor per partition.

    ``with GraphServerGroup(partitions_uri, num_parts, num_clients) as group:`` then
    hand ``group.endpoints`` to the clients.
    """

    def __init__(self, partitions_uri: str, num_parts: int, num_clients: int):
        self.partitions_uri = partitions_uri
        self.num_parts = num_parts
        self.num_clients = num_clients
        self.actors = []
        self.placement_group = None
        self.endpoints: Optional[ServerEndpoints] = None

    def __enter__(self) -> "GraphServerGroup":
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        remote = ray.remote(num_cpus=0, max_restarts=0)(GraphServerActor)
        try:
            # One partition per node where there are enough nodes (SPREAD is soft:
            # a single machine holds them all).
            bundle = {**BUNDLE, **node_type_resource(GRAPH_SERVER_RESOURCE)}
            self.placement_group = placement_group([bundle] * self.num_parts, strategy="SPREAD")
            ray.get(self.placement_group.ready(), timeout=START_TIMEOUT_S)
            self.actors = [
                remote.options(
                    scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement_group, placement_group_bundle_index=p),
                    memory=BUNDLE["memory"],
                    runtime_env=actor_runtime_env(),  # reads the partitions from any storage URI
                ).remote(p, self.partitions_uri)
                for p in range(self.num_parts)
            ]
            reserved = ray.get([a.reserve_address.remote() for a in self.actors])
            self.endpoints = ServerEndpoints(
                addresses=tuple((ip, port) for ip, port, _ in reserved), node_ids=tuple(node for _, _, node in reserved)
            )
            ray.get([a.start.remote(self.endpoints, self.num_clients) for a in self.actors], timeout=START_TIMEOUT_S + 30)
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
