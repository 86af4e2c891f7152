"""Early stopping and the learning-rate schedule."""

import math

import pytest

from graphtrain.errors import ConfigError
from graphtrain.graph.build import train_graph
from graphtrain.graph.sampling import LocalGraphSource
from graphtrain.train.loop import train_worker
from tests.train.configs import tiny_train_config
from graphtrain.train.validation import METRIC, best_epoch, learning_rate_at, should_stop


_config = tiny_train_config


def _history(scores):
    return [{"epoch": e, METRIC: s} for e, s in enumerate(scores)]


def test_best_epoch_and_patience():
    assert best_epoch([{"epoch": 0}]) is None
    assert best_epoch(_history([0.1, 0.3, 0.3, 0.2])) == 1  # earliest of the ties
    assert not should_stop(_history([0.1, 0.3, 0.2]), patience=2)
    assert should_stop(_history([0.1, 0.3, 0.2, 0.25]), patience=2)
    assert not should_stop(_history([0.3, 0.2, 0.1]), patience=0)  # 0 = off


def test_cosine_schedule_decays_from_the_configured_rate():
    config = _config(epochs=4, learning_rate=0.01)
    rates = [learning_rate_at(config, e) for e in range(4)]
    assert rates[0] == pytest.approx(0.01)
    assert rates == sorted(rates, reverse=True) and rates[-1] > 0
    assert rates[2] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert learning_rate_at(_config(lr_schedule="constant"), 2) == pytest.approx(0.02)


def test_bad_training_options_name_the_field():
    for field, value in (("lr_schedule", "step"), ("patience", -1), ("negatives", "hard")):
        with pytest.raises(ConfigError, match=field):
            _config(**{field: value})


def test_every_epoch_is_validated_and_training_stops_after_patience(tiny_dataset):
    source = LocalGraphSource(train_graph(tiny_dataset))
    history = train_worker(_config(epochs=40, patience=1, learning_rate=0.05, lr_schedule="constant"), tiny_dataset, source)
    assert all(METRIC in m and 0.0 <= m[METRIC] <= 1.0 for m in history)
    assert len(history) < 40, "a run of 40 epochs at a high constant rate should stop early on this tiny graph"
    assert history[-1]["epoch"] - best_epoch(history) == 1
    assert history[-1]["stopped"] == "early_stopping" and all("stopped" not in m for m in history[:-1])


def test_stop_reasons():
    from graphtrain.train.validation import stop_reason

    config = _config(epochs=4, patience=2, time_budget_s=100.0)
    assert stop_reason(_history([0.1, 0.2]), config, 10.0, 2) is None
    assert stop_reason(_history([0.1, 0.2, 0.3, 0.4]), config, 10.0, 4) == "epochs"
    assert stop_reason(_history([0.3, 0.2, 0.1]), config, 10.0, 3) == "early_stopping"
    assert stop_reason(_history([0.1, 0.2]), config, 60.0, 2) is None  # a third epoch would end at 90 s: fine
    assert stop_reason(_history([0.1, 0.2]), config, 70.0, 2) == "time_budget"  # ... at 105 s: past the budget
    with pytest.raises(ConfigError, match="time_budget_s"):
        _config(time_budget_s=0)


def test_a_time_budget_ends_training_and_says_so(tiny_dataset):
    source = LocalGraphSource(train_graph(tiny_dataset))
    history = train_worker(_config(epochs=20, patience=0, time_budget_s=0.001), tiny_dataset, source)
    assert len(history) == 1 and history[-1]["stopped"] == "time_budget"
