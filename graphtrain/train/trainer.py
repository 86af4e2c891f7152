"""`graphtrain train`: Ray Train ``TorchTrainer`` over DGL graph servers.

The driver starts one graph-server actor per partition, then N Ray Train workers.
Each worker is a DGL ``DistGraph`` client running :func:`train_worker`; rank 0
writes a checkpoint per epoch through ``ray.train.report``. Rerunning with the same
output resumes from the last checkpoint (Ray Train restores the run by name).
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time

from graphtrain import storage
from graphtrain.config import TrainConfig
from graphtrain.errors import ConfigError
from graphtrain.ray_env import (
    TRAINER_RESOURCE, actor_runtime_env, ensure_ray, joined_a_cluster, node_type_resource, wait_for_resources,
)
from graphtrain.train import checkpoint
from graphtrain.train.validation import best_epoch

RUN_NAME = "train"


def ray_train_loop(loop_config: dict) -> None:
    """Runs inside every Ray Train worker."""
    import ray.train
    from ray.train import Checkpoint

    from graphtrain.data.dataset import Dataset
    from graphtrain.graph.client import dist_graph_client
    from graphtrain.train.data import TrainData
    from graphtrain.train.loop import train_worker

    config: TrainConfig = loop_config["config"]
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()

    with dist_graph_client(loop_config["endpoints"], config.partitions) as source:
        # A worker reads its own partition's train edges; the id maps (O(users)) only
        # where a checkpoint is written, compared or warm-started.
        data = TrainData.from_partitions(source.partitions_dir, config.dataset, source.partitions_uri)
        id_maps = functools.cache(lambda: Dataset.load_id_maps(config.dataset))

        def report(epoch, metrics, model, optimizer, history):
            if rank == 0 and loop_config.get("progress") is not None:
                loop_config["progress"].put_nowait({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})
            sparse = model.node_embeddings  # KVStore tables: every worker saves its optimiser share
            if rank != 0 and sparse is None:
                ray.train.report(metrics)
                return
            with tempfile.TemporaryDirectory() as tmp:
                if rank == 0:
                    extra = {"workers": world_size, "device": metrics["device"]}
                    checkpoint.save(tmp, model, optimizer, epoch, history, extra, id_maps=id_maps())
                if sparse is not None:
                    sparse.save_optimizer(tmp)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp), checkpoint_dir_name=checkpoint.dir_name(epoch))

        def resume(model, optimizer):
            restored = ray.train.get_checkpoint()
            if restored is None:
                if config.warm_start:  # a new run starts from an earlier model's weights
                    model.load_full_state_dict(checkpoint.warm_start_state(config.warm_start, model, *id_maps()))
                return -1, []
            with restored.as_directory() as directory:
                if rank == 0:
                    checkpoint.check_id_maps(directory, *id_maps(), config.dataset)
                progress = checkpoint.load_progress(directory, model, optimizer)
                if model.node_embeddings is not None:
                    model.node_embeddings.load_optimizer(directory)
                return progress

        train_worker(config, data, source, rank=rank, world_size=world_size, report=report, resume=resume)


# How long a cluster's autoscaler gets to add the nodes a run asks for.
RESOURCE_WAIT_S = 300


def check_resources(config: TrainConfig) -> None:
    """Fail at once, naming the field, when the cluster can never run ``workers``
    train workers (one CPU each, and a GPU each with ``gpu``). Ray Train would
    otherwise retry the worker group's start every minute, forever. A local instance
    is checked at once; a joined cluster gets RESOURCE_WAIT_S to scale up."""
    need = {"CPU": float(config.workers), **({"GPU": float(config.workers)} if config.gpu else {})}
    total = wait_for_resources(need, RESOURCE_WAIT_S if joined_a_cluster() else 0)
    if total is None:
        return
    have = f"the Ray cluster has {total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs"
    if config.gpu and total.get("GPU", 0) < config.workers:
        raise ConfigError("gpu", True, f"{have}; {config.workers} GPU workers need {config.workers} GPUs. "
                          "Drop --gpu, lower --workers, or add GPU nodes")
    raise ConfigError("workers", config.workers, f"{have}; each train worker needs one CPU. "
                      f"Use --workers {int(total.get('CPU', 0)) or 1} or fewer, or add nodes")


def epoch_line(metrics: dict, epochs: int, started: float) -> str:
    """One progress line per epoch, from rank 0's metrics, with the time left."""
    done = metrics["epoch"] + 1
    elapsed = time.perf_counter() - started
    parts = [f"epoch {done}/{epochs}", f"loss {metrics['loss']:.4f}"]
    if "valid_ndcg@10" in metrics:
        parts.append(f"valid ndcg@10 {metrics['valid_ndcg@10']:.4f}")
    parts += [f"{metrics['seeds_per_s']:,.0f} seeds/s", f"{metrics['epoch_seconds']:.1f} s",
              f"ETA {elapsed / done * (epochs - done):.0f} s"
              if done < epochs else "done"]
    return "   " + "  ".join(parts)


def _fit_with_progress(trainer, progress, epochs: int, log) -> object:
    """``trainer.fit()`` in a thread while this one prints rank 0's epochs as they end."""
    import queue
    import threading

    outcome: dict = {}
    started = time.perf_counter()

    def fit():
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # re-raised below, in the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=fit, name="graphtrain-fit", daemon=True)
    worker.start()
    while True:
        alive = worker.is_alive()
        try:
            while True:
                log(epoch_line(progress.get_nowait(), epochs, started))
        except queue.Empty:
            pass
        except Exception:  # the queue's actor gone: progress is best effort
            pass
        if not alive:
            break
        worker.join(timeout=0.5)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def train(config: TrainConfig, log=None) -> dict:
    """Train; returns ``{"checkpoint", "last_checkpoint", "best_epoch", "metrics", "seconds"}``
    and writes ``latest.json``, which points export at the best validated epoch.
    ``log`` (default: the ``graphtrain`` logger) gets a line per epoch from rank 0."""
    from ray.util.queue import Queue
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from graphtrain.graph.partition import read_info
    from graphtrain.graph.servers import GraphServerGroup

    ensure_ray()
    check_resources(config)
    parts = read_info(config.partitions)["num_parts"]
    storage_path = storage.local_path(config.output) if storage.is_local(config.output) else config.output
    started = time.perf_counter()
    log = log or logging.getLogger("graphtrain.train").info
    progress = Queue(actor_options={"num_cpus": 0})
    with GraphServerGroup(config.partitions, parts, num_clients=config.workers) as servers:
        trainer = TorchTrainer(
            ray_train_loop,
            train_loop_config={"config": config, "endpoints": servers.endpoints, "progress": progress},
            scaling_config=ScalingConfig(
                num_workers=config.workers, use_gpu=config.gpu,
                resources_per_worker={"CPU": 1, **node_type_resource(TRAINER_RESOURCE)}
            ),
            run_config=RunConfig(
                name=RUN_NAME, storage_path=storage_path, checkpoint_config=CheckpointConfig(num_to_keep=None),
                worker_runtime_env=actor_runtime_env(),
            ),
        )
        try:
            result = _fit_with_progress(trainer, progress, config.epochs, log)
        finally:
            progress.shutdown()
    seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise RuntimeError(f"training finished without a checkpoint; see the logs under {storage_path}")
    last = result.checkpoint.path
    history = storage.read_json(storage.join(_uri(config.output, last), "state.json"))["history"]
    # Export the best validated epoch (early stopping's choice); the last one without validation.
    best = best_epoch(history)
    chosen = last if best is None else f"{last.rsplit('/', 1)[0]}/{checkpoint.dir_name(best)}"
    summary = {"checkpoint": chosen, "last_checkpoint": last, "best_epoch": best, "metrics": result.metrics, "seconds": seconds,
               "stopped": history[-1].get("stopped", "epochs") if history else None}
    log(f"   training stopped: {summary['stopped']}; best epoch {best}")
    # One atomic write: a reader sees the old pointer or the new one, never half of it.
    storage.write_json(storage.join(config.output, checkpoint.LATEST),
                       {"checkpoint": _uri(config.output, chosen), "last": _uri(config.output, last), "best_epoch": best})
    return summary


def _uri(output: str, path: str) -> str:
    """Ray reports paths inside the storage filesystem; give remote ones their scheme back."""
    if storage.is_local(output) or "://" in path:
        return path
    scheme = output.split("://", 1)[0]
    return f"{scheme}://{path.lstrip('/')}"
