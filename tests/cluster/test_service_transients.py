"""A crashing Service, then its fix: the fix must not fail on the crash Knative still reports.

Issue 8 item 7: upstream propagates the Route's status whenever the Route's generation is observed,
and a template change does not bump it, so the first status at the new generation can still say
Ready=False. knative_service waits for a False to last wait_window seconds (kn's --wait-window).
"""

from __future__ import annotations

import pytest
from conftest import Cluster

pytestmark = pytest.mark.timeout(900)

NAME = "flaky"
NAMESPACE = "knlab-transients"


@pytest.fixture(autouse=True, scope="module")
def namespace(cluster: Cluster):
    with cluster.own_namespace(NAMESPACE):
        yield


def _service(cluster: Cluster, command: list[str], **extra) -> dict:
    return cluster.module(
        "knative_service",
        name=NAME,
        namespace=NAMESPACE,
        image=cluster.base_image,
        command=command,
        port=8080,
        wait_timeout=300,
        **extra,
    )


def test_a_crash_then_a_fix_succeeds(cluster: Cluster) -> None:
    cluster.module("knative_service", name=NAME, namespace=NAMESPACE, state="absent")
    try:
        # A crash alone leaves Ready=Unknown until the progress deadline (what the real cluster
        # showed: RevisionMissing for 300 s); a short deadline makes the failure final.
        crashed = _service(
            cluster,
            ["python3", "-c", "import sys; sys.exit(3)"],
            annotations={"serving.knative.dev/progress-deadline": "30s"},
        )
        assert crashed["failed"] is True, crashed
        assert "is not ready" in crashed["msg"], crashed["msg"]

        fixed = _service(
            cluster,
            ["python3", "-m", "http.server", "8080"],
            annotations={"serving.knative.dev/progress-deadline": "120s"},
        )
        assert fixed.get("failed") is not True, fixed["msg"]
        assert fixed["latest_ready_revision"] == f"{NAME}-00002"
        assert fixed["url"]
    finally:
        gone = cluster.module("knative_service", name=NAME, namespace=NAMESPACE, state="absent")
        assert gone.get("failed") is not True, gone


def test_a_visibility_change_returns_the_new_url(cluster: Cluster) -> None:
    # Issue 8 item 9: toggling cluster_local changes a label only; the Route switches the URL later.
    name = "seen"
    try:
        command = ["python3", "-m", "http.server", "8080"]
        base = {"name": name, "namespace": NAMESPACE, "image": cluster.base_image, "command": command, "port": 8080}
        public = cluster.module("knative_service", **base)
        assert public.get("failed") is not True, public["msg"]
        assert ".svc." not in public["url"]
        local = cluster.module("knative_service", **base, cluster_local=True)
        assert local.get("failed") is not True, local["msg"]
        assert local["url"] == f"http://{name}.{NAMESPACE}.svc.cluster.local"
        back = cluster.module("knative_service", **base, cluster_local=False)
        assert back["url"] == public["url"]
    finally:
        cluster.module("knative_service", name=name, namespace=NAMESPACE, state="absent")
