"""The machine's kubectl against the sandbox, as a user would drive it."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from conftest import Sandbox

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {{tier: web}}
data:
  greeting: "{greeting}"
"""


def test_create_configmap_from_files(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print('hello')\n")
    (tmp_path / "Dockerfile").write_text("FROM python:3.11\nCOPY app.py /\n")
    out = sandbox.kubectl(
        "create",
        "configmap",
        "src",
        "-n",
        namespace,
        f"--from-file={tmp_path / 'app.py'}",
        f"--from-file={tmp_path / 'Dockerfile'}",
    )
    assert out.stdout.strip() == "configmap/src created"
    data = json.loads(sandbox.kubectl("get", "cm", "src", "-n", namespace, "-o", "json").stdout)["data"]
    assert data == {"app.py": "print('hello')\n", "Dockerfile": "FROM python:3.11\nCOPY app.py /\n"}
    listing = sandbox.kubectl("get", "cm", "-n", namespace).stdout.splitlines()
    assert listing[0].split() == ["NAME", "DATA", "AGE"] and listing[1].split()[:2] == ["src", "2"]


def test_apply_is_idempotent_and_validates(sandbox: Sandbox, namespace: str) -> None:
    manifest = CONFIGMAP.format(greeting="hi")
    assert "created" in sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=manifest).stdout
    assert "unchanged" in sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=manifest).stdout
    changed = sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=CONFIGMAP.format(greeting="hey"))
    assert "configured" in changed.stdout
    bad = sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=manifest + "spec: {foo: 1}\n", check=False)
    assert bad.returncode != 0 and 'unknown field "spec"' in bad.stderr
    ksvc = (
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: typo}\n"
        "spec: {template: {spec: {containers: [{image: x, imagePullPolicyy: Always}]}}}\n"
    )
    bad = sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=ksvc, check=False)
    assert bad.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in bad.stderr


def test_server_side_apply(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=greeting=old")
    conflict = sandbox.kubectl(
        "apply", "--server-side", "-n", namespace, "-f", "-", input=CONFIGMAP.format(greeting="new"), check=False
    )
    assert conflict.returncode != 0
    assert 'conflict with "kubectl-create"' in conflict.stderr and ".data.greeting" in conflict.stderr
    forced = sandbox.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-n",
        namespace,
        "-f",
        "-",
        input=CONFIGMAP.format(greeting="new"),
    )
    assert "serverside-applied" in forced.stdout
    obj = json.loads(
        sandbox.kubectl("get", "cm", "settings", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )
    assert obj["data"]["greeting"] == "new"
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


def test_patch_types(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl("apply", "-n", namespace, "-f", "-", input=CONFIGMAP.format(greeting="a"))
    sandbox.kubectl("patch", "cm", "settings", "-n", namespace, "--type=merge", "-p", '{"data":{"m":"1"}}')
    sandbox.kubectl(
        "patch",
        "cm",
        "settings",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/data/greeting","value":"j"}]',
    )
    sandbox.kubectl("patch", "cm", "settings", "-n", namespace, "--type=strategic", "-p", '{"data":{"s":"2"}}')
    data = json.loads(sandbox.kubectl("get", "cm", "settings", "-n", namespace, "-o", "json").stdout)["data"]
    assert data == {"greeting": "j", "m": "1", "s": "2"}
    sandbox.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=("apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: t}\nspec: {steps: [{name: s, image: x}]}\n"),
    )
    refused = sandbox.kubectl(
        "patch", "task", "t", "-n", namespace, "--type=strategic", "-p", '{"spec":{}}', check=False
    )
    assert refused.returncode != 0 and "application/strategic-merge-patch+json is not supported" in refused.stderr


def test_get_watch_sees_changes(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl("create", "configmap", "watched", "-n", namespace)

    def change_later() -> None:
        time.sleep(1.0)
        sandbox.kubectl("label", "configmap", "watched", "-n", namespace, "step=two")

    thread = threading.Thread(target=change_later)
    thread.start()
    argv = [
        "kubectl",
        "--kubeconfig",
        str(sandbox.kubeconfig),
        "get",
        "cm",
        "watched",
        "-n",
        namespace,
        "-w",
        "-o",
        'jsonpath={.metadata.labels.step}{"\\n"}',
        "--request-timeout=4s",
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=4, check=False)
        output = result.stdout
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
    thread.join()
    assert "two" in output.split()


def test_wait_for_condition_written_through_status(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=("apiVersion: v1\nkind: Pod\nmetadata: {name: waiter}\nspec: {containers: [{name: c, image: x}]}\n"),
    )
    status = '{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}'

    def ready_later() -> None:
        time.sleep(1.0)
        sandbox.kubectl("patch", "pod", "waiter", "-n", namespace, "--subresource=status", "--type=merge", "-p", status)

    thread = threading.Thread(target=ready_later)
    thread.start()
    result = sandbox.kubectl("wait", "--for=condition=Ready", "pod/waiter", "-n", namespace, "--timeout=20s")
    thread.join()
    assert "condition met" in result.stdout
    spec_change = sandbox.kubectl(
        "patch", "pod", "waiter", "-n", namespace, "--type=merge", "-p", '{"status":{"phase":"Failed"}}'
    )
    assert spec_change.returncode == 0  # the main resource ignores status …
    phase = sandbox.kubectl("get", "pod", "waiter", "-n", namespace, "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Running"  # … so the phase is unchanged


def test_logs(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=("apiVersion: v1\nkind: Pod\nmetadata: {name: talker}\nspec: {containers: [{name: main, image: x}]}\n"),
    )
    log = sandbox.settings.log_path(namespace, "talker", "main")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("one\ntwo\nthree\n")
    assert sandbox.kubectl("logs", "talker", "-n", namespace).stdout == "one\ntwo\nthree\n"
    assert sandbox.kubectl("logs", "talker", "-n", namespace, "--tail=1").stdout == "three\n"
    assert sandbox.kubectl("logs", "talker", "-n", namespace, "-c", "main").stdout.startswith("one")
    sandbox.kubectl(
        "patch",
        "pod",
        "talker",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Succeeded"}}',
    )
    followed = sandbox.kubectl("logs", "-f", "talker", "-n", namespace, timeout=20)
    assert followed.stdout == "one\ntwo\nthree\n"


def test_delete_and_knative_columns(sandbox: Sandbox, namespace: str) -> None:
    sandbox.kubectl("create", "configmap", "gone", "-n", namespace)
    assert sandbox.kubectl("delete", "configmap", "gone", "-n", namespace).stdout.strip() == 'configmap "gone" deleted'
    missing = sandbox.kubectl("get", "configmap", "gone", "-n", namespace, check=False)
    assert missing.returncode != 0 and 'configmaps "gone" not found' in missing.stderr
    sandbox.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: cols}\n"
            "spec: {template: {spec: {containers: [{image: example.com/cols:1}]}}}\n"
        ),
    )
    header = sandbox.kubectl("get", "ksvc", "cols", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    sandbox.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=("apiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: cols}\nspec: {taskRef: {name: absent}}\n"),
    )
    header = sandbox.kubectl("get", "tr", "cols", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "SUCCEEDED", "REASON", "STARTTIME", "COMPLETIONTIME"]
    sandbox.kubectl("delete", "ksvc,tr", "cols", "-n", namespace)
    assert sandbox.kubectl("get", "ksvc,tr", "-n", namespace, "-o", "name").stdout == ""
