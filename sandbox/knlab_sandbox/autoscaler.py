"""A small simulation of Knative's autoscaler (KPA) for revisions that ask for more than one instance.

Only a revision whose ``autoscaling.knative.dev/min-scale`` or ``max-scale`` is above 1 is scaled; any
other runs exactly one process, as before. For a scaled revision the controller runs
``max(1, min-scale)`` instances at once and asks :class:`Autoscaler` every ``TICK`` seconds how many
it wants, from what the gateway measured for the revision (:class:`knlab_sandbox.gateway.Pool`):

* metric ``concurrency`` (the default): the average number of requests in flight over the last tick;
  metric ``rps``: the requests started per second over the last tick.
* wanted = ceil(observed / (target x target-utilization)), bounded by ``[max(1, min-scale), upper]``
  where upper is max-scale, or min-scale when max-scale is unset (0): the sandbox never grows a
  revision that did not name a maximum.
* desired = the largest ``wanted`` of the stable window (``autoscaling.knative.dev/window``, else
  ``stable-window`` of config-autoscaler, default 60s): it rises at once and falls only after the
  load stayed lower for a whole window.

Defaults as Knative's config-autoscaler: target 100 (``container-concurrency-target-default``) or
200 for rps (``requests-per-second-target-default``), utilization 70% (``container-concurrency-
target-percentage``), stable window 60s. Not simulated: the panic window and panic mode, the
activator and target-burst-capacity, scale to zero, initial-scale, scale-down-delay, max-scale-limit
(admission checks it), and containerConcurrency as a hard limit. See sandbox/README.md.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .knative_admission import (
    METRIC_KEYS,
    TARGET_KEYS,
    TARGET_UTILIZATION_KEYS,
    WINDOW_KEYS,
    annotation_lookup,
    parse_go_duration,
    scale_bounds,
)

TICK = 1.0  # seconds between two decisions
DEFAULTS: dict[str, str] = {
    "container-concurrency-target-default": "100",
    "requests-per-second-target-default": "200",
    "container-concurrency-target-percentage": "70",
    "stable-window": "60s",
}


@dataclass(frozen=True)
class ScalePolicy:
    minimum: int  # at least 1: the sandbox never scales to zero
    maximum: int
    metric: str  # "concurrency" or "rps"
    target: float  # per instance
    utilization: float  # 0 < u <= 1
    window: float  # seconds


def is_scaled(annotations: Mapping[str, Any]) -> bool:
    """Whether a revision runs under the simulation (more than one instance possible)."""
    minimum, maximum = scale_bounds(annotations)
    return minimum > 1 or maximum > 1


def _number(text: str | None, fallback: float) -> float:
    try:
        value = float(text) if text is not None else fallback
    except ValueError:
        return fallback
    return value if value > 0 and math.isfinite(value) else fallback


def policy_for(annotations: Mapping[str, Any], config: Mapping[str, str] | None = None) -> ScalePolicy:
    """The revision's policy from its annotations and config-autoscaler (``config``), Knative's defaults else."""
    settings = {**DEFAULTS, **(config or {})}
    minimum, maximum = scale_bounds(annotations)
    lower = max(1, minimum)
    upper = max(lower, maximum if maximum > 0 else lower)
    found = annotation_lookup(annotations, METRIC_KEYS)
    metric = "rps" if found and found[1] == "rps" else "concurrency"
    default_target = _number(
        settings["requests-per-second-target-default" if metric == "rps" else "container-concurrency-target-default"],
        200.0 if metric == "rps" else 100.0,
    )
    found = annotation_lookup(annotations, TARGET_KEYS)
    target = _number(found[1] if found else None, default_target)
    found = annotation_lookup(annotations, TARGET_UTILIZATION_KEYS)
    percent = _number(found[1] if found else settings["container-concurrency-target-percentage"], 70.0)
    found = annotation_lookup(annotations, WINDOW_KEYS)
    window = 60.0
    for text in (found[1] if found else None, settings["stable-window"]):
        if text:
            try:
                window = parse_go_duration(text)
                break
            except ValueError:
                continue
    return ScalePolicy(lower, upper, metric, target, min(percent, 100.0) / 100.0, window)


def wanted(policy: ScalePolicy, observed: float) -> int:
    """Instances for one observation, bounded by the policy."""
    raw = math.ceil(observed / (policy.target * policy.utilization) - 1e-9) if observed > 0 else 0
    return min(policy.maximum, max(policy.minimum, raw))


class Autoscaler:
    """Decisions for one revision: ``decide(now, observed)`` → desired instances."""

    def __init__(self, policy: ScalePolicy):
        self.policy = policy
        self.history: deque[tuple[float, int]] = deque()
        self.desired = policy.minimum

    def decide(self, now: float, observed: float) -> int:
        self.history.append((now, wanted(self.policy, observed)))
        while self.history and self.history[0][0] < now - self.policy.window:
            self.history.popleft()
        self.desired = max(count for _, count in self.history)
        return self.desired
