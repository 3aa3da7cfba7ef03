"""A Revision's pod deleted by hand (`kubectl delete pod`, issue 8 item 15): its ReplicaSet puts a
new pod in its place, and the app answers from it. Uses the demo's app (files run in name order)."""

from __future__ import annotations

import time

NAMESPACE = "default"
SELECTOR = "serving.knative.dev/service=hello"


def _ready_pods(target) -> list[str]:
    pods = target.json("get", "pods", "-n", NAMESPACE, "-l", SELECTOR)["items"]
    return sorted(
        pod["metadata"]["name"]
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
        and pod.get("status", {}).get("phase") == "Running"
        and all(c.get("ready") for c in pod["status"].get("containerStatuses", []))
    )


def _wait(predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    return predicate()


def test_deleted_pod_is_replaced(target, observe) -> None:
    url = target.json("get", "ksvc", "hello", "-n", NAMESPACE)["status"]["url"]
    target.http_get(url)  # wakes the app if it scaled to zero
    before = _wait(lambda: _ready_pods(target))
    assert before, f"the demo app has no ready pod on {target.name}"
    target.kubectl("delete", "pod", before[0], "-n", NAMESPACE, "--wait=false")
    after = _wait(lambda: [name for name in _ready_pods(target) if name not in before])
    observe("replaced_by_a_new_pod", bool(after))
    observe("answer_after", target.http_get(url).strip().splitlines())
    observe("old_pod_gone", bool(_wait(lambda: before[0] not in _ready_pods(target), timeout=60)))
