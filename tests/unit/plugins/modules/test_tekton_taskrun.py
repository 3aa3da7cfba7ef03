"""tekton_taskrun run as Ansible runs it (arguments in, JSON out) against the scripted fake client."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.knlab.serverless.plugins.module_utils import _tekton as tekton
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ApiError
from ansible_collections.knlab.serverless.plugins.modules import tekton_taskrun
from fakes import FakeKubeClient

KEY = "sha256:" + "cd" * 32
BASE = {
    "generate_name": "build-hello-",
    "namespace": "default",
    "task_ref": {"name": "kaniko"},
    "params": {"IMAGE": "hub.default.svc.cluster.local/demo/hello:latest", "EXTRA_ARGS": ["--insecure"]},
    "workspaces": [{"name": "source", "configMap": {"name": "hello-src"}}],
    "timeout": "15m",
    "idempotency_key": KEY,
}


@pytest.fixture
def cluster(monkeypatch):
    """The fake API server behind ``get_client``; ``clients`` records every client the module built."""
    client = FakeKubeClient()
    clients = []

    def get_client(module):
        # One store, and the dry-run flag the real adapter derives from check mode.
        client.dry_run = bool(module.check_mode)
        clients.append(client)
        return client

    monkeypatch.setattr(tekton_taskrun, "get_client", get_client)
    client.clients = clients
    return client


def run_module(capsys, *, check_mode: bool = False, diff: bool = False, **args) -> dict:
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        tekton_taskrun.main()
    return json.loads(capsys.readouterr().out)


def stored_taskruns(client: FakeKubeClient) -> list[dict]:
    return [obj for key, obj in client.objects.items() if key[1] == "TaskRun"]


def finish(client: FakeKubeClient, name: str, status: str, reason: str) -> None:
    obj = client.stored(tekton.API_VERSION, tekton.KIND, name, "default")
    obj.setdefault("status", {})["conditions"] = [{"type": "Succeeded", "status": status, "reason": reason}]
    client.put(obj)


def test_creates_then_reuses_the_run_for_the_same_key(cluster, capsys):
    first = run_module(capsys, **BASE)
    assert (first["changed"], first["created"], first["reused"], first["status"]) == (True, True, False, "new")
    assert first["name"].startswith("build-hello-")
    [stored] = stored_taskruns(cluster)
    assert stored["spec"]["params"] == [
        {"name": "IMAGE", "value": "hub.default.svc.cluster.local/demo/hello:latest"},
        {"name": "EXTRA_ARGS", "value": ["--insecure"]},
    ]
    assert stored["spec"]["taskRef"] == {"name": "kaniko"}
    assert stored["spec"]["timeout"] == "15m"
    assert "diff" not in first

    second = run_module(capsys, **BASE)  # still running
    assert (second["changed"], second["created"], second["reused"]) == (False, False, True)
    assert (second["name"], second["status"]) == (first["name"], "new")

    finish(cluster, first["name"], "True", "Succeeded")
    third = run_module(capsys, **BASE)
    assert (third["changed"], third["reused"], third["name"], third["status"]) == (
        False,
        True,
        first["name"],
        "succeeded",
    )
    assert len(stored_taskruns(cluster)) == 1


@pytest.mark.parametrize("reason", ["StepFailed", "TaskRunCancelled"])
def test_a_failed_or_cancelled_run_is_not_reused(cluster, capsys, reason):
    first = run_module(capsys, **BASE)
    finish(cluster, first["name"], "False", reason)
    second = run_module(capsys, **BASE)
    assert (second["changed"], second["created"], second["reused"]) == (True, True, False)
    assert second["name"] != first["name"]
    assert len(stored_taskruns(cluster)) == 2


def test_check_mode_creates_nothing_and_reports_the_creation(cluster, capsys):
    result = run_module(capsys, check_mode=True, diff=True, **BASE)
    assert (result["changed"], result["created"], result["name"]) == (True, True, None)
    assert stored_taskruns(cluster) == []
    assert all(details["dry_run"] for _method, details in cluster.writes)
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["metadata"]["annotations"] == {tekton.IDEMPOTENCY_ANNOTATION: KEY}


def test_check_mode_then_real_run_agree(cluster, capsys):
    predicted = run_module(capsys, check_mode=True, **BASE)
    real = run_module(capsys, **BASE)
    again = run_module(capsys, check_mode=True, **BASE)
    assert (predicted["changed"], real["changed"], again["changed"]) == (True, True, False)
    assert len(stored_taskruns(cluster)) == 1


def test_diff_mode_shows_the_created_run(cluster, capsys):
    result = run_module(capsys, diff=True, **BASE)
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["spec"]["workspaces"] == BASE["workspaces"]


def test_cancel_then_cancel_again(cluster, capsys):
    created = run_module(capsys, **BASE)
    finish(cluster, created["name"], "Unknown", "Running")
    args = {"name": created["name"], "namespace": "default", "state": "cancelled"}
    cancelled = run_module(capsys, diff=True, **args)
    assert (cancelled["changed"], cancelled["status"]) == (True, "cancelling")
    assert cancelled["diff"]["after"] == {"spec": {"status": "TaskRunCancelled"}}
    stored = cluster.stored(tekton.API_VERSION, tekton.KIND, created["name"], "default")
    assert stored["spec"]["status"] == "TaskRunCancelled"
    writes = len(cluster.writes)
    again = run_module(capsys, **args)
    assert (again["changed"], again["status"]) == (False, "cancelling")
    assert len(cluster.writes) == writes


def test_cancel_in_check_mode_sends_no_patch(cluster, capsys):
    created = run_module(capsys, **BASE)
    finish(cluster, created["name"], "Unknown", "Running")
    result = run_module(capsys, check_mode=True, name=created["name"], state="cancelled")
    assert (result["changed"], result["status"]) == (True, "cancelling")
    assert [write[0] for write in cluster.writes] == ["create"]


def test_api_errors_become_one_line_failures(cluster, capsys):
    cluster.errors["create"] = [ApiError(403, "Forbidden", 'taskruns.tekton.dev is forbidden:\nUser "x" cannot create')]
    result = run_module(capsys, **BASE)
    assert result["failed"] is True
    assert "Forbidden" in result["msg"] and "\n" not in result["msg"]


DROP = object()  # removes the option, as a play that leaves it out (or uses omit) does

BAD_ARGUMENTS = [
    ({"generate_name": DROP, "name": "Bad_Name"}, "not a valid TaskRun name"),
    ({"generate_name": DROP, "name": "a_b"}, "not a valid TaskRun name"),
    ({"generate_name": "Build-"}, "generate_name"),
    ({"generate_name": DROP}, "name, generate_name"),
    ({"generate_name": None}, "exactly one of name or generate_name"),
    ({"name": "build-1"}, "mutually exclusive"),
    ({"task_spec": {"steps": [{"name": "a", "image": "busybox"}]}}, "mutually exclusive"),
    ({"task_ref": DROP}, "task_ref, task_spec"),
    ({"task_ref": None}, "exactly one of task_ref or task_spec"),
    ({"timeout": "10"}, "not a Go duration"),
    ({"timeout": "1d"}, "not a Go duration"),
    ({"timeout": "-10m"}, "negative"),
    ({"namespace": "Default"}, "namespace"),
    ({"labels": {"app": "has spaces"}}, "label"),
    ({"params": {"IMAGE": None}}, "params.IMAGE has no value"),
    ({"workspaces": [{"name": "source"}]}, "exactly one of"),
    ({"state": "absent"}, "state"),
    ({"task_ref": {"name": "kaniko", "color": "red"}}, "color"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_ARGUMENTS)
def test_bad_arguments_fail_with_one_line_and_no_request(cluster, capsys, overrides, message):
    args = {key: value for key, value in {**BASE, **overrides}.items() if value is not DROP}
    result = run_module(capsys, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert "\n" not in result["msg"]
    assert "Traceback" not in result["msg"]
    assert cluster.requests == []


@pytest.mark.parametrize(("args", "message"), [({"name": None}, "name"), ({"name": "Bad.Name"}, "not a valid")])
def test_bad_cancel_arguments(cluster, capsys, args, message):
    result = run_module(capsys, state="cancelled", **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert cluster.requests == []


def test_argument_spec_matches_the_documentation():
    import yaml

    documented = yaml.safe_load(tekton_taskrun.DOCUMENTATION)["options"]
    assert set(documented) == set(tekton_taskrun.OPTIONS)
    for name, spec in tekton_taskrun.OPTIONS.items():
        assert documented[name]["type"] == spec["type"], name
        assert documented[name].get("default") == spec.get("default"), name
        assert documented[name].get("choices") == spec.get("choices"), name
    assert set(documented["task_ref"]["suboptions"]) == set(tekton_taskrun.OPTIONS["task_ref"]["options"])
