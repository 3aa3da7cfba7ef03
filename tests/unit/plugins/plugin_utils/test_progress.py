"""The progress followers: what they print as a TaskRun and a rollout change (read, never write)."""

from __future__ import annotations

from ansible_collections.knlab.serverless.plugins.plugin_utils._progress import RolloutFollower, TaskRunFollower
from fakes import FakeKubeClient


def _taskrun(client: FakeKubeClient, condition: dict, step: dict) -> None:
    client.put(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": "hello-build-x", "namespace": "ci"},
            "status": {"podName": "hello-build-x-pod", "conditions": [condition], "steps": [step]},
        }
    )


def test_a_build_shows_the_run_its_step_states_and_each_log_line_once():
    client, lines = FakeKubeClient(), []
    follower = TaskRunFollower(client, lines.append, "ci", "hello-build-x")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello-build-x-pod", "namespace": "ci"}}
    client.put({**pod, "logs": {"step-build-and-push": "\x1b[36mINFO\x1b[0m one\ntwo\n"}})
    running = {"type": "Succeeded", "status": "Unknown", "reason": "Running"}
    _taskrun(client, running, {"name": "build-and-push", "container": "step-build-and-push", "running": {}})
    follower.poll()
    follower.poll()  # nothing new: nothing printed again
    client.put({**pod, "logs": {"step-build-and-push": "INFO one\ntwo\nthree\nPushed hub/hello@sha256:1"}})
    done = {"type": "Succeeded", "status": "True", "reason": "Succeeded"}
    _taskrun(client, done, {"name": "build-and-push", "terminated": {"exitCode": 0, "reason": "Completed"}})
    follower.poll()
    follower.poll()
    assert lines == [
        "[hello-build-x] TaskRun ci/hello-build-x: Succeeded=Unknown (Running)",
        "[hello-build-x] step build-and-push: running",
        "[hello-build-x/build-and-push] INFO one",
        "[hello-build-x/build-and-push] two",
        "[hello-build-x] TaskRun ci/hello-build-x: Succeeded=True (Succeeded)",
        "[hello-build-x] step build-and-push: terminated (exit code 0, Completed)",
        "[hello-build-x/build-and-push] three",
        "[hello-build-x/build-and-push] Pushed hub/hello@sha256:1",
    ]
    assert client.writes == []


def test_a_rollout_shows_the_revision_conditions_pods_and_url():
    client, lines = FakeKubeClient(), []
    follower = RolloutFollower(client, lines.append, "default", "hello")
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "hello", "namespace": "default", "generation": 2},
        "status": {
            "observedGeneration": 1,  # the status still describes the last spec
            "latestCreatedRevisionName": "hello-00001",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    client.put(service)
    follower.poll()
    assert lines == ["[hello] Ready=True"]  # no revision, no URL: they would be the old ones
    client.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "hello-00002-deployment-a",
                "namespace": "default",
                "labels": {"serving.knative.dev/revision": "hello-00002"},
            },
            "status": {
                "containerStatuses": [{"name": "user-container", "state": {"waiting": {"reason": "ErrImagePull"}}}]
            },
        }
    )
    service["status"] = {
        "observedGeneration": 2,
        "latestCreatedRevisionName": "hello-00002",
        "latestReadyRevisionName": "hello-00002",
        "url": "http://hello.default.example.com",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    client.put(service)
    follower.poll()
    assert lines[1:] == [
        "[hello] rolling out revision hello-00002",
        "[hello] pod hello-00002-deployment-a: user-container waiting (ErrImagePull)",
        "[hello] ready: http://hello.default.example.com (revision hello-00002)",
    ]
