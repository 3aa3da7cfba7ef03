"""What real Tekton writes when its controller fails a run, and how tekton_taskrun_wait reads it.

Tekton's failTaskRun -> terminateStepsInPod marks every step still running or waiting as
terminated with exit code 1 and the run's reason (both as the container reason and as the step's
terminationReason), and deletes the pod. The module must report the controller's reason, not
"exit code 1", and explain the missing log by it (issue 8 item 3).
"""

from __future__ import annotations

import shutil
import uuid

import pytest
from conftest import BIN, ROOT, Cluster
from knlab_cluster.settings import Paths

pytestmark = pytest.mark.timeout(900)

NAMESPACE = "knlab-taskruns"


@pytest.fixture(autouse=True, scope="module")
def namespace(cluster: Cluster):
    with cluster.own_namespace(NAMESPACE):
        yield


def _run(cluster: Cluster, prefix: str, step: dict, timeout: str = "10m") -> dict:
    started = cluster.module(
        "tekton_taskrun",
        generate_name=f"{prefix}-",
        namespace=NAMESPACE,
        timeout=timeout,
        labels={"knlab.test": "taskrun-failures"},
        idempotency_key=uuid.uuid4().hex,
        task_spec={"steps": [step]},
    )
    assert started.get("created"), started
    return cluster.module("tekton_taskrun_wait", name=started["name"], namespace=NAMESPACE, timeout=600)


def test_a_missing_step_image_is_reported_as_tekton_stopping_the_step(cluster: Cluster) -> None:
    image = "docker.io/knlab/no-such-image:v1"
    result = _run(cluster, "pull-fails", {"name": "main", "image": image, "command": ["true"]})
    assert result["failed"] is True
    assert result["reason"] == "TaskRunImagePullFailed", result["msg"]
    [step] = result["steps"]
    # What the real cluster wrote: exit code 1 and the run's reason, not the step's own exit.
    assert (step["state"], step["exit_code"], step["termination_reason"]) == (
        "terminated",
        1,
        "TaskRunImagePullFailed",
    )
    assert result["exit_code"] is None
    assert "stopped by Tekton: a step image could not be pulled" in result["msg"]
    assert "exit code 1" not in result["msg"]


def test_a_timeout_is_reported_as_tekton_stopping_the_step(cluster: Cluster) -> None:
    step = {"name": "slow", "image": cluster.base_image, "command": ["sleep", "300"]}
    result = _run(cluster, "too-slow", step, timeout="20s")
    assert result["failed"] is True
    assert result["reason"] == "TaskRunTimeout", result["msg"]
    [summary] = result["steps"]
    assert (summary["exit_code"], summary["termination_reason"]) == (1, "TaskRunTimeout")
    assert result["exit_code"] is None
    assert "stopped by Tekton: the run timed out" in result["msg"]
    # Tekton deletes the pod; until its grace period ends the log may still be readable (and
    # `sleep` wrote nothing). Once it is gone, the reason is the timeout, not a cancel.
    assert result["log_error"] is None or "Tekton deleted it because the run timed out" in result["log_error"]


def test_the_build_role_waits_longer_than_the_run_may_last(cluster: Cluster, tmp_path) -> None:
    # Issue 8 item 5: with build_wait_timeout no longer than build_timeout, the user used to see
    # the module's own timeout (or a run whose pod was gone) instead of Tekton's verdict. The role
    # waits build_timeout + 60 s at least, so the TaskRun's TaskRunTimeout is what the play reports.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "playbooks" / "files" / "hello", source)
    (source / "marker.txt").write_text(uuid.uuid4().hex)  # a source no earlier run built
    argv = [
        "env",
        *(f"{k}={v}" for k, v in cluster.env.items()),
        f"DEMO_NAMESPACE={NAMESPACE}",
        f"K8S_AUTH_KUBECONFIG={Paths.from_env().inner_kubeconfig}",
        f"ANSIBLE_COLLECTIONS_PATH={ROOT / '.build' / 'collections'}",
        "ANSIBLE_NOCOLOR=1",
        "ANSIBLE_LOCALHOST_WARNING=false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING=false",
        str(BIN / "ansible-playbook"),
        str(ROOT / "tests" / "conformance" / "playbooks" / "build.yml"),
        *("-e", "build_name=too-short", "-e", f"build_source_dir={source}"),
        *("-e", "build_push_host=hub.default.svc.cluster.local", "-e", "build_pull_host=hub.default.svc.cluster.local"),
        *("-e", "build_timeout=3s", "-e", "build_wait_timeout=3"),
    ]
    output = cluster.exec(*argv, check=False, timeout=300)
    assert "failed=1" in output, output[-3000:]
    assert "TaskRunTimeout" in output, output[-3000:]
    assert "Timed out after" not in output, output[-3000:]
