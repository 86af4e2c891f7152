"""EMCDR baseline: MF per domain plus a mapping that scores cold-start users."""

import numpy as np

from graphtrain.eval.evaluate import warm_and_cold_users
from graphtrain.models.emcdr import MFConfig, bpr_mf, emcdr
from graphtrain.ranking.cases import SampledCases
from graphtrain.ranking.scorers import embedding_scorer


def test_bpr_mf_learns_the_training_edges(tiny_dataset):
    users, items = tiny_dataset.split_edges("train", "movies")
    n_items = tiny_dataset.num_items("movies")
    u, i, b = bpr_mf(users, items, tiny_dataset.num_users, n_items, MFConfig(dim=16, epochs=15, learning_rate=0.02, weight_decay=0.0))
    scores = u @ i.T + b.T
    pos = scores[users, items]
    rand = scores[users, np.random.default_rng(0).integers(0, n_items, len(users))]
    assert (pos > rand).mean() > 0.8


def test_emcdr_maps_cold_users_from_their_source_factors(tiny_dataset):
    cases = SampledCases.of(tiny_dataset, "movies", "test", num_negatives=50, seed=0)
    _, cold = warm_and_cold_users(tiny_dataset, "movies")
    assert len(cold), "the tiny dataset has cold-start users"
    users, items = emcdr(tiny_dataset, "books", "movies", MFConfig(dim=16, epochs=15, learning_rate=0.02))
    assert users.shape[1] == items.shape[1] == 17  # factors + the bias column
    cold_cases = cases.subset(np.isin(cases.users, cold))
    hr = cold_cases.metrics(embedding_scorer(users, items), ks=(10,))["hr@10"]
    # A random ranking of 1 positive among 51 items hits the top 10 with p = 10/51.
    assert hr > 10 / 51 + 0.1
