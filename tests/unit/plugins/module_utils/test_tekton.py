"""TaskRun logic: validation, the body, status interpretation (FACTS §2.5), steps, results, reuse."""

from __future__ import annotations

import copy
import re

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils import _tekton as tekton
from ansible_collections.knlab.serverless.plugins.module_utils._errors import (
    ApiError,
    DryRunUnsupported,
    ServerlessError,
)
from fakes import FakeClock, FakeKubeClient, event

NS = "builds"
KEY = "sha256:" + "ab" * 32  # a source digest: not a valid label value (':' and 71 characters)


def taskrun(
    name: str = "build-1",
    status: str | None = None,
    reason: str | None = None,
    message: str = "",
    *,
    key: str | None = None,
    created: str = "2026-08-01T10:00:00Z",
    spec_status: str | None = None,
    steps: list[dict] | None = None,
    results: list[dict] | None = None,
    pod: str | None = None,
) -> dict:
    obj: dict = {
        "apiVersion": tekton.API_VERSION,
        "kind": tekton.KIND,
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
        "spec": {"taskRef": {"name": "kaniko", "kind": "Task"}},
        "status": {},
    }
    if key is not None:
        obj["metadata"]["labels"] = {tekton.IDEMPOTENCY_LABEL: tekton.idempotency_label_value(key)}
        obj["metadata"]["annotations"] = {tekton.IDEMPOTENCY_ANNOTATION: key}
    if spec_status:
        obj["spec"]["status"] = spec_status
    if status is not None:
        condition = {"type": "Succeeded", "status": status, "reason": reason, "message": message}
        obj["status"]["conditions"] = [condition]
    if steps is not None:
        obj["status"]["steps"] = steps
    if results is not None:
        obj["status"]["results"] = results
    if pod:
        obj["status"]["podName"] = pod
    return obj


def terminated(name: str, exit_code: int, termination_reason: str | None = None, reason: str = "Error") -> dict:
    step = {
        "name": name,
        "container": f"step-{name}",
        "terminated": {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else reason,
            "startedAt": "2026-08-01T10:00:05Z",
            "finishedAt": "2026-08-01T10:00:09Z",
        },
    }
    if termination_reason:
        step["terminationReason"] = termination_reason
    return step


# ---------------------------------------------------------------------------------------------
# Succeeded condition: every reason of FACTS §2.5

UNKNOWN_REASONS = [
    "Started",
    "Pending",
    "Running",
    "TaskRunPending",
    "ResolvingTaskRef",
    "ResolvingStepActionRef",
    "PullImageFailed",
    "ExceededNodeResources",
    "ExceededResourceQuota",
    "TaskRunCancelled",
]
FALSE_REASONS = [
    "Failed",
    # specific reasons since Tekton v1.12.0
    "StepFailed",
    "StepOOM",
    "SidecarFailed",
    "SidecarOOM",
    "InitContainerFailed",
    "InitContainerOOM",
    "PodEvicted",
    "TaskRunTimeout",
    "TaskRunCancelled",
    "TaskRunImagePullFailed",
    "CreateContainerConfigError",
    "PodCreationFailed",
    "PodAdmissionFailed",
    "TaskRunResolutionFailed",
    "TaskRunValidationFailed",
    "TaskValidationFailed",
    "InvalidParamValue",
    "ResourceVerificationFailed",
    "TaskRunResultLargerThanAllowedLimit",
    "TaskRunStopSidecarFailed",
    "FailureIgnored",
    "ToBeRetried",
    # a reason a future Tekton may add: False is terminal whatever the reason says
    "SomethingNewInV2",
]


@pytest.mark.parametrize("reason", UNKNOWN_REASONS)
def test_unknown_status_keeps_waiting(reason):
    run = taskrun(status="Unknown", reason=reason, message="busy")
    assert tekton.succeeded_check(run) is None
    assert not tekton.outcome(run).finished


@pytest.mark.parametrize("reason", FALSE_REASONS)
def test_every_false_status_is_terminal(reason):
    run = taskrun(status="False", reason=reason, message="why it failed")
    verdict = tekton.succeeded_check(run)
    assert verdict is not None
    assert verdict.failed and not verdict.done
    assert (verdict.reason, verdict.message) == (reason, "why it failed")


def test_true_status_succeeds():
    verdict = tekton.succeeded_check(taskrun(status="True", reason="Succeeded", message="All Steps have completed"))
    assert verdict.done and not verdict.failed
    assert verdict.reason == "Succeeded"


def test_no_condition_keeps_waiting_and_a_deleted_run_ends_the_wait():
    assert tekton.succeeded_check(taskrun()) is None
    verdict = tekton.succeeded_check(None)
    assert verdict.failed and verdict.reason == "Deleted"


def test_other_condition_types_are_ignored():
    run = taskrun()
    run["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "Whatever"}]
    assert tekton.succeeded_check(run) is None
    assert tekton.run_state(run) == tekton.STATE_NEW


@pytest.mark.parametrize("reason", UNKNOWN_REASONS)
def test_run_state_of_unknown_reasons(reason):
    expected = {"TaskRunPending": "pending", "TaskRunCancelled": "cancelling"}.get(reason, "running")
    assert tekton.run_state(taskrun(status="Unknown", reason=reason)) == expected


@pytest.mark.parametrize("reason", FALSE_REASONS)
def test_run_state_of_false_reasons(reason):
    expected = "cancelled" if reason == "TaskRunCancelled" else "failed"
    assert tekton.run_state(taskrun(status="False", reason=reason)) == expected


def test_run_state_of_cancel_requests_and_pending_specs():
    assert tekton.run_state(taskrun(status="Unknown", reason="Running", spec_status="TaskRunCancelled")) == "cancelling"
    assert tekton.run_state(taskrun(spec_status="TaskRunCancelled")) == "cancelling"
    assert tekton.run_state(taskrun(spec_status="TaskRunPending")) == "pending"
    # a cancel that arrived after the end changes nothing about the outcome
    assert tekton.run_state(taskrun(status="True", reason="Succeeded", spec_status="TaskRunCancelled")) == "succeeded"


# ---------------------------------------------------------------------------------------------
# failing step, results, duration


def test_failing_step_is_the_first_non_zero_exit_not_the_skipped_ones():
    run = taskrun(
        status="False",
        reason="Failed",
        steps=[
            terminated("prepare", 0, "Completed"),
            terminated("build-and-push", 1),
            terminated("write-url", 1, "Skipped"),
        ],
    )
    step = tekton.failing_step(run)
    assert (step["name"], step["container"], step["exit_code"]) == ("build-and-push", "step-build-and-push", 1)


def test_failing_step_skips_steps_that_continued_on_error():
    run = taskrun(
        status="False",
        reason="StepFailed",
        steps=[terminated("lint", 2, "Continued"), terminated("build", 137, reason="OOMKilled")],
    )
    step = tekton.failing_step(run)
    assert (step["name"], step["exit_code"], step["reason"]) == ("build", 137, "OOMKilled")


@pytest.mark.parametrize(
    "reason", ["TaskRunTimeout", "TaskRunCancelled", "TaskRunImagePullFailed", "CreateContainerConfigError"]
)
def test_a_step_tekton_stopped_is_not_reported_as_its_own_exit_code(reason):
    # What terminateStepsInPod writes (tektoncd/pipeline v1.15.0): exit code 1, and the run's
    # reason as the container reason and as the step's terminationReason.
    stopped = terminated("build", 1, reason, reason=reason)
    run = taskrun(
        status="False", reason=reason, steps=[terminated("fetch", 0, termination_reason="Completed"), stopped]
    )
    step = tekton.failing_step(run)
    assert (step["name"], step["termination_reason"], step["exit_code"], step["stopped_by"]) == (
        "build",
        reason,
        None,
        reason,
    )


def test_failing_step_waiting_on_an_image_pull():
    run = taskrun(
        status="False",
        reason="TaskRunImagePullFailed",
        steps=[
            {"name": "build", "container": "step-build", "waiting": {"reason": "ImagePullBackOff", "message": "x"}},
            {"name": "push", "container": "step-push", "waiting": {"reason": "PodInitializing"}},
        ],
    )
    step = tekton.failing_step(run)
    assert (step["name"], step["state"], step["reason"], step["exit_code"]) == (
        "build",
        "waiting",
        "ImagePullBackOff",
        None,
    )


def test_failing_step_from_the_condition_message_when_steps_are_missing():
    run = taskrun(status="False", reason="Failed", message='"step-build" exited with code 3: Error')
    step = tekton.failing_step(run)
    assert (step["name"], step["container"], step["exit_code"]) == ("build", "step-build", 3)


def test_no_failing_step_when_no_step_is_to_blame():
    assert tekton.failing_step(taskrun(status="False", reason="TaskRunResolutionFailed", message="no Task")) is None
    ok = taskrun(status="True", reason="Succeeded", steps=[terminated("a", 0, "Completed")])
    assert tekton.failing_step(ok) is None


def test_results_by_name_keep_their_types():
    run = taskrun(
        status="True",
        reason="Succeeded",
        results=[
            {"name": "IMAGE_DIGEST", "type": "string", "value": "sha256:" + "0" * 64},
            {"name": "IMAGE_URL", "type": "string", "value": "hub.default.svc.cluster.local/hello:latest"},
            {"name": "TAGS", "type": "array", "value": ["a", "b"]},
            {"name": "META", "type": "object", "value": {"k": "v"}},
            {"type": "string", "value": "nameless entries are dropped"},
        ],
    )
    assert tekton.results(run) == {
        "IMAGE_DIGEST": "sha256:" + "0" * 64,
        "IMAGE_URL": "hub.default.svc.cluster.local/hello:latest",
        "TAGS": ["a", "b"],
        "META": {"k": "v"},
    }
    assert tekton.results(taskrun()) == {}


def test_duration_from_start_and_completion_time():
    run = taskrun(status="True", reason="Succeeded")
    assert tekton.duration_seconds(run) is None
    run["status"].update(startTime="2026-08-01T10:00:00Z", completionTime="2026-08-01T10:01:30Z")
    assert tekton.duration_seconds(run) == 90.0


def test_steps_summary():
    run = taskrun(steps=[terminated("a", 0, "Completed"), {"name": "b", "running": {"startedAt": "t"}}, {"name": "c"}])
    assert [(s["name"], s["container"], s["state"], s["exit_code"]) for s in tekton.steps(run)] == [
        ("a", "step-a", "terminated", 0),
        ("b", "step-b", "running", None),
        ("c", "step-c", "unknown", None),
    ]


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("0s", 0),
        ("-0", 0),
        ("90s", 90),
        ("10m", 600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2h45m10.5s", 9910.5),
        ("300ms", 0.3),
        ("1\u00b5s", 1e-6),
        (".5s", 0.5),
        ("+1m", 60),
    ],
)
def test_go_durations(text, seconds):
    assert tekton.go_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "abc", "h", "1 h", "1e3s", "1h-30m", "5 minutes", "1.s.5"])
def test_bad_go_durations(text):
    with pytest.raises(ServerlessError, match="is not a Go duration"):
        tekton.go_duration_seconds(text)


@pytest.mark.parametrize("text", ["-1s", "-1h30m"])
def test_negative_go_durations(text):
    with pytest.raises(ServerlessError, match="is negative"):
        tekton.go_duration_seconds(text)


def test_too_long_go_duration():
    with pytest.raises(ServerlessError, match="longer than"):
        tekton.go_duration_seconds("3000000h")


@pytest.mark.parametrize("name", ["", "Build", "a..b", "-x", "x-", "a_b", "a" * 64, "a\n"])
def test_bad_names(name):
    with pytest.raises(ServerlessError, match="is not a valid TaskRun name"):
        tekton.validate_name(name)


def test_good_names():
    assert tekton.validate_name("build-1") == "build-1"
    assert tekton.validate_name("a" * 63) == "a" * 63
    assert tekton.validate_generate_name("build-") == "build-"


@pytest.mark.parametrize("prefix", ["", "Build-", "-build", "a" * 59, "a..b-", "a\n"])
def test_bad_generate_names(prefix):
    with pytest.raises(ServerlessError, match="generate_name"):
        tekton.validate_generate_name(prefix)


def test_labels_are_validated_and_scalars_become_strings():
    assert tekton.normalize_labels({"app": "hello", "version": 2, "canary": False}) == {
        "app": "hello",
        "version": "2",
        "canary": "false",
    }
    assert tekton.normalize_labels({"example.com/team": "a"}) == {"example.com/team": "a"}
    for bad in ({"app": "has space"}, {"-x": "a"}, {"Bad_Prefix/x": "a"}, {"app": "a" * 64}, {"app": ["a"]}):
        with pytest.raises(ServerlessError):
            tekton.normalize_labels(bad)
    with pytest.raises(ServerlessError, match="idempotency_key sets it"):
        tekton.normalize_labels({tekton.IDEMPOTENCY_LABEL: "x"})


def test_idempotency_label_value():
    assert tekton.idempotency_label_value("src-1234") == "src-1234"
    hashed = tekton.idempotency_label_value(KEY)
    assert len(hashed) == 63
    assert re.fullmatch(r"sha256-[0-9a-f]{56}", hashed)
    assert tekton.is_label_value(hashed)
    assert hashed == tekton.idempotency_label_value(KEY)
    assert hashed != tekton.idempotency_label_value(KEY[:-1] + "c")
    assert tekton.idempotency_label_value("a" * 64).startswith("sha256-")


def test_params_become_tekton_params():
    assert tekton.params_list(
        {"IMAGE": "hub/hello:1", "RETRIES": 3, "PUSH": True, "EXTRA_ARGS": ["--insecure", 1], "META": {"a": 1}}
    ) == [
        {"name": "IMAGE", "value": "hub/hello:1"},
        {"name": "RETRIES", "value": "3"},
        {"name": "PUSH", "value": "true"},
        {"name": "EXTRA_ARGS", "value": ["--insecure", "1"]},
        {"name": "META", "value": {"a": "1"}},
    ]
    with pytest.raises(ServerlessError, match=r"params\.EXTRA_ARGS\[0\] must be a string"):
        tekton.params_list({"EXTRA_ARGS": [["nested"]]})
    with pytest.raises(ServerlessError, match=r"params\.IMAGE has no value"):
        tekton.params_list({"IMAGE": None})


def test_workspaces_need_a_name_and_exactly_one_source():
    good = [{"name": "source", "configMap": {"name": "src"}}, {"name": "cache", "emptyDir": {}}]
    assert tekton.validate_workspaces(good) == good
    bad = [
        ([{"configMap": {"name": "src"}}], "needs a name"),
        ([{"name": "source"}], "exactly one of"),
        ([{"name": "source", "emptyDir": {}, "secret": {"secretName": "s"}}], "exactly one of"),
        ([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}], "bound twice"),
        (["source"], "must be a dict"),
    ]
    for workspaces, message in bad:
        with pytest.raises(ServerlessError, match=message):
            tekton.validate_workspaces(workspaces)


def request_params(**overrides) -> dict:
    params = {
        "namespace": NS,
        "name": None,
        "generate_name": "build-",
        "task_ref": {"name": "kaniko", "kind": None, "resolver": None, "params": None},
        "task_spec": None,
        "params": {"IMAGE": "hub.default.svc.cluster.local/hello:latest"},
        "workspaces": [{"name": "source", "configMap": {"name": "src"}}],
        "service_account": None,
        "timeout": None,
        "labels": None,
        "idempotency_key": None,
    }
    params.update(overrides)
    return params


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task_spec": {"steps": [{"name": "a", "image": "busybox"}]}}, "exactly one of task_ref or task_spec"),
        ({"task_ref": None}, "exactly one of task_ref or task_spec"),
        ({"name": "build-1"}, "exactly one of name or generate_name"),
        ({"generate_name": None}, "exactly one of name or generate_name"),
        ({"name": "Build_1", "generate_name": None}, "not a valid TaskRun name"),
        ({"namespace": "No"}, "namespace"),
        ({"timeout": "10"}, "not a Go duration"),
        ({"timeout": "-5m"}, "negative"),
        ({"task_ref": {"name": None, "kind": None, "resolver": None, "params": None}}, "name or resolver"),
        ({"task_ref": {"name": "a_b", "kind": None, "resolver": None, "params": None}}, "task_ref.name"),
        ({"task_ref": None, "task_spec": {"steps": []}}, "task_spec.steps"),
        ({"service_account": "Bad SA"}, "service_account"),
        ({"idempotency_key": ""}, "must not be empty"),
    ],
)
def test_request_validation(overrides, message):
    with pytest.raises(ServerlessError, match=message) as info:
        tekton.TaskRunRequest.from_params(request_params(**overrides))
    assert "\n" not in info.value.msg


def test_request_body():
    request = tekton.TaskRunRequest.from_params(
        request_params(
            task_ref={"name": "kaniko", "kind": "Task", "resolver": None, "params": None},
            service_account="builder",
            timeout="15m",
            labels={"app": "hello"},
            idempotency_key=KEY,
        )
    )
    assert request.body() == {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {
            "namespace": NS,
            "generateName": "build-",
            "labels": {"app": "hello", tekton.IDEMPOTENCY_LABEL: tekton.idempotency_label_value(KEY)},
            "annotations": {tekton.IDEMPOTENCY_ANNOTATION: KEY},
        },
        "spec": {
            "taskRef": {"name": "kaniko", "kind": "Task"},
            "params": [{"name": "IMAGE", "value": "hub.default.svc.cluster.local/hello:latest"}],
            "workspaces": [{"name": "source", "configMap": {"name": "src"}}],
            "serviceAccountName": "builder",
            "timeout": "15m",
        },
    }


def test_request_body_with_task_spec_and_resolver():
    spec = {"steps": [{"name": "hello", "image": "busybox", "script": "echo hi"}]}
    body = tekton.TaskRunRequest.from_params(request_params(task_ref=None, task_spec=spec, params=None)).body()
    assert body["spec"] == {"taskSpec": spec, "workspaces": [{"name": "source", "configMap": {"name": "src"}}]}
    ref = {"name": None, "kind": None, "resolver": "git", "params": {"url": "https://x", "pathInRepo": "t.yaml"}}
    body = tekton.TaskRunRequest.from_params(request_params(task_ref=ref)).body()
    assert body["spec"]["taskRef"] == {
        "resolver": "git",
        "params": [{"name": "url", "value": "https://x"}, {"name": "pathInRepo", "value": "t.yaml"}],
    }


# ---------------------------------------------------------------------------------------------
# idempotency lookup


def test_reuse_prefers_a_succeeded_run_over_a_newer_running_one():
    runs = [
        taskrun("old-ok", "True", "Succeeded", key=KEY, created="2026-08-01T09:00:00Z"),
        taskrun("newer-running", "Unknown", "Running", key=KEY, created="2026-08-01T11:00:00Z"),
    ]
    assert tekton.reusable_run(runs, KEY)["metadata"]["name"] == "old-ok"


def test_reuse_takes_the_newest_of_equals_and_never_a_failed_or_cancelled_run():
    runs = [
        taskrun("failed", "False", "StepFailed", key=KEY, created="2026-08-01T12:00:00Z"),
        taskrun("cancelled", "False", "TaskRunCancelled", key=KEY, created="2026-08-01T12:00:00Z"),
        taskrun("cancelling", "Unknown", "Running", key=KEY, spec_status="TaskRunCancelled"),
        taskrun("running-1", "Unknown", "Running", key=KEY, created="2026-08-01T10:00:00Z"),
        taskrun("running-2", "Unknown", "Pending", key=KEY, created="2026-08-01T10:30:00Z"),
    ]
    assert tekton.reusable_run(runs, KEY)["metadata"]["name"] == "running-2"
    assert tekton.reusable_run(runs[:3], KEY) is None


def test_reuse_ignores_other_keys_and_deleted_runs():
    other = taskrun("other", "True", "Succeeded", key=KEY)
    other["metadata"]["annotations"][tekton.IDEMPOTENCY_ANNOTATION] = "another key with the same label"
    deleting = taskrun("deleting", "True", "Succeeded", key=KEY)
    deleting["metadata"]["deletionTimestamp"] = "2026-08-01T12:00:00Z"
    unlabelled = taskrun("plain", "True", "Succeeded")
    assert tekton.reusable_run([other, deleting, unlabelled], KEY) is None


# ---------------------------------------------------------------------------------------------
# operations against the fake client


def keyed_request(**overrides) -> tekton.TaskRunRequest:
    return tekton.TaskRunRequest.from_params(request_params(idempotency_key=KEY, **overrides))


@pytest.mark.parametrize(("status", "reason"), [("True", "Succeeded"), ("Unknown", "Running")])
def test_ensure_reuses_a_succeeded_or_running_run(status, reason):
    client = FakeKubeClient()
    client.put(taskrun("build-old", status, reason, key=KEY))
    result = tekton.ensure_taskrun(client, keyed_request(), check_mode=False)
    assert (result["changed"], result["created"], result["reused"], result["name"]) == (False, False, True, "build-old")
    assert result["status"] == ("succeeded" if status == "True" else "running")
    assert client.writes == []
    assert ("list", tekton.IDEMPOTENCY_LABEL + "=" + tekton.idempotency_label_value(KEY)) in [
        (method, details.get("label_selector")) for method, details in client.requests
    ]


@pytest.mark.parametrize("reason", ["StepFailed", "TaskRunCancelled", "TaskRunTimeout"])
def test_ensure_creates_a_new_run_after_a_failed_or_cancelled_one(reason):
    client = FakeKubeClient()
    client.put(taskrun("build-old", "False", reason, key=KEY))
    result = tekton.ensure_taskrun(client, keyed_request(), check_mode=False)
    assert (result["changed"], result["created"], result["reused"]) == (True, True, False)
    assert result["name"].startswith("build-") and result["name"] != "build-old"
    assert result["status"] == "new"
    stored = client.stored(tekton.API_VERSION, tekton.KIND, result["name"], NS)
    assert stored["metadata"]["labels"][tekton.IDEMPOTENCY_LABEL] == tekton.idempotency_label_value(KEY)
    assert result["diff"] == {"before": {}, "after": keyed_request().body()}


def test_ensure_in_check_mode_stores_nothing():
    client = FakeKubeClient(dry_run=True)
    result = tekton.ensure_taskrun(client, keyed_request(), check_mode=True)
    assert (result["changed"], result["created"], result["name"]) == (True, True, None)
    assert client.objects == {}
    assert all(details["dry_run"] for _method, details in client.writes)


def test_ensure_in_check_mode_without_server_dry_run_support():
    client = FakeKubeClient(dry_run=True)
    client.errors["create"] = [DryRunUnsupported(400, "BadRequest", "admission webhook does not support dry run")]
    request = keyed_request(name="build-7", generate_name=None)
    warnings = []
    result = tekton.ensure_taskrun(client, request, check_mode=True, warn=warnings.append)
    assert (result["changed"], result["created"], result["name"]) == (True, True, "build-7")
    assert result["taskrun"] == request.body()
    assert warnings == [f"The API server could not dry-run the new TaskRun in {NS}; it was not validated."]


def test_a_refused_real_create_is_an_error_not_a_fallback():
    # DryRunUnsupported only comes from dry runs; anything else a create raises reaches the user.
    client = FakeKubeClient()
    client.errors["create"] = [
        ApiError(400, "BadRequest", 'admission webhook "validation.webhook.pipeline.tekton.dev" denied')
    ]
    with pytest.raises(ApiError, match="denied"):
        tekton.ensure_taskrun(client, keyed_request(name="build-7", generate_name=None), check_mode=False)


def test_ensure_by_name_reuses_the_existing_run_whatever_its_state():
    client = FakeKubeClient()
    client.put(taskrun("build-7", "False", "StepFailed"))
    request = tekton.TaskRunRequest.from_params(request_params(name="build-7", generate_name=None))
    result = tekton.ensure_taskrun(client, request, check_mode=False)
    assert (result["changed"], result["reused"], result["status"]) == (False, True, "failed")
    assert client.writes == []


def test_ensure_by_name_and_key_refuses_to_reuse_a_failed_run_of_that_name():
    client = FakeKubeClient()
    client.put(taskrun("build-7", "False", "StepFailed", key=KEY))
    with pytest.raises(ServerlessError, match="already exists \\(failed\\)"):
        tekton.ensure_taskrun(client, keyed_request(name="build-7", generate_name=None), check_mode=False)
    assert client.writes == []


def test_cancel_a_running_run():
    client = FakeKubeClient()
    client.put(taskrun("build-1", "Unknown", "Running"))
    result = tekton.cancel_taskrun(client, NS, "build-1", check_mode=False)
    assert (result["changed"], result["status"]) == (True, "cancelling")
    [(method, details)] = client.writes
    assert (method, details["patch"], details["patch_type"]) == (
        "patch",
        {"spec": {"status": "TaskRunCancelled"}},
        "merge",
    )
    assert result["diff"]["after"] == {"spec": {"status": "TaskRunCancelled"}}


def test_cancel_in_check_mode_does_not_patch():
    client = FakeKubeClient(dry_run=True)
    client.put(taskrun("build-1", "Unknown", "Pending", spec_status="TaskRunPending"))
    result = tekton.cancel_taskrun(client, NS, "build-1", check_mode=True)
    assert (result["changed"], result["status"]) == (True, "cancelling")
    assert client.writes == []


@pytest.mark.parametrize(
    ("status", "reason", "spec_status", "expected"),
    [
        ("False", "TaskRunCancelled", "TaskRunCancelled", "cancelled"),
        ("Unknown", "TaskRunCancelled", "TaskRunCancelled", "cancelling"),
        ("True", "Succeeded", None, "succeeded"),
        ("False", "StepFailed", None, "failed"),
    ],
)
def test_cancel_is_idempotent(status, reason, spec_status, expected):
    client = FakeKubeClient()
    client.put(taskrun("build-1", status, reason, spec_status=spec_status))
    result = tekton.cancel_taskrun(client, NS, "build-1", check_mode=False)
    assert (result["changed"], result["status"]) == (False, expected)
    assert client.writes == []


def test_cancel_of_a_missing_run_changes_nothing():
    client = FakeKubeClient()
    result = tekton.cancel_taskrun(client, NS, "gone", check_mode=False)
    assert (result["changed"], result["status"]) == (False, "absent")
    assert client.writes == []


# ---------------------------------------------------------------------------------------------
# waiting


@pytest.fixture
def wait(monkeypatch):
    """``wait_taskrun`` on a fake clock: the waiter's pauses advance time instead of sleeping."""
    clock = FakeClock()
    real_wait_for = tekton.wait_for
    monkeypatch.setattr(
        tekton, "wait_for", lambda *args, **kwargs: real_wait_for(*args, clock=clock, sleep=clock.sleep, **kwargs)
    )

    def run(client: FakeKubeClient, name: str = "build-1", timeout: float = 60, log_lines: int = 3) -> dict:
        return tekton.wait_taskrun(client, NS, name, timeout, log_lines)

    return run


def put_pod(client: FakeKubeClient, name: str, logs: dict[str, str]) -> None:
    client.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "logs": logs})


def test_wait_returns_results_steps_and_duration_after_the_watch_reports_success(wait):
    client = FakeKubeClient()
    running = client.put(taskrun("build-1", "Unknown", "Running", pod="build-1-pod"))
    done = copy.deepcopy(running)
    done["metadata"]["resourceVersion"] = "500"
    done["status"].update(
        conditions=[{"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "All Steps done"}],
        startTime="2026-08-01T10:00:00Z",
        completionTime="2026-08-01T10:00:42Z",
        steps=[terminated("build-and-push", 0, "Completed")],
        results=[{"name": "IMAGE_DIGEST", "type": "string", "value": "sha256:" + "1" * 64}],
    )
    client.watch_script = [[event("MODIFIED", done)]]
    result = wait(client)
    assert result["changed"] is False
    assert (result["succeeded"], result["reason"], result["message"]) == (True, "Succeeded", "All Steps done")
    assert result["task_results"] == {"IMAGE_DIGEST": "sha256:" + "1" * 64}
    assert (result["pod_name"], result["duration"]) == ("build-1-pod", 42.0)
    assert result["start_time"] == "2026-08-01T10:00:00Z"
    assert result["completion_time"] == "2026-08-01T10:00:42Z"
    assert [step["name"] for step in result["steps"]] == ["build-and-push"]
    assert client.writes == []


def failed_run() -> dict:
    return taskrun(
        "build-1",
        "False",
        "StepFailed",
        '"step-build-and-push" exited with code 1',
        pod="build-1-pod",
        steps=[terminated("build-and-push", 1), terminated("write-url", 1, "Skipped")],
    )


def test_wait_fails_with_reason_step_exit_code_and_log_tail(wait):
    client = FakeKubeClient()
    client.put(failed_run())
    put_pod(client, "build-1-pod", {"step-build-and-push": "one\ntwo\nthree\nerror: RUN is not supported\n"})
    with pytest.raises(ServerlessError) as info:
        wait(client, log_lines=2)
    err = info.value
    assert "StepFailed" in err.msg and "exited with code 1" in err.msg
    assert "'build-and-push'" in err.msg and "exit code 1" in err.msg
    assert err.msg.endswith("; last log line: error: RUN is not supported (log_tail has the last 2)")
    assert err.result["failed_step"] == "build-and-push"
    assert err.result["exit_code"] == 1
    assert err.result["log_tail"] == ["three", "error: RUN is not supported"]
    assert err.result["succeeded"] is False
    log_requests = [details for method, details in client.requests if method == "pod_log"]
    assert log_requests == [
        {
            "name": "build-1-pod",
            "namespace": NS,
            "container": "step-build-and-push",
            "tail_lines": 2,
            "dry_run": False,
        }
    ]


def test_wait_reports_when_the_log_is_gone(wait):
    client = FakeKubeClient()
    run = failed_run()
    run["status"]["conditions"][0].update(reason="TaskRunCancelled", message='TaskRun "build-1" was cancelled.')
    run["status"]["steps"] = [terminated("build-and-push", 1, "TaskRunCancelled", "TaskRunCancelled")]
    client.put(run)  # no pod: Tekton deleted it on cancel
    with pytest.raises(ServerlessError) as info:
        wait(client)
    assert "TaskRunCancelled" in info.value.msg
    assert "stopped by Tekton: the run was cancelled" in info.value.msg
    assert "exit code" not in info.value.msg
    assert info.value.result["exit_code"] is None
    assert "pod build-1-pod is gone" in info.value.msg
    assert info.value.result["log_tail"] == []
    assert "keep-pod-on-cancel" in info.value.result["log_error"]


def test_wait_reports_other_log_errors(wait):
    client = FakeKubeClient()
    client.put(failed_run())
    client.errors["pod_log"] = [ApiError(403, "Forbidden", "pods/log is forbidden")]
    with pytest.raises(ServerlessError) as info:
        wait(client)
    assert "log of step-build-and-push unavailable" in info.value.msg
    assert "Forbidden" in info.value.result["log_error"]


def test_wait_without_a_failing_step_still_reports_reason_and_message(wait):
    client = FakeKubeClient()
    client.put(taskrun("build-1", "False", "TaskRunResolutionFailed", 'tasks.tekton.dev "kaniko" not found'))
    with pytest.raises(ServerlessError) as info:
        wait(client)
    assert info.value.msg == (
        f'TaskRun {NS}/build-1 failed: TaskRunResolutionFailed: tasks.tekton.dev "kaniko" not found'
    )
    assert info.value.result["failed_step"] is None
    assert "pod_log" not in client.methods()


def test_wait_timeout_carries_the_last_condition(wait):
    client = FakeKubeClient()
    client.put(taskrun("build-1", "Unknown", "Pending", "pod is pending", steps=[{"name": "build", "waiting": {}}]))
    with pytest.raises(ServerlessError) as info:
        wait(client, timeout=5)
    assert "Timed out" in info.value.msg
    assert "Succeeded=Unknown (Pending: pod is pending)" in info.value.msg
    assert "step 'build' is waiting" in info.value.msg
    assert info.value.result["succeeded"] is False


def test_wait_for_a_deleted_run(wait):
    client = FakeKubeClient()
    running = client.put(taskrun("build-1", "Unknown", "Running"))
    client.watch_script = [[event("DELETED", running)]]
    with pytest.raises(ServerlessError, match="was deleted while waiting"):
        wait(client)


def test_wait_for_a_missing_run_and_bad_arguments(wait):
    client = FakeKubeClient()
    with pytest.raises(ServerlessError, match="not found"):
        wait(client)
    for name, timeout, lines, message in [
        ("Bad", 10, 1, "not a valid TaskRun name"),
        ("ok", 0, 1, "greater than 0"),
        ("ok", -3, 1, "between 0 and"),
        ("ok", 10, -1, "log_lines"),
    ]:
        with pytest.raises(ServerlessError, match=message):
            tekton.wait_taskrun(client, NS, name, timeout, lines)
