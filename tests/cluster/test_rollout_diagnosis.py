"""Pod problems that may pass are named in the failure or timeout of a rollout (issue 9 item 2).

A final pod problem (missing image, crash loop, wrong port) ends the wait at once; that is
tests/conformance/test_fail_fast.py, on both targets. An unschedulable pod is not final (a node
may come), so the wait goes on; whatever ends it, Knative's ResourcesAvailable=False or the
timeout, must carry the scheduler's words. The sandbox has no scheduler, so this runs only here.
"""

from __future__ import annotations

import pytest
from conftest import Cluster

pytestmark = pytest.mark.timeout(600)

NAMESPACE = "knlab-rollouts"


@pytest.fixture(autouse=True, scope="module")
def namespace(cluster: Cluster):
    with cluster.own_namespace(NAMESPACE):
        yield


def test_an_unschedulable_pod_is_named_with_the_schedulers_reason(cluster: Cluster) -> None:
    # Never started: any image the cluster's mirror serves will do.
    image = cluster.base_image
    result = cluster.module(
        "knative_service",
        name="too-big",
        namespace=NAMESPACE,
        image=image,
        resources={"requests": {"cpu": "64"}},  # the node has 2 cores
        wait_timeout=45,
    )
    assert result["failed"] is True
    diagnosis = result["diagnosis"]
    assert diagnosis["reason"] == "Unschedulable", result
    assert diagnosis["final"] is False
    assert "Insufficient cpu" in diagnosis["message"]
    assert "Insufficient cpu" in result["msg"], result["msg"]
    assert "\n" not in result["msg"]
    cluster.module("knative_service", name="too-big", namespace=NAMESPACE, state="absent")
