"""What a rollout wait reads from pods: final findings end it at once, others only explain it."""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils._knative import RolloutProbe, run_service
from ansible_collections.knlab.serverless.plugins.module_utils._pods import pod_finding
from ansible_collections.knlab.serverless.plugins.module_utils._waiter import Verdict, WaitFailed, wait_for
from ansible_collections.knlab.serverless.plugins.modules.knative_service import OPTIONS
from fakes import FakeClock, FakeKubeClient

IMAGE = "hub.default.svc.cluster.local/hello@sha256:" + "0" * 64
MISSING = f'failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": {IMAGE}: not found'


def pod(*statuses: dict, ready: str = "False", scheduled: dict | None = None, name: str = "hello-00001-deployment-x"):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"serving.knative.dev/revision": "hello-00001"}},
        "spec": {
            "containers": [
                {"name": "user-container", "image": IMAGE, "ports": [{"containerPort": 8080}]},
                {"name": "queue-proxy", "image": "queue"},
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "hub-data"}}],
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": ready},
                scheduled or {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": list(statuses),
        },
    }


def waiting(reason: str, message: str = "", restarts: int = 0, exit_code: int | None = None) -> dict:
    status = {
        "name": "user-container",
        "image": IMAGE,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    if exit_code is not None:
        status["lastState"] = {"terminated": {"exitCode": exit_code}}
    return status


def running(name: str = "user-container", ready: bool = True) -> dict:
    return {"name": name, "image": IMAGE, "ready": ready, "restartCount": 0, "state": {"running": {}}}


@pytest.mark.parametrize(
    ("reason", "message", "final"),
    [
        ("ErrImagePull", MISSING, True),
        ("ImagePullBackOff", f'Back-off pulling image "{IMAGE}": ErrImagePull: {MISSING}', True),
        ("ErrImagePull", "failed to authorize: 401 Unauthorized", True),
        ("InvalidImageName", 'Failed to apply default image tag "Bad": invalid reference format', True),
        # The registry may be starting (the hub's own pod after a restart): keep waiting.
        ("ErrImagePull", "dial tcp 10.0.0.1:80: connect: connection refused", False),
        ("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"', False),
    ],
)
def test_an_image_pull_is_final_only_when_the_registry_answered(reason, message, final):
    finding = pod_finding(pod(waiting(reason, message)), 0, 20)
    assert (finding.reason, finding.final) == (reason, final)
    assert IMAGE in finding.message and finding.container == "user-container"
    assert message.split(": ")[-1] in finding.message


def test_a_crash_is_final_once_it_repeated_after_a_restart():
    first = pod_finding(pod(waiting("CrashLoopBackOff", "back-off 10s", restarts=0, exit_code=3)), 0, 20)
    assert (first.reason, first.final) == ("CrashLoopBackOff", False)
    again = pod_finding(pod(waiting("CrashLoopBackOff", "back-off 20s", restarts=1, exit_code=3)), 0, 20)
    assert (again.final, again.exit_code, again.previous_log) == (True, 3, True)
    assert "exited with code 3 and was restarted once" in again.message


def test_a_container_that_runs_but_does_not_listen_is_final_after_the_listen_timeout():
    unready = pod(running(), running("queue-proxy", ready=False))
    assert pod_finding(unready, 19.9, 20) is None
    finding = pod_finding(unready, 20, 20)
    assert (finding.reason, finding.final) == ("NotListening", True)
    assert "port 8080" in finding.message and "wait_listen_timeout" in finding.message
    assert pod_finding(unready, 1000, 0) is None  # 0: leave it to Knative's progress deadline
    assert pod_finding(pod(running(), running("queue-proxy"), ready="True"), 1000, 20) is None


def test_unschedulable_pods_and_config_errors_are_reported_but_not_final():
    unscheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}
    finding = pod_finding(pod(scheduled=unscheduled), 0, 20)
    assert (finding.reason, finding.final) == ("Unschedulable", False)
    config = pod_finding(pod(waiting("CreateContainerConfigError", 'secret "creds" not found')), 0, 20)
    assert (config.reason, config.final) == ("CreateContainerConfigError", False)
    assert 'secret "creds" not found' in config.message


def _service(client: FakeKubeClient, ready: str = "Unknown") -> dict:
    return client.put(
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "hello", "namespace": "default", "generation": 1},
            "status": {
                "observedGeneration": 1,
                "latestCreatedRevisionName": "hello-00001",
                "conditions": [{"type": "Ready", "status": ready, "reason": "Deploying"}],
            },
        }
    )


def test_the_probe_reads_the_newest_revisions_pods_and_the_crashed_runs_log():
    client = FakeKubeClient()
    service = _service(client)
    crashed = pod(waiting("CrashLoopBackOff", "back-off 20s", restarts=1, exit_code=3))
    crashed["logs"] = {"user-container": "starting\nTraceback (most recent call last):\nSystemExit: 3\n"}
    client.put(crashed)
    verdict = RolloutProbe(client, "default", 20)(service)
    assert verdict.failed and verdict.reason == "CrashLoopBackOff"
    assert verdict.message.startswith("revision hello-00001, pod hello-00001-deployment-x: container user-container")
    assert verdict.message.endswith("last log line: SystemExit: 3")
    logs = [details for method, details in client.requests if method == "pod_log"]
    assert logs == [
        {
            "name": "hello-00001-deployment-x",
            "namespace": "default",
            "container": "user-container",
            "tail_lines": 10,
            "previous": True,
            "dry_run": False,
        }
    ]


def test_the_probe_names_a_pending_claim_behind_an_unschedulable_pod():
    client = FakeKubeClient()
    service = _service(client)
    unscheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "unbound claims"}
    client.put(pod(scheduled=unscheduled))
    client.put(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "hub-data", "namespace": "default"},
            "spec": {"storageClassName": "slow"},
            "status": {"phase": "Pending"},
        }
    )
    probe = RolloutProbe(client, "default", 20)
    verdict = probe(service)
    assert (verdict.failed, verdict.reason) == (False, "ClaimPending")
    assert "PersistentVolumeClaim hub-data, which is Pending (storage class slow)" in verdict.message
    assert "pod is not scheduled (Unschedulable: unbound claims)" in verdict.message
    assert probe.result["reason"] == "ClaimPending"


def test_the_probe_waits_for_the_status_of_the_current_spec():
    client = FakeKubeClient()
    service = _service(client)
    service["metadata"]["generation"] = 2  # written, not yet seen by Knative: the old revision's pods
    client.put(pod(waiting("ErrImagePull", MISSING)))
    assert RolloutProbe(client, "default", 20)(service) is None
    assert [request for request in client.requests if request[0] == "list"] == []


def test_a_final_probe_verdict_ends_the_wait_long_before_its_timeout():
    client = FakeKubeClient()
    clock = FakeClock()
    service = _service(client)
    calls = []
    start = clock()

    def probe(obj):
        calls.append(clock())
        return Verdict(False, len(calls) >= 3, "CrashLoopBackOff", "pod p: container c crashed")

    with pytest.raises(WaitFailed) as caught:
        wait_for(
            client,
            "serving.knative.dev/v1",
            "Service",
            "hello",
            "default",
            lambda obj: None,
            300,
            initial=service,
            clock=clock,
            sleep=clock.sleep,
            probe=probe,
            probe_interval=2,
        )
    assert caught.value.reason == "CrashLoopBackOff" and caught.value.diagnosis.failed
    assert len(calls) == 3 and clock() - start < 10
    # Between probes the wait keeps watching, for no longer than the probe interval.
    limits = [details["timeout_seconds"] for method, details in client.requests if method == "watch"]
    assert limits and max(limits) <= 2


def test_a_failed_rollout_reports_the_pods_not_the_whole_object():
    client = FakeKubeClient(watch_store=True)

    def controller(obj):
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "latestCreatedRevisionName": "hello-00001",
            "conditions": [{"type": "Ready", "status": "Unknown", "reason": "Deploying"}],
        }

    client.controller = controller
    client.put(pod(waiting("ErrImagePull", MISSING)))
    params = {
        "name": "hello",
        "namespace": "default",
        "state": "present",
        "image": IMAGE,
        "wait": True,
        "wait_timeout": 300,
        "wait_window": 2,
        "wait_listen_timeout": 20,
    }
    with pytest.raises(Exception) as caught:
        run_service(client, {**_defaults(), **params}, check_mode=False)
    error = caught.value
    assert "cannot pull image" in error.msg and "not found" in error.msg
    assert "\n" not in error.msg
    assert "service" not in error.result
    assert error.result["diagnosis"]["reason"] == "ErrImagePull"
    assert error.result["latest_created_revision"] == "hello-00001"


def _defaults() -> dict:
    return {key: spec.get("default") for key, spec in OPTIONS.items()}


def test_the_probe_ignores_the_revision_named_before_the_change():
    client = FakeKubeClient()
    service = _service(client)  # still names hello-00001, whose pods crash: the fix is on its way
    client.put(pod(waiting("CrashLoopBackOff", "back-off 20s", restarts=1, exit_code=3)))
    assert RolloutProbe(client, "default", 20, stale_revision="hello-00001")(service) is None
    assert RolloutProbe(client, "default", 20)(service).failed


def test_a_failure_the_object_reports_first_still_carries_what_the_pods_show():
    client = FakeKubeClient()
    clock = FakeClock()
    failed = _service(client, ready="False")
    unscheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "Insufficient cpu"}
    client.put(pod(scheduled=unscheduled))

    def check(obj):
        return Verdict(False, True, "Unschedulable", "Knative's words")

    probe = RolloutProbe(client, "default", 20)
    with pytest.raises(WaitFailed) as caught:
        wait_for(
            client,
            "serving.knative.dev/v1",
            "Service",
            "hello",
            "default",
            check,
            60,
            initial=failed,
            clock=clock,
            sleep=clock.sleep,
            probe=probe,
        )
    assert caught.value.diagnosis is not None
    assert "Insufficient cpu" in caught.value.diagnosis.message
    # The pod mounts a claim that does not exist: named, beside the scheduler's words.
    assert probe.result["reason"] == "ClaimPending"
    assert "PersistentVolumeClaim hub-data, which does not exist" in probe.result["message"]
