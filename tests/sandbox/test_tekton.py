"""The Tekton simulation, driven through ResourceAPI as the HTTP API drives it.

A kaniko step really builds and pushes into a real docker-registry, reached the way a pod reaches a
hub Knative Service: through `Gateway.resolve`. Steps the sandbox cannot run fail, as do runs whose
Task is missing, that time out or that are cancelled (FACTS §2.3 to §2.6).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from ansible_collections.knlab.serverless.tests.unit.registry_server import start_registry
from knlab_sandbox import kinds
from knlab_sandbox.errors import ApiStatusError
from knlab_sandbox.gateway import Endpoint, Gateway
from knlab_sandbox.resources import ResourceAPI
from knlab_sandbox.settings import Settings
from knlab_sandbox.store import Store
from knlab_sandbox.tekton import TektonController

TASK = kinds.lookup("tekton.dev/v1", "Task")
TASKRUN = kinds.lookup("tekton.dev/v1", "TaskRun")
POD = kinds.lookup("v1", "Pod")
CONFIGMAP = kinds.lookup("v1", "ConfigMap")
WAIT = 20.0  # an upper bound for a wait, not a performance expectation
HUB = "hub.default.svc.cluster.local"
KANIKO = "gcr.io/kaniko-project/executor:v1.23.2@sha256:" + "a" * 64

KANIKO_TASK = {
    "apiVersion": "tekton.dev/v1",
    "kind": "Task",
    "metadata": {"name": "kaniko"},
    "spec": {
        "params": [
            {"name": "IMAGE"},
            {"name": "DOCKERFILE", "default": "./Dockerfile"},
            {"name": "CONTEXT", "default": "./"},
            {"name": "EXTRA_ARGS", "type": "array", "default": []},
        ],
        "workspaces": [{"name": "source"}],
        "results": [{"name": "IMAGE_DIGEST"}, {"name": "IMAGE_URL"}],
        "steps": [
            {
                "name": "build-and-push",
                "image": KANIKO,
                "workingDir": "$(workspaces.source.path)",
                "args": [
                    "$(params.EXTRA_ARGS[*])",
                    "--dockerfile=$(params.DOCKERFILE)",
                    "--context=$(workspaces.source.path)/$(params.CONTEXT)",
                    "--destination=$(params.IMAGE)",
                    "--digest-file=$(results.IMAGE_DIGEST.path)",
                ],
            }
        ],
    },
}


def taskrun(name: str, **spec) -> dict:
    return {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name}, "spec": spec}


def succeeded(obj: dict | None) -> dict:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == "Succeeded"), {})


class Cluster:
    def __init__(self, api: ResourceAPI, settings: Settings):
        self.api, self.settings = api, settings

    async def get(self, rt, name, namespace="default"):
        return self.api.get_nowait(rt, name, namespace=namespace)

    async def wait(self, rt, name, check):
        obj = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT):
                while True:
                    obj = await self.get(rt, name)
                    if check(obj):
                        return obj
                    await asyncio.sleep(0.02)
        pytest.fail(f"{rt.kind} {name} never satisfied the check; last seen: {obj}")

    async def finished(self, name):
        return await self.wait(TASKRUN, name, lambda o: succeeded(o).get("status") in ("True", "False"))

    def log(self, pod: str, container: str) -> str:
        return self.settings.log_path("default", pod, container).read_text()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with start_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture
def step_delay():
    return 0.0


@pytest.fixture
async def cluster(tmp_path, registry, step_delay):
    settings = Settings(state_dir=tmp_path / "state", step_delay=step_delay)
    store = Store(settings.db_path)
    api = ResourceAPI(store, settings)
    await api.seed_registered()
    gateway = Gateway()  # not started: only its routing table is used, as builds use it
    gateway.set_route([HUB], Endpoint("127.0.0.1", registry.port))
    controller = TektonController(api, settings, gateway=gateway)
    task = asyncio.create_task(controller.run())
    try:
        yield Cluster(api, settings)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()


async def source_configmap(cluster: Cluster, name: str = "hello-src") -> None:
    files = {
        "Dockerfile": 'FROM python:3.12-slim\nWORKDIR /app\nCOPY app.py .\nENV PORT=8080\nCMD ["python", "app.py"]\n',
        "app.py": "print('hello')\n",
    }
    await cluster.api.create(CONFIGMAP, {"metadata": {"name": name}, "data": files}, namespace="default")


async def test_kaniko_taskrun_builds_pushes_and_reports_results(cluster, registry):
    await source_configmap(cluster)
    await cluster.api.create(TASK, KANIKO_TASK, namespace="default")
    run = taskrun(
        "build-1",
        taskRef={"name": "kaniko"},
        params=[
            {"name": "IMAGE", "value": f"{HUB}/demo/hello:v1"},
            # kaniko speaks HTTPS to *.local names unless told otherwise (go-containerregistry v0.21).
            {"name": "EXTRA_ARGS", "value": ["--reproducible", f"--insecure-registry={HUB}"]},
        ],
        workspaces=[{"name": "source", "configMap": {"name": "hello-src"}}],
        timeout="10m",
    )
    created = await cluster.api.create(TASKRUN, run, namespace="default")
    # The defaulting webhook's work (FACTS §2.3).
    assert created["spec"]["timeout"] == "10m0s"
    assert created["spec"]["serviceAccountName"] == "default"
    assert created["spec"]["taskRef"] == {"name": "kaniko", "kind": "Task"}
    assert created["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tekton-pipelines"

    done = await cluster.finished("build-1")
    condition = succeeded(done)
    assert (condition["status"], condition["reason"]) == ("True", "Succeeded"), done["status"]
    status = done["status"]
    digest = registry.request(
        "HEAD",
        "/v2/demo/hello/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    ).headers["docker-content-digest"]
    assert status["results"] == [{"name": "IMAGE_DIGEST", "type": "string", "value": digest}]
    assert status["podName"] == "build-1-pod"
    assert status["startTime"] <= status["completionTime"]
    [step] = status["steps"]
    assert step["name"] == "build-and-push" and step["container"] == "step-build-and-push"
    assert step["terminated"]["exitCode"] == 0 and step["terminationReason"] == "Completed"
    assert done["metadata"]["labels"]["tekton.dev/task"] == "kaniko"

    pod = await cluster.get(POD, "build-1-pod")
    assert pod["metadata"]["labels"]["tekton.dev/taskRun"] == "build-1"
    assert pod["metadata"]["labels"]["tekton.dev/task"] == "kaniko"
    assert pod["metadata"]["labels"]["tekton.dev/taskRunUID"] == done["metadata"]["uid"]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]
    container = pod["spec"]["containers"][0]
    assert container["args"] == [
        "--reproducible",
        f"--insecure-registry={HUB}",
        "--dockerfile=./Dockerfile",
        "--context=/workspace/source/./",
        f"--destination={HUB}/demo/hello:v1",
        "--digest-file=/tekton/results/IMAGE_DIGEST",
    ]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod_readiness(pod) == {"Ready": ("False", "PodCompleted"), "ContainersReady": ("False", "PodCompleted")}
    log = cluster.log("build-1-pod", "step-build-and-push")
    assert f"Pushed {HUB}/demo/hello@{digest}" in log
    assert "layers are not included" in log


async def test_missing_task_fails_resolution(cluster):
    await cluster.api.create(TASKRUN, taskrun("lost", taskRef={"name": "nope"}), namespace="default")
    done = await cluster.finished("lost")
    condition = succeeded(done)
    assert condition["status"] == "False"
    assert condition["reason"] == "TaskRunResolutionFailed"
    assert condition["message"] == 'error when listing tasks for taskRun lost: tasks.tekton.dev "nope" not found'
    assert await cluster.get(POD, "lost-pod") is None


async def test_a_step_the_sandbox_cannot_run_fails_and_later_steps_are_skipped(cluster):
    spec = {
        "steps": [
            {"name": "write", "image": "docker.io/library/bash:5.1.4", "script": "echo hi > /tekton/results/X"},
            {"name": "after", "image": KANIKO, "args": ["--no-push"]},
        ]
    }
    await cluster.api.create(TASKRUN, taskrun("shell", taskSpec=spec), namespace="default")
    done = await cluster.finished("shell")
    condition = succeeded(done)
    assert (condition["status"], condition["reason"]) == ("False", "StepFailed")
    assert condition["message"] == '"step-write" exited with code 1: Error'
    first, second = done["status"]["steps"]
    assert first["terminated"]["exitCode"] == 1 and first["terminationReason"] == "Error"
    assert second["terminationReason"] == "Skipped"
    assert "cannot execute image 'docker.io/library/bash:5.1.4'" in cluster.log("shell-pod", "step-write")
    pod = await cluster.get(POD, "shell-pod")
    assert pod["status"]["phase"] == "Failed"
    assert pod_readiness(pod) == {"Ready": ("False", "PodFailed"), "ContainersReady": ("False", "PodFailed")}


def pod_readiness(pod: dict) -> dict[str, tuple[str, str]]:
    """What kubelet says of a finished pod's readiness: False, with PodCompleted or PodFailed."""
    return {
        c["type"]: (c["status"], c.get("reason", ""))
        for c in pod["status"]["conditions"]
        if c["type"] in ("Ready", "ContainersReady")
    }


async def test_a_failing_build_reports_the_kaniko_error(cluster):
    await cluster.api.create(
        CONFIGMAP,
        {"metadata": {"name": "runs"}, "data": {"Dockerfile": "FROM python:3.12\nRUN pip install flask\n"}},
        namespace="default",
    )
    await cluster.api.create(TASK, KANIKO_TASK, namespace="default")
    run = taskrun(
        "with-run",
        taskRef={"name": "kaniko"},
        params=[{"name": "IMAGE", "value": f"{HUB}/demo/run:v1"}],
        workspaces=[{"name": "source", "configMap": {"name": "runs"}}],
    )
    await cluster.api.create(TASKRUN, run, namespace="default")
    condition = succeeded(await cluster.finished("with-run"))
    assert (condition["reason"], condition["message"]) == (
        "StepFailed",
        '"step-build-and-push" exited with code 1: Error',
    )
    assert "cannot execute commands" in cluster.log("with-run-pod", "step-build-and-push").splitlines()[-1]


async def test_missing_params_and_workspaces_fail_validation(cluster):
    await cluster.api.create(TASK, KANIKO_TASK, namespace="default")
    await cluster.api.create(TASKRUN, taskrun("bare", taskRef={"name": "kaniko"}), namespace="default")
    condition = succeeded(await cluster.finished("bare"))
    assert condition["reason"] == "TaskRunValidationFailed"
    assert condition["message"] == "invalid input params for task kaniko: missing parameters: [IMAGE]"


@pytest.mark.parametrize("step_delay", [30.0])
async def test_timeout(cluster):
    spec = {"steps": [{"name": "slow", "image": KANIKO, "args": ["--no-push"]}]}
    await cluster.api.create(TASKRUN, taskrun("slow", taskSpec=spec, timeout="1s"), namespace="default")
    done = await cluster.finished("slow")
    condition = succeeded(done)
    assert (condition["status"], condition["reason"]) == ("False", "TaskRunTimeout")
    assert condition["message"] == 'TaskRun "slow" failed to finish within "1s"'
    # As Tekton's terminateStepsInPod: the run's reason, exit code 1 that is not the step's own.
    assert done["status"]["steps"][0]["terminationReason"] == "TaskRunTimeout"
    assert done["status"]["steps"][0]["terminated"]["reason"] == "TaskRunTimeout"
    assert done["status"]["steps"][0]["terminated"]["exitCode"] == 1
    assert await cluster.get(POD, "slow-pod") is None


@pytest.mark.parametrize("step_delay", [30.0])
async def test_cancel_deletes_the_pod(cluster):
    spec = {"steps": [{"name": "slow", "image": KANIKO, "args": ["--no-push"]}]}
    await cluster.api.create(TASKRUN, taskrun("stop-me", taskSpec=spec), namespace="default")
    await cluster.wait(TASKRUN, "stop-me", lambda o: succeeded(o).get("reason") == "Running")
    await cluster.api.patch(TASKRUN, "stop-me", {"spec": {"status": "TaskRunCancelled"}}, "merge", namespace="default")
    done = await cluster.finished("stop-me")
    condition = succeeded(done)
    assert (condition["status"], condition["reason"]) == ("False", "TaskRunCancelled")
    assert condition["message"] == 'TaskRun "stop-me" was cancelled. '
    assert done["status"]["steps"][0]["terminationReason"] == "TaskRunCancelled"
    message = done["status"]["steps"][0]["terminated"]["message"]
    assert message == "Step slow terminated as pod stop-me-pod is terminated"
    assert await cluster.get(POD, "stop-me-pod") is None


async def test_pending_waits_until_released(cluster):
    spec = {"steps": [{"name": "build", "image": KANIKO, "args": ["--no-push", "--context=/workspace"]}]}
    await cluster.api.create(TASKRUN, taskrun("later", taskSpec=spec, status="TaskRunPending"), namespace="default")
    pending = await cluster.wait(TASKRUN, "later", lambda o: succeeded(o).get("reason") == "TaskRunPending")
    assert succeeded(pending)["message"] == 'TaskRun "later" is pending'
    assert "startTime" not in pending["status"] and await cluster.get(POD, "later-pod") is None
    await cluster.api.patch(TASKRUN, "later", [{"op": "remove", "path": "/spec/status"}], "json", namespace="default")
    condition = succeeded(await cluster.finished("later"))
    # No Dockerfile in an empty /workspace: kaniko's own complaint, as a failed step.
    assert condition["reason"] == "StepFailed"
    assert "valid path to a Dockerfile" in cluster.log("later-pod", "step-build")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "expected exactly one, got neither: spec.taskRef, spec.taskSpec"),
        ({"taskRef": {"name": "x"}, "status": "Stop"}, "invalid value: Stop should be TaskRunCancelled"),
        ({"taskRef": {"name": "x"}, "timeout": "soon"}, 'time: invalid duration "soon"'),
        (
            {"taskSpec": {"steps": [{"name": "Bad_Name", "image": "x"}]}},
            'invalid value "Bad_Name": spec.taskSpec.steps[0].name',
        ),
        (
            {"taskRef": {"name": "x"}, "workspaces": [{"name": "s"}]},
            "expected exactly one, got neither: spec.workspaces[0].configmap",
        ),
    ],
)
async def test_webhook_rejects_invalid_taskruns(cluster, spec, message):
    with pytest.raises(ApiStatusError) as caught:
        await cluster.api.create(TASKRUN, taskrun("bad", **spec), namespace="default")
    assert caught.value.code == 400
    assert "admission webhook" in caught.value.message and message in caught.value.message


async def test_started_runs_accept_only_status_changes(cluster):
    await cluster.api.create(TASKRUN, taskrun("fixed", taskRef={"name": "nope"}), namespace="default")
    await cluster.finished("fixed")
    with pytest.raises(ApiStatusError, match="Once the TaskRun is complete, no updates are allowed"):
        await cluster.api.patch(TASKRUN, "fixed", {"spec": {"timeout": "5m"}}, "merge", namespace="default")
    labelled = await cluster.api.patch(
        TASKRUN, "fixed", {"metadata": {"labels": {"a": "b"}}}, "merge", namespace="default"
    )
    assert labelled["metadata"]["labels"]["a"] == "b"
