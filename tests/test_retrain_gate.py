"""The promotion gate of `graphtrain retrain` (graphtrain.retrain.decide)."""

from graphtrain.retrain import decide


def _report(warm, cold=None):
    groups = {"warm": {"ndcg@10": warm}}
    if cold is not None:
        groups["cold"] = {"ndcg@10": cold}
    return {"models": {"graphtrain": groups}}


def test_first_version_is_accepted():
    assert decide(_report(0.1, 0.1), None, 0.02)["accepted"]


def test_within_tolerance_is_accepted_and_worse_is_rejected_naming_the_group():
    assert decide(_report(0.199, 0.30), _report(0.20, 0.30), 0.02)["accepted"]
    gate = decide(_report(0.25, 0.10), _report(0.20, 0.30), 0.02)
    assert not gate["accepted"]
    assert gate["reason"].startswith("cold ndcg@10 0.1000 < 0.98 x 0.3000")
    assert gate["candidate"] == {"warm": 0.25, "cold": 0.10}


def test_a_candidate_without_a_group_the_current_has_is_rejected():
    gate = decide(_report(0.3), _report(0.2, 0.1), 0.0)
    assert not gate["accepted"] and "no cold test users" in gate["reason"]
