"""Evaluation over the dataset's edge files as Ray tasks equals the one-table run."""

import numpy as np
import pandas as pd
import pytest

from graphtrain import storage
from graphtrain.config import IngestConfig
from graphtrain.data.dataset import Dataset
from graphtrain.eval.evaluate import _domain_files, evaluate_buckets, evaluate_scorers
from graphtrain.inference import artifact
from graphtrain.inference.artifact import ModelArtifact
from graphtrain.ranking.scorers import embedding_scorer, popularity_scorer

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def bucketed(tiny_logs_dir, tmp_path_factory):
    """The tiny logs ingested into 4 user buckets, and a model artifact of random vectors."""
    from graphtrain.data.ingest import ingest

    work = tmp_path_factory.mktemp("bucketed")
    uri = str(work / "dataset")
    ingest(IngestConfig(inputs=[tiny_logs_dir], output=uri, source_domain="books", target_domain="movies", buckets=4))
    dataset = Dataset.load(uri)
    rng = np.random.default_rng(0)
    arrays = {}
    for d in dataset.domains:
        arrays[f"users@{d}"] = rng.normal(size=(dataset.num_users, 8)).astype(np.float32)
        arrays[f"items@{d}"] = rng.normal(size=(dataset.num_items(d), 8)).astype(np.float32)
        arrays[f"popularity@{d}"] = np.bincount(dataset.split_edges("train", d)[1], minlength=dataset.num_items(d)).astype(np.float32)
    model = str(work / "model")
    manifest = {"version": "v", "domains": dataset.domains, "source_domain": "books", "target_domain": "movies"}
    with storage.atomic_artifact(model) as staging:
        artifact.write(staging, manifest=manifest, users=dataset.users, items=dataset.items, arrays=arrays)
    return uri, model, dataset


def _one_table(dataset, model_uri, max_users):
    model = ModelArtifact.load(model_uri)
    scorers = {
        "graphtrain": embedding_scorer(model.user_vectors("movies"), model.item_vectors("movies")),
        "popularity": popularity_scorer(model.popularity("movies")),
    }
    return evaluate_scorers(dataset, "movies", scorers, (10, 20), max_users=max_users)


@pytest.mark.parametrize("max_users", [None, 25])
def test_evaluation_by_bucket_tasks_equals_the_full_computation(bucketed, max_users):
    uri, model, dataset = bucketed
    assert len(_domain_files(uri, "movies")) == 4  # four tasks, each one user bucket's target rows
    batched = evaluate_buckets(uri, model, "movies", (10, 20), max_users=max_users)
    full = _one_table(dataset, model, max_users)
    assert batched.keys() == full.keys() and set(full["graphtrain"]) == {"warm", "cold", "warm_sampled", "cold_sampled"}
    for name in full:
        assert batched[name].keys() == full[name].keys()
        for group in full[name]:
            assert batched[name][group] == pytest.approx(full[name][group], rel=1e-9, abs=1e-12), (name, group)
    if max_users is not None:
        assert full["graphtrain"]["warm"]["users"] == max_users and full["graphtrain"]["cold"]["users"] <= max_users
    assert full["graphtrain"]["warm"]["ndcg@10"] != full["popularity"]["warm"]["ndcg@10"]  # the scorers differ


def test_sampled_negatives_do_not_depend_on_the_batch(bucketed):
    """A case's negatives are a hash of (seed, user, item): any subset draws them alike."""
    from graphtrain.ranking.cases import SampledCases

    _, _, dataset = bucketed
    cases = SampledCases.of(dataset, "movies", "test", num_negatives=50, seed=3)
    every = cases.negatives(0)
    half = cases.subset(np.arange(len(cases)) % 2 == 1)
    np.testing.assert_array_equal(half.negatives(0), every[1::2])
    assert pd.Series(every.ravel()).nunique() > 50
