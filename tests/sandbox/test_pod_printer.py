"""The STATUS column of `kubectl get pods` follows kubectl's own pod printer."""

from __future__ import annotations

import pytest
from knlab_sandbox.kinds import _pod_status


def pod(phase: str, *states: dict, ready: bool = False, deleting: bool = False, conditions=()) -> dict:
    meta = {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {"name": "p"}
    return {
        "metadata": meta,
        "status": {
            "phase": phase,
            "conditions": list(conditions),
            "containerStatuses": [{"name": f"c{i}", "ready": ready, "state": s} for i, s in enumerate(states)],
        },
    }


COMPLETED = {"terminated": {"reason": "Completed", "exitCode": 0}}
ERROR = {"terminated": {"reason": "Error", "exitCode": 1}}
RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
READY = {"type": "Ready", "status": "True"}


@pytest.mark.parametrize(
    ("obj", "shown"),
    [
        (pod("Succeeded", COMPLETED), "Completed"),  # a finished TaskRun pod, as kubectl shows it
        (pod("Failed", COMPLETED, ERROR), "Completed"),  # the first container's reason wins
        (pod("Failed", ERROR), "Error"),
        (pod("Running", RUNNING, ready=True, conditions=[READY]), "Running"),
        (pod("Pending", {"waiting": {"reason": "ImagePullBackOff"}}), "ImagePullBackOff"),
        (pod("Failed", {"terminated": {"exitCode": 137, "signal": 9}}), "Signal:9"),
        (pod("Running", RUNNING, ready=True, deleting=True), "Terminating"),
        (pod("Pending"), "Pending"),
    ],
)
def test_status_column(obj, shown):
    assert _pod_status(obj) == shown


def test_a_completed_sidecar_next_to_a_running_container_shows_running_or_not_ready():
    mixed = pod("Running", COMPLETED, RUNNING, ready=True)
    assert _pod_status(mixed) == "NotReady"
    mixed["status"]["conditions"] = [READY]
    assert _pod_status(mixed) == "Running"
