"""Connecting to Ray: a local instance on loopback, or an existing cluster.

One code path: stages call :func:`ensure_ray`, which joins the cluster named by
``RAY_ADDRESS`` (as under ``ray job submit``) or starts a local instance bound to
127.0.0.1 with the thread settings this project needs.
"""

from __future__ import annotations

import json
import os

# Thread counts for every process graphtrain starts: DGL's OpenMP threads spinning
# on a small machine made one measured DistDGL setup 40x slower.
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Ray Train polls workers every 2 s by default; each report then costs ~2 s.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}


# Object-storage credentials and endpoints (pyarrow and fsspec read them from the
# environment). Workers and actors start from the Ray node's environment, not the
# driver's, so the actors a driver starts get the driver's copies.
STORAGE_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCS_", "AZURE_")


# Custom resources that cluster configs (cluster/) give the node types graph servers
# and train workers belong on. The code asks for one unit of each wherever the cluster
# advertises it, so nothing lands on the head by accident; a local instance has none.
GRAPH_SERVER_RESOURCE = "graphtrain_graph_server"
TRAINER_RESOURCE = "graphtrain_trainer"


def node_type_resource(name: str) -> dict[str, float]:
    """``{name: 1}`` when some node of the cluster advertises ``name``, else ``{}``."""
    import ray

    return {name: 1.0} if ray.cluster_resources().get(name, 0) > 0 else {}


def worker_env() -> dict[str, str]:
    return {**THREAD_ENV, **TRAIN_ENV}


def job_env_vars() -> dict[str, str]:
    """The env_vars of the job's own runtime_env, when this driver runs under
    ``ray job submit`` (Ray passes the job's config in RAY_JOB_CONFIG_JSON_ENV_VAR)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        return dict(((json.loads(raw).get("runtime_env") or {}).get("env_vars")) or {})
    except (ValueError, AttributeError):
        return {}


def storage_env() -> dict[str, str]:
    """The driver's object-storage variables, for the runtime_env of actors it starts."""
    return {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES)}


def actor_runtime_env() -> dict:
    """runtime_env for graph servers and train workers: threads and storage access."""
    return {"env_vars": {**worker_env(), **storage_env()}}


def _loopback_only() -> None:
    """Make a local Ray instance register 127.0.0.1 as its node address.

    Ray resolves 127.0.0.1 to the machine's routable address unless cluster mode is
    off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); graph servers bind to the address
    Ray reports, so without this test traffic would leave loopback. The variable is
    read when ray is first imported, hence the module attribute too.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray._private.ray_constants as ray_constants

    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False


def joined_a_cluster() -> bool:
    """True when graphtrain joins an existing Ray cluster (``RAY_ADDRESS``), whose
    autoscaler may add nodes; False for the local instance it starts itself."""
    return bool(os.environ.get("RAY_ADDRESS"))


def wait_for_resources(need: dict[str, float], wait_s: float, poll_s: float = 2.0) -> dict[str, float] | None:
    """Wait up to ``wait_s`` for the cluster to hold ``need`` in total (an
    autoscaler may be adding nodes). Returns None once it does, else the totals."""
    import time

    import ray

    deadline = time.monotonic() + wait_s
    while True:
        total = ray.cluster_resources()
        if all(total.get(k, 0) >= v for k, v in need.items()):
            return None
        if time.monotonic() >= deadline:
            return total
        time.sleep(poll_s)


# Set (by `graphtrain --verbose`, or by hand) to see Ray's, DGL's and every worker's
# own output; by default a run prints graphtrain's lines and real warnings only.
VERBOSE_ENV = "GRAPHTRAIN_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_ray_data() -> None:
    """Ray Data's per-dataset progress and execution-plan lines, off unless verbose
    (call after ``import ray.data``, which configures its loggers)."""
    if verbose():
        return
    import logging

    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    # ERROR: Ray Data warns, at every dataset, that its progress bars are off.
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def ensure_ray(num_cpus: int | None = None):
    """Initialise Ray once per process and return the ``ray`` module. Workers' output
    reaches this process only when verbose (errors still do, as exceptions)."""
    import logging

    import ray

    if ray.is_initialized():
        return ray
    for key, value in TRAIN_ENV.items():
        os.environ.setdefault(key, value)
    quiet = {"log_to_driver": verbose(), "logging_level": logging.INFO if verbose() else logging.WARNING}
    if os.environ.get("RAY_ADDRESS"):
        # Ray refuses a driver runtime_env that sets a variable the job's runtime_env
        # also sets ("Failed to merge the Job's runtime env"): add only the others.
        job_env = job_env_vars()
        extra = {k: v for k, v in worker_env().items() if k not in job_env}
        ray.init(runtime_env={"env_vars": extra} if extra else None, **quiet)
        return ray
    # A local instance that we start and stop ourselves: loopback only, no token auth.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    _loopback_only()
    ray.init(
        # "local": start our own instance even when a `ray start` cluster runs on this
        # machine (ray.init() would join that one, and refuse num_cpus).
        address="local",
        num_cpus=num_cpus or max(2, os.cpu_count() or 2),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": worker_env()},
        **quiet,
    )
    return ray
