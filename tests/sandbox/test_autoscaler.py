"""The autoscaler simulation's decisions (autoscaler.py), without processes."""

from __future__ import annotations

from knlab_sandbox.autoscaler import Autoscaler, is_scaled, policy_for, wanted

PREFIX = "autoscaling.knative.dev/"


def annotations(**values: str) -> dict[str, str]:
    return {PREFIX + key.replace("_", "-"): value for key, value in values.items()}


def test_only_revisions_asking_for_more_than_one_instance_are_scaled():
    assert not is_scaled({})
    assert not is_scaled(annotations(min_scale="1", max_scale="1"))
    assert not is_scaled(annotations(min_scale="0"))
    assert is_scaled(annotations(max_scale="2"))
    assert is_scaled(annotations(min_scale="2"))
    assert is_scaled({"autoscaling.knative.dev/maxScale": "3"})


def test_policy_defaults_are_knatives():
    policy = policy_for(annotations(max_scale="5"))
    assert (policy.minimum, policy.maximum, policy.metric) == (1, 5, "concurrency")
    assert (policy.target, policy.utilization, policy.window) == (100.0, 0.7, 60.0)
    rps = policy_for(annotations(max_scale="5", metric="rps"))
    assert (rps.metric, rps.target) == ("rps", 200.0)
    configured = policy_for(
        annotations(max_scale="5"), {"container-concurrency-target-default": "10", "stable-window": "30s"}
    )
    assert (configured.target, configured.window) == (10.0, 30.0)
    # min-scale without max-scale: that many, never more.
    assert (policy_for(annotations(min_scale="3")).minimum, policy_for(annotations(min_scale="3")).maximum) == (3, 3)
    # Unreadable values fall back to the defaults (admission refuses them anyway).
    assert policy_for(annotations(max_scale="2", target="x", window="soon")).target == 100.0


def test_wanted_is_load_over_target_times_utilization_within_bounds():
    policy = policy_for(annotations(min_scale="1", max_scale="4", target="10", target_utilization_percentage="50"))
    assert [wanted(policy, load) for load in (0, 1, 5, 5.01, 10, 15, 100)] == [1, 1, 1, 2, 2, 3, 4]


def test_up_at_once_down_after_the_stable_window():
    scaler = Autoscaler(policy_for(annotations(max_scale="3", target="1", window="6s")))
    assert scaler.desired == 1
    assert scaler.decide(0.0, 0.0) == 1
    assert scaler.decide(1.0, 2.0) == 3  # 2 / 0.7 → 3
    assert scaler.decide(2.0, 0.0) == 3
    assert scaler.decide(6.5, 0.0) == 3  # the peak at t=1 is still in the window
    assert scaler.decide(7.5, 0.6) == 1  # past it: down to what the window wants
    assert scaler.decide(8.0, 1.0) == 2
