"""The README's cluster path through `ray job submit`, against a `ray start --head`
cluster of our own: retrain jobs into a model registry, a serve job following it, the
promotion gate and a rollback. The job's runtime_env and graphtrain's own must merge."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from graphtrain.data.synthetic import write_logs
from graphtrain.net import free_port
from graphtrain.registry import Registry

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


def readme_cluster_commands() -> list[str]:
    """The commands of README.md's "On a cluster" block, continuations joined."""
    text = open(os.path.join(REPO, "README.md")).read()
    block = text.split("## On a cluster", 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


class Load:
    """GET /recommend in a loop on a thread; counts answers per registry version and failures."""

    def __init__(self, base: str, user: str):
        import threading

        self.url = f"{base}/recommend?user_id={user}&domain=movies&k=5"
        self.version_url = f"{base}/version"
        self.failures, self.answers, self.done = [], 0, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        import urllib.request

        while not self.done.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=30) as response:
                    json.loads(response.read())
                self.answers += 1
            except Exception as err:  # every failure counts, whatever its kind
                self.failures.append(repr(err))
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=60)


def _registry_version(base: str):
    import urllib.request

    with urllib.request.urlopen(f"{base}/version", timeout=10) as response:
        return json.loads(response.read())["registry_version"]


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as err:  # not up yet
            last = repr(err)
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s:.0f} s; last: {last}")


def test_readme_cluster_path_serves_retrains_gates_and_rolls_back(head_cluster, tmp_path):
    """The README's cluster commands, as written but for address, paths, ports and the
    cluster's size: version 1 is trained and served, version 2 is promoted and served
    with no failed request, a worse version 3 is rejected and never served, and a
    rollback to version 1 reaches the endpoint."""
    from tests.integration.retrain_data import all_logs, first_logs, worse_logs

    address, env = head_cluster
    logs = all_logs()
    for name, frame in (("day1", first_logs(logs)), ("day2", logs), ("day3", worse_logs(logs, "movies"))):
        write_logs(frame, str(tmp_path / "logs" / name))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    registry = str(tmp_path / "registry")
    commands = readme_cluster_commands()
    assert len(commands) == 5, commands

    def fill(command: str, day: str = "") -> list[str]:
        command = (command.replace("http://HEAD:8265", address).replace("s3://bucket/registry", registry)
                   .replace("--host 0.0.0.0", "--host 127.0.0.1").replace("--port 8000", f"--port {port}")
                   .replace("--workers 8 --num-parts 4", "--workers 1 --num-parts 1"))  # this machine's size
        if day:
            command = command.replace("s3://bucket/logs/day2/", str(tmp_path / "logs" / day))
            command = command.replace("s3://bucket/runs/day2", str(tmp_path / "runs" / day))
        command = command.replace("s3://bucket/logs/day1/", str(tmp_path / "logs" / "day1"))
        command = command.replace("s3://bucket/runs/day1", str(tmp_path / "runs" / "day1"))
        assert "s3://" not in command and "HEAD" not in command, command
        return shlex.split(command)

    def submit(args: list[str]) -> subprocess.CompletedProcess:
        for _ in range(30):  # the head's job agent comes up a few seconds after `ray start`
            done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            if "No available agent to submit job" not in done.stdout + done.stderr:
                return done
            time.sleep(2)
        return done

    def ok(done):
        assert done.returncode == 0, f"{done.args}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        assert "Failed to merge" not in done.stdout
        return done

    started = time.monotonic()
    ok(submit(fill(commands[0])))
    first_seconds = time.monotonic() - started
    assert Registry(registry).pointer()["version"] == 1
    ok(submit(fill(commands[1])))  # --no-wait: the endpoint keeps running as a job
    _wait_for(lambda: _registry_version(base) == 1, 180, "the endpoint answering from version 1")
    user = str(logs["user_id"].iloc[0])
    load = Load(base, user)
    try:
        ok(submit(fill(commands[2], "day2")))
        assert Registry(registry).pointer()["version"] == 2
        _wait_for(lambda: _registry_version(base) == 2, 60, "the endpoint answering from version 2")
        during_swap = load.answers
        worse = ok(submit(fill(commands[2], "day3")))
        report = json.loads((tmp_path / "runs" / "day3" / "retrain.json").read_text())
        assert report["gate"]["accepted"] is False and report["promoted"] is False, report["gate"]
        assert report["version"] == 3 and Registry(registry).pointer()["version"] == 2
        time.sleep(3)  # longer than the replicas' poll of current.json
        assert _registry_version(base) == 2
        listing = ok(subprocess.run(fill(commands[3]), env=env, capture_output=True, text=True, timeout=120)).stdout
        rows = {line.lstrip("* ").split()[0]: line for line in listing.splitlines()[1:]}
        assert "rejected" in rows["3"] and rows["2"].startswith("*"), listing
        ok(subprocess.run(fill(commands[4]), env=env, capture_output=True, text=True, timeout=120))
        _wait_for(lambda: _registry_version(base) == 1, 30, "the endpoint answering from version 1 after the rollback")
    finally:
        load.stop()
    assert not load.failures, load.failures[:5]
    assert during_swap > 0 and load.answers > during_swap
    print(f"job submission path: first retrain job {first_seconds:.0f} s, all {time.monotonic() - started:.0f} s; "
          f"{load.answers} requests during the swaps, 0 failed; gate on the worse logs: {report['gate']['reason']}; "
          f"{worse.stdout.strip().splitlines()[-1] if worse.stdout.strip() else ''}")
