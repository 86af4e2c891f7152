"""Runs in its own process: the retrain flow on a simulated 2-node cluster
(ray.cluster_utils.Cluster). The head has no CPU for work and neither custom
resource; two worker nodes advertise graphtrain_graph_server and graphtrain_trainer,
as cluster/ configures them, so graph servers and train workers spread over both and
none lands on the head. A Serve app follows the registry while version 2 is promoted.

Prints one JSON line with what the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from graphtrain.ray_env import _loopback_only

    _loopback_only()
    import ray
    from ray.cluster_utils import Cluster

    from graphtrain.config import RetrainConfig, RunConfig, ServeConfig
    from graphtrain.data.synthetic import write_logs
    from graphtrain.graph import servers
    from graphtrain.net import free_port
    from graphtrain.ray_env import GRAPH_SERVER_RESOURCE, TRAINER_RESOURCE
    from graphtrain.retrain import retrain
    from graphtrain.serve import app
    from tests.integration.retrain_data import all_logs, first_logs

    role = {GRAPH_SERVER_RESOURCE: 1, TRAINER_RESOURCE: 1}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": True,  # the state API lists actors
    })
    for _ in range(2):
        cluster.add_node(num_cpus=1, resources=role, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    head = ray.get_runtime_context().get_node_id()
    work = tempfile.mkdtemp(prefix="graphtrain-multinode-retrain-")

    # Record where the graph servers and the train workers ran.
    placed = {"servers": [], "trainers": []}
    original_enter = servers.GraphServerGroup.__enter__

    def recording_enter(self):
        group = original_enter(self)
        placed["servers"] += list(group.endpoints.node_ids)
        return group

    servers.GraphServerGroup.__enter__ = recording_enter
    try:
        logs = all_logs()
        write_logs(first_logs(logs), f"{work}/day1")
        write_logs(logs, f"{work}/day2")
        registry = f"{work}/registry"

        # day 1 partitioned by METIS in the driver, day 2 by the hash partitioner's Ray tasks
        def once(day: str, method: str, **extra) -> dict:
            run = RunConfig(inputs=[f"{work}/{day}"], source_domain="books", target_domain="movies",
                            workdir=f"{work}/runs/{day}", workers=2, num_parts=2, epochs=3, partition_method=method)
            return retrain(RetrainConfig(registry=registry, run=run, tolerance=0.05, **extra), log=lambda _: None)

        first = once("day1", "metis")
        port = free_port()
        base = app.start(ServeConfig(registry=registry, port=port, registry_poll_s=0.5))
        failures, answers, done = [], [0], threading.Event()
        user = str(logs["user_id"].iloc[0])

        def load():
            while not done.is_set():
                try:
                    with urllib.request.urlopen(f"{base}/recommend?user_id={user}&domain=movies&k=5", timeout=30) as r:
                        json.loads(r.read())
                    answers[0] += 1
                except Exception as err:  # every failure counts
                    failures.append(repr(err))
                time.sleep(0.02)

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        second = once("day2", "hash", serve_url=base)
        done.set()
        thread.join(timeout=60)
        with urllib.request.urlopen(f"{base}/version", timeout=10) as r:
            served = json.loads(r.read())["registry_version"]
        from ray.util.state import list_actors

        from graphtrain.graph.partition import read_info

        trainer_nodes = [  # dead ones too: both retrains' workers
            a["node_id"] for a in list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=100)
        ]
        print("MULTINODE_RETRAIN " + json.dumps({
            "nodes": len(ray.nodes()),
            "server_nodes": sorted(set(placed["servers"])), "servers_on_head": placed["servers"].count(head),
            "trainer_nodes": sorted(set(trainer_nodes)), "trainers_on_head": trainer_nodes.count(head),
            "first": {k: first[k] for k in ("version", "promoted", "serving")},
            "second": {k: second[k] for k in ("version", "promoted", "serving", "served", "gate")},
            "served_version": served, "answers": answers[0], "failures": failures[:5],
            "methods": [read_info(f"{work}/runs/{day}/partitions")["method"] for day in ("day1", "day2")],
        }), flush=True)
    finally:
        servers.GraphServerGroup.__enter__ = original_enter
        try:
            app.stop()
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
