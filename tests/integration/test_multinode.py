"""Two simulated nodes on this machine: partitions, DistGraph clients and Ray Train
across nodes (the script runs in its own process with its own Ray cluster)."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _simulated_cluster_result(module: str, marker: str) -> dict:
    """Runs a script that builds its own `ray.cluster_utils.Cluster` (a process of its
    own, away from the tests' shared Ray) and returns the JSON it prints after marker."""
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    marked = [line for line in done.stdout.splitlines() if line.startswith(marker + " ")]
    assert marked, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(marked[-1].split(" ", 1)[1])


def test_two_nodes_two_partitions_two_workers():
    result = _simulated_cluster_result("tests.integration.multinode_run", "MULTINODE_RESULT")
    assert result["nodes"] == 2 and result["servers"] == 2
    assert result["server_nodes"] == 2  # one graph server per node
    assert result["client_nodes"] == 2  # one DistGraph client per node
    # Each client samples its own node's partition in-process, the other over RPC.
    assert result["local_partitions"] == result["node_partitions"]
    assert result["local_partitions"] == [0, 1]  # client r was placed on partition r's node
    # Partition-aware shards: most of a client's seed edges live in its own partition.
    assert min(result["own_edges"]) > 0.8, result["own_edges"]
    # Every training edge is a seed exactly once per epoch across the two workers.
    assert result["distinct_seeds"] == result["train_edges"]
    assert result["seed_count"] - result["train_edges"] <= 1  # at most one padding edge per shard
    assert result["sampled"] > 1000 and result["sampled_not_true"] == 0
    assert result["trained_epochs"] == 2 and result["checkpoint"].endswith("epoch_0001")


def test_retrain_across_two_nodes_with_serve_following_the_registry():
    result = _simulated_cluster_result("tests.integration.multinode_retrain", "MULTINODE_RETRAIN")
    assert result["nodes"] == 3
    # Graph servers and train workers asked for their node types' resources: both worker nodes, never the head.
    assert len(result["server_nodes"]) == 2 and result["servers_on_head"] == 0, result
    assert len(result["trainer_nodes"]) == 2 and result["trainers_on_head"] == 0, result
    assert result["first"] == {"version": 1, "promoted": True, "serving": 1}
    second = result["second"]
    assert second["version"] == 2 and second["promoted"] and second["served"]["served"], second
    assert result["served_version"] == 2
    assert result["methods"] == ["metis", "hash"]  # v2 warm-starts across partitioners
    assert result["answers"] > 0 and not result["failures"], result
    print(f"two-node retrain: v2 served {second['served']['seconds']} s after promotion, "
          f"{result['answers']} requests during the swap, 0 failed; gate: {second['gate']['reason']}")
