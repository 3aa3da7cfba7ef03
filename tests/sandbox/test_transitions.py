"""The terminal-status log (transitions.py): written when a status write makes an object done."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from knlab_sandbox import admission, kinds
from knlab_sandbox.resources import ResourceAPI
from knlab_sandbox.settings import Settings
from knlab_sandbox.store import Store
from knlab_sandbox.transitions import terminal_state

TASKRUN = kinds.lookup("tekton.dev/v1", "TaskRun")
KSVC = kinds.lookup("serving.knative.dev/v1", "Service")


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ResourceAPI:
    # No webhooks: the objects below are written as a controller would, without admission rules.
    monkeypatch.setattr(admission, "_REGISTRY", {})
    settings = Settings(tmp_path)
    resource_api = ResourceAPI(Store(settings.db_path), settings)
    await resource_api.seed_registered()
    return resource_api


def lines(api: ResourceAPI) -> list[dict]:
    path = api.settings.transitions_log_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def write_status(api: ResourceAPI, rt: kinds.ResourceType, name: str, status: dict) -> dict:
    current = await api.get(rt, name, namespace="default")
    current["status"] = status
    return await api.update(rt, current, subresource="status")


def condition(kind: str, value: str, reason: str = "") -> dict:
    return {"type": kind, "status": value, "reason": reason}


async def test_taskrun_succeeded_is_logged_once_with_the_commit_time(api: ResourceAPI) -> None:
    await api.create(TASKRUN, {"metadata": {"name": "tr"}, "spec": {"taskRef": {"name": "t"}}}, namespace="default")
    await write_status(api, TASKRUN, "tr", {"conditions": [condition("Succeeded", "Unknown", "Running")]})
    assert lines(api) == []

    before = time.time()
    done = await write_status(api, TASKRUN, "tr", {"conditions": [condition("Succeeded", "True", "Succeeded")]})
    after = time.time()
    # A later write that keeps it done (e.g. adding results) is not a new terminal moment.
    await write_status(api, TASKRUN, "tr", {"conditions": [condition("Succeeded", "True", "Succeeded")], "results": []})

    [entry] = lines(api)
    assert before <= entry["time"] <= after
    assert (entry["kind"], entry["name"], entry["namespace"]) == ("TaskRun", "tr", "default")
    assert (entry["condition"], entry["status"], entry["reason"]) == ("Succeeded", "True", "Succeeded")
    assert entry["resourceVersion"] == done["metadata"]["resourceVersion"]


async def test_knative_ready_counts_only_for_the_current_generation(api: ResourceAPI) -> None:
    body = {"metadata": {"name": "app"}, "spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}}
    await api.create(KSVC, body, namespace="default")
    ready = [condition("Ready", "True")]
    await write_status(api, KSVC, "app", {"observedGeneration": 1, "conditions": ready})
    assert [e["generation"] for e in lines(api)] == [1]

    current = await api.get(KSVC, "app", namespace="default")
    current["spec"]["template"]["spec"]["containers"][0]["image"] = "b"
    await api.update(KSVC, current)  # generation 2; the stored Ready is generation 1's
    await write_status(api, KSVC, "app", {"observedGeneration": 1, "conditions": ready})
    assert len(lines(api)) == 1
    await write_status(api, KSVC, "app", {"observedGeneration": 2, "conditions": [condition("Ready", "False", "X")]})
    assert [(e["generation"], e["status"], e["reason"]) for e in lines(api)] == [(1, "True", ""), (2, "False", "X")]


def test_terminal_state_reads_the_top_level_condition() -> None:
    taskrun = {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "status": {"conditions": [condition("Ready", "True")]}}
    assert terminal_state(taskrun) is None  # a TaskRun is done by Succeeded, not Ready
    assert terminal_state(None) is None
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "status": {"conditions": [condition("Ready", "False")]}}
    assert terminal_state(pod) == (0, "False", "")
