"""`ray job submit` of jobs/retrain.py against a `ray start --head` cluster of our own,
as the README tells a user to: the job's runtime_env and graphtrain's own must merge."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from graphtrain.data.synthetic import SyntheticSpec, generate, write_logs
from graphtrain.net import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def test_job_env_vars_come_from_the_job_config(monkeypatch):
    from graphtrain.ray_env import job_env_vars

    config = {"runtime_env": {"working_dir": ".", "env_vars": {"OMP_NUM_THREADS": "1"}}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(config))
    assert job_env_vars() == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "not json")
    assert job_env_vars() == {}


@pytest.fixture()
def head_cluster():
    """A head node on loopback in its own temp dir; stopped by the PIDs of the
    processes that carry that dir, never with `ray stop` (which would stop every
    Ray instance on the machine)."""
    temp_dir = tempfile.mkdtemp(prefix="gt-head-")
    env = {
        **os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "RAY_ADDRESS": "",
    }
    # Every port of its own: the tests' shared Ray instance holds the defaults (its
    # dashboard agent's 52365 among them), and a second agent there never registers.
    ports = [
        f"--{name}={free_port()}"
        for name in ("port", "dashboard-port", "node-manager-port", "object-manager-port", "ray-client-server-port",
                     "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                     "metrics-export-port")
    ]
    gcs, dashboard = (int(flag.split("=")[1]) for flag in ports[:2])
    subprocess.run(
        [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", *ports, "--num-cpus", "2",
         "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--temp-dir", temp_dir, "--disable-usage-stats"],
        env=env, check=True, capture_output=True, timeout=120,
    )
    try:
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        # The head's own processes name its temp dir or its GCS address (the client
        # server that `ray start` leaves behind); their agents and workers are their
        # children (whose titles Ray rewrites), gathered before any is killed.
        marks = (temp_dir, f"127.0.0.1:{gcs}")
        roots = [p for p in psutil.process_iter(["cmdline"]) if any(m in a for a in (p.info["cmdline"] or []) for m in marks)]
        mine = {p.pid: p for root in roots for p in (root, *_children(root))}.values()
        for process in mine:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(mine), timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _children(process: psutil.Process) -> list:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def test_retrain_job_runs_to_the_end_through_ray_job_submit(head_cluster, tmp_path):
    address, env = head_cluster
    write_logs(generate(SyntheticSpec(num_users=300, items_per_domain=80, seed=9)), str(tmp_path / "logs"))
    workdir = tmp_path / "work"
    command = [
        RAY, "job", "submit", "--address", address, "--runtime-env", "jobs/runtime_env.yaml", "--",
        "python", "jobs/retrain.py", "--input", str(tmp_path / "logs"), "--source-domain", "books",
        "--target-domain", "movies", "--workdir", str(workdir), "--workers", "1", "--epochs", "1",
    ]
    started = time.monotonic()
    for _ in range(30):  # the head's job agent comes up a few seconds after `ray start`
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent to submit job" not in done.stdout + done.stderr:
            break
        time.sleep(2)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "Failed to merge" not in done.stdout
    report = json.loads((workdir / "reports" / "report.json").read_text())
    assert set(report["models"]) >= {"graphtrain", "popularity"}
    print(f"job took {time.monotonic() - started:.0f} s")
