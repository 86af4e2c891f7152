"""Shared fixtures: one local Ray instance on loopback per test session, and tiny
generated cross-domain data."""

from __future__ import annotations

import os

# Before Ray or torch load: no token auth and loopback only for the local test
# instance, one OpenMP thread (DGL's threads spin on small machines).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from graphtrain.config import IngestConfig  # noqa: E402
from graphtrain.data.synthetic import SyntheticSpec, generate, write_logs  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
TINY = SyntheticSpec(num_users=300, items_per_domain=120, num_clusters=4, interactions_per_user=8, seed=3)


@pytest.fixture(scope="session")
def ray_session():
    from graphtrain.ray_env import ensure_ray

    ray = ensure_ray(num_cpus=2)
    yield ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_logs():
    return generate(TINY)


@pytest.fixture(scope="session")
def tiny_logs_dir(tmp_path_factory, tiny_logs):
    directory = tmp_path_factory.mktemp("raw")
    write_logs(tiny_logs, str(directory))
    return str(directory)


@pytest.fixture(scope="session")
def tiny_dataset_uri(ray_session, tmp_path_factory, tiny_logs_dir):
    from graphtrain.data.ingest import ingest

    output = str(tmp_path_factory.mktemp("work") / "dataset")
    ingest(IngestConfig(inputs=[tiny_logs_dir], output=output, source_domain="books", target_domain="movies", seed=0))
    return output


@pytest.fixture(scope="session")
def tiny_dataset(tiny_dataset_uri):
    from graphtrain.data.dataset import Dataset

    return Dataset.load(tiny_dataset_uri)


@pytest.fixture(scope="session")
def rated_dataset_uri(ray_session, tmp_path_factory):
    """The tiny graph with 1-5 ratings as weights, where a weight mix-up shows."""
    import dataclasses

    from graphtrain.data.ingest import ingest

    raw = tmp_path_factory.mktemp("rated-raw")
    write_logs(generate(dataclasses.replace(TINY, ratings=True)), str(raw))
    output = str(tmp_path_factory.mktemp("rated") / "dataset")
    ingest(IngestConfig(inputs=[str(raw)], output=output, source_domain="books", target_domain="movies", seed=0))
    return output
