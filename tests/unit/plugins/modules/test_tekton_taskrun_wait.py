"""tekton_taskrun_wait run as Ansible runs it (arguments in, JSON out) against the scripted fake client."""

from __future__ import annotations

import copy
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.knlab.serverless.plugins.module_utils import _tekton as tekton
from ansible_collections.knlab.serverless.plugins.modules import tekton_taskrun_wait
from fakes import FakeClock, FakeKubeClient, event

NAME, NS, POD = "build-hello-x7k2p", "default", "build-hello-x7k2p-pod"
DIGEST = "sha256:" + "5b" * 32


@pytest.fixture
def cluster(monkeypatch):
    client = FakeKubeClient()
    monkeypatch.setattr(tekton_taskrun_wait, "get_client", lambda module: client)
    # The waiter's pauses advance a fake clock, so timeouts are reached without sleeping.
    clock = FakeClock()
    real_wait_for = tekton.wait_for
    monkeypatch.setattr(
        tekton, "wait_for", lambda *args, **kwargs: real_wait_for(*args, clock=clock, sleep=clock.sleep, **kwargs)
    )
    return client


def run_module(capsys, *, check_mode: bool = False, **args) -> dict:
    args.setdefault("name", NAME)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        tekton_taskrun_wait.main()
    return json.loads(capsys.readouterr().out)


def running_run() -> dict:
    return {
        "apiVersion": tekton.API_VERSION,
        "kind": tekton.KIND,
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"taskRef": {"name": "kaniko", "kind": "Task"}},
        "status": {
            "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "Not all Steps"}],
            "podName": POD,
            "startTime": "2026-08-01T10:00:00Z",
            "steps": [{"name": "build-and-push", "container": "step-build-and-push", "running": {"startedAt": "x"}}],
        },
    }


def finished(run: dict, status: str, reason: str, message: str, steps: list[dict], *, results=None) -> dict:
    done = copy.deepcopy(run)
    done["metadata"]["resourceVersion"] = "900"
    done["status"].update(
        conditions=[{"type": "Succeeded", "status": status, "reason": reason, "message": message}],
        completionTime="2026-08-01T10:01:05Z",
        steps=steps,
        results=results or [],
    )
    return done


def step(name: str, exit_code: int, termination: str) -> dict:
    return {
        "name": name,
        "container": f"step-{name}",
        "terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"},
        "terminationReason": termination,
    }


def test_waits_for_success_and_returns_results(cluster, capsys):
    run = cluster.put(running_run())
    done = finished(
        run,
        "True",
        "Succeeded",
        "All Steps have completed executing",
        [step("build-and-push", 0, "Completed"), step("write-url", 0, "Completed")],
        results=[
            {"name": "IMAGE_DIGEST", "type": "string", "value": DIGEST},
            {"name": "IMAGE_URL", "type": "string", "value": "hub.default.svc.cluster.local/demo/hello:latest"},
        ],
    )
    cluster.watch_script = [[event("MODIFIED", run), event("MODIFIED", done)]]
    result = run_module(capsys)
    assert result["changed"] is False
    assert result["succeeded"] is True
    assert result["reason"] == "Succeeded"
    assert result["task_results"] == {
        "IMAGE_DIGEST": DIGEST,
        "IMAGE_URL": "hub.default.svc.cluster.local/demo/hello:latest",
    }
    assert [s["name"] for s in result["steps"]] == ["build-and-push", "write-url"]
    assert (result["pod_name"], result["duration"]) == (POD, 65.0)
    assert (result["start_time"], result["completion_time"]) == ("2026-08-01T10:00:00Z", "2026-08-01T10:01:05Z")
    assert cluster.writes == []


def test_fails_fast_with_step_exit_code_and_log(cluster, capsys):
    run = cluster.put(running_run())
    cluster.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": POD, "namespace": NS},
            "logs": {"step-build-and-push": "\n".join(f"line {i}" for i in range(1, 31)) + "\n"},
        }
    )
    failed = finished(
        run,
        "False",
        "StepFailed",
        '"step-build-and-push" exited with code 1',
        [step("build-and-push", 1, "Error"), step("write-url", 1, "Skipped")],
    )
    # More events follow the failure; the wait must not read them.
    cluster.watch_script = [[event("MODIFIED", failed), event("MODIFIED", run)]]
    result = run_module(capsys, log_lines=5)
    assert result["failed"] is True
    assert "\n" not in result["msg"]
    assert result["msg"].startswith(f"TaskRun {NS}/{NAME} failed: StepFailed")
    assert "'build-and-push'" in result["msg"] and "exit code 1" in result["msg"]
    assert result["msg"].endswith("; last log line: line 30 (log_tail has the last 5)")
    assert result["log_tail"] == [f"line {n}" for n in range(26, 31)]
    assert (result["failed_step"], result["exit_code"]) == ("build-and-push", 1)
    assert result["log_tail"] == ["line 26", "line 27", "line 28", "line 29", "line 30"]
    assert result["reason"] == "StepFailed"


def test_a_cancelled_run_without_its_pod_says_the_log_is_gone(cluster, capsys):
    run = cluster.put(running_run())
    cancelling = copy.deepcopy(run)
    cancelling["status"]["conditions"][0].update(reason="TaskRunCancelled", message="cancel requested")
    cancelled = finished(
        run,
        "False",
        "TaskRunCancelled",
        f'TaskRun "{NAME}" was cancelled. TaskRun cancelled as pipeline has been cancelled.',
        [step("build-and-push", 1, "TaskRunCancelled")],
    )
    cluster.watch_script = [[event("MODIFIED", cancelling)], [event("MODIFIED", cancelled)]]
    result = run_module(capsys)
    assert result["failed"] is True
    assert "TaskRunCancelled" in result["msg"]
    assert f"pod {POD} is gone" in result["msg"]
    assert "stopped by Tekton: the run was cancelled" in result["msg"]
    assert result["exit_code"] is None
    assert result["log_tail"] == []


def test_timeout_carries_the_last_condition(cluster, capsys):
    cluster.put(running_run())
    result = run_module(capsys, timeout=30)
    assert result["failed"] is True
    assert "Timed out after 30s" in result["msg"]
    assert "Succeeded=Unknown (Running: Not all Steps)" in result["msg"]
    assert "step 'build-and-push' is running" in result["msg"]


def test_check_mode_waits_like_a_normal_run(cluster, capsys):
    run = cluster.put(running_run())
    cluster.watch_script = [[event("MODIFIED", finished(run, "True", "Succeeded", "", []))]]
    result = run_module(capsys, check_mode=True)
    assert (result["changed"], result["succeeded"]) == (False, True)


def test_missing_run(cluster, capsys):
    result = run_module(capsys)
    assert result["failed"] is True
    assert result["msg"] == f"TaskRun {NS}/{NAME} not found"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "Bad_Name"}, "not a valid TaskRun name"),
        ({"namespace": "a.b"}, "namespace"),
        ({"timeout": -1}, "timeout must be between 0 and 86400"),
        ({"timeout": 0}, "timeout must be greater than 0"),
        ({"timeout": "soon"}, "timeout"),
        ({"log_lines": -2}, "log_lines must be between 0 and 10000"),
        ({"name": None}, "name"),
        ({"color": "red"}, "color"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_no_request(cluster, capsys, args, message):
    result = run_module(capsys, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert "\n" not in result["msg"]
    assert cluster.requests == []


def test_argument_spec_matches_the_documentation():
    import yaml

    documented = yaml.safe_load(tekton_taskrun_wait.DOCUMENTATION)["options"]
    assert set(documented) == set(tekton_taskrun_wait.OPTIONS)
    for name, spec in tekton_taskrun_wait.OPTIONS.items():
        assert documented[name]["type"] == spec["type"], name
        assert documented[name].get("default") == spec.get("default"), name
        assert bool(documented[name].get("required")) == bool(spec.get("required")), name
