"""Failure paths, as each target reports them: a Dockerfile that fails, a cancelled TaskRun, an app
that crashes. Observed: the verdict of the collection's call, and what Tekton and Knative say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import conditions

HERE = Path(__file__).parent
DEMO_NAMESPACE = "default"  # the demo app, whose image the failing apps run


def _steps(run: dict) -> list[dict]:
    return [
        {
            "name": step.get("name"),
            "terminated": {k: v for k, v in step.get("terminated", {}).items() if k in ("exitCode", "reason")},
            "terminationReason": step.get("terminationReason"),
        }
        for step in run["status"].get("steps", [])
    ]


def test_failing_dockerfile(target, observe, work_namespace, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "Dockerfile").write_text("ARG BASE_IMAGE=scratch\nFROM ${BASE_IMAGE}\nCOPY missing.txt /app/\n")
    (source / "app.py").write_text("print('never built')\n")
    if target.name == "cluster":  # the playbook runs inside the cluster's namespace: same host paths
        source.chmod(0o755)
    done = target.playbook(
        HERE / "playbooks" / "build.yml",
        *("-e", "build_name=cf-broken", "-e", f"build_source_dir={source}"),
        *("-e", "build_push_host=hub.default.svc.cluster.local", "-e", "build_pull_host=hub.default.svc.cluster.local"),
        env={"DEMO_NAMESPACE": work_namespace},
    )
    observe("play_failed", done.returncode != 0)
    selector = "serverless.knlab.io/build=cf-broken"
    runs = target.json("get", "taskruns", "-n", work_namespace, "-l", selector)["items"]
    assert runs, f"no TaskRun for cf-broken on {target.name}:\n{done.output[-3000:]}"
    run = runs[-1]
    observe("taskrun.conditions", conditions(run))
    observe("taskrun.message", run["status"]["conditions"][0].get("message", "").split(". For logs")[0])
    observe("taskrun.steps", _steps(run))
    observe("message_names_the_step", "build-and-push" in done.output and "exit" in done.output)


def test_cancelled_pending_taskrun(target, observe, work_namespace) -> None:
    namespace = work_namespace
    name = "cf-cancelled"
    target.kubectl("delete", "taskrun", name, "-n", namespace, "--ignore-not-found", "--wait=true")
    taskrun = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "status": "TaskRunPending",
            "taskSpec": {"steps": [{"name": "never", "image": "registry.knlab.test/none@sha256:" + "0" * 64}]},
        },
    }
    target.kubectl("create", "-f", "-", input=json.dumps(taskrun))
    pending = target.json("get", "taskrun", name, "-n", namespace)
    observe("pending.conditions", conditions(pending))
    target.kubectl(
        "patch", "taskrun", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"status":"TaskRunCancelled"}}'
    )
    result = target.module("tekton_taskrun_wait", name=name, namespace=namespace, timeout=60)
    observe("wait.failed", bool(result.get("failed")))
    cancelled = target.json("get", "taskrun", name, "-n", namespace)
    observe("cancelled.conditions", conditions(cancelled))
    observe("cancelled.steps", _steps(cancelled))
    observe("cancelled.pod", bool(cancelled["status"].get("podName")))
    target.kubectl("delete", "taskrun", name, "-n", namespace, "--wait=false")


def _failing_app(target, observe, namespace: str, name: str, command: list[str]) -> None:
    """An app from the demo's image that cannot become ready, with a 30 s progress deadline."""
    image = target.json("get", "ksvc", "hello", "-n", DEMO_NAMESPACE)["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    result = target.module(
        "knative_service",
        name=name,
        namespace=namespace,
        image=image,
        command=command,
        annotations={"serving.knative.dev/progress-deadline": "30s"},
        wait_timeout=180,
    )
    observe("module.failed", bool(result.get("failed")))
    observe("module.timed_out", "Timed out" in str(result.get("msg", "")))
    # The module fails as soon as the pods show the cause (test_fail_fast.py); what Knative itself
    # reports comes at the progress deadline.
    for waited in (f"revision/{name}-00001", f"ksvc/{name}"):
        target.kubectl("wait", "--for=condition=Ready=false", waited, "-n", namespace, "--timeout=120s", timeout=150)
    service = target.json("get", "ksvc", name, "-n", namespace)
    observe("service.conditions", conditions(service))
    revision = target.json("get", "revision", f"{name}-00001", "-n", namespace)
    observe("revision.conditions", conditions(revision))
    target.module("knative_service", name=name, namespace=namespace, state="absent")


def test_crashing_app(target, observe, work_namespace) -> None:
    # Uses the image test_demo_objects.py built (files run in name order).
    _failing_app(target, observe, work_namespace, "cf-crash", ["python3", "-c", "raise SystemExit(3)"])


def test_silent_app(target, observe, work_namespace) -> None:
    # Runs, never listens: the readiness probe fails until the progress deadline.
    _failing_app(target, observe, work_namespace, "cf-silent", ["python3", "-c", "import time; time.sleep(3600)"])


@pytest.mark.parametrize("command", [["/kaniko/executor"], None], ids=["with_command", "image_entrypoint"])
def test_missing_step_image(target, observe, work_namespace, command) -> None:
    namespace = work_namespace
    # The kaniko repository the target builds with, at a digest nobody pushed (issue 8 item 4).
    # With a command (as the build role's Task has) the kubelet's pull fails; without one, Tekton
    # must first read the image's entrypoint from its registry to build the pod.
    builder = target.demo_env.get("DEMO_BUILDER_IMAGE") or _role_default("build_builder_image")
    image = builder.split("@", 1)[0] + "@sha256:" + "1" * 64
    name = "cf-missing-image-" + ("command" if command else "entrypoint")
    step = {"name": "build", "image": image, "args": ["--no-push", "--dockerfile=/none"]}
    if command:
        step["command"] = command
    started = target.module(
        "tekton_taskrun", name=name, namespace=namespace, idempotency_key=name, task_spec={"steps": [step]}
    )
    assert not started.get("failed"), started
    result = target.module("tekton_taskrun_wait", name=name, namespace=namespace, timeout=300)
    observe("wait.failed", bool(result.get("failed")))
    observe("wait.reason", result.get("reason"))
    observe(
        "wait.steps",
        [
            {k: step.get(k) for k in ("name", "state", "exit_code", "termination_reason")}
            for step in result.get("steps", [])
        ],
    )
    target.kubectl("delete", "taskrun", name, "-n", namespace, "--wait=false")


def _role_default(name: str) -> str:
    defaults = yaml.safe_load((HERE.parents[1] / "roles" / "build" / "defaults" / "main.yml").read_text())
    return defaults[name]
