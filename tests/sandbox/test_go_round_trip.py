"""Typed objects come back as a Go round trip leaves them: empty `omitempty` fields are dropped.

A real API server decodes built-in kinds into Go structs (and the Knative and Tekton webhooks
round-trip theirs), so `volumes: []` or `env: [{name: E, value: ""}]` come back without the empty
parts. A client that sends them must see that, or it is "idempotent" here and not on a cluster.
Pointers and fields without `omitempty` keep their zero value.
"""

from __future__ import annotations

from conftest import Sandbox
from knlab_sandbox import kinds
from knlab_sandbox.resources import omit_empty

POD_SPEC = kinds.lookup("v1", "Pod").schema["properties"]["spec"]


def test_pod_drops_empty_omitempty_fields_and_keeps_pointers(sandbox: Sandbox, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "empties", "labels": {}, "annotations": {}},
        "spec": {
            "volumes": [],
            "imagePullSecrets": [],
            "nodeSelector": {},
            "hostNetwork": False,
            "terminationGracePeriodSeconds": 0,  # *int64: a pointer to 0 stays
            "automountServiceAccountToken": False,  # *bool
            "containers": [
                {
                    "name": "app",
                    "image": "127.0.0.1:5000/app:v1",
                    "env": [{"name": "E", "value": ""}, {"name": "F", "value": "f"}],
                    "ports": [],
                    "args": [""],  # list items are values, never omitted
                    "command": [],
                    "workingDir": "",
                    "volumeMounts": [],
                    "resources": {"limits": {}, "requests": {}},
                    "stdin": False,
                    "readinessProbe": {"tcpSocket": {"port": 0}},  # no omitempty on the port
                }
            ],
        },
    }
    status, _, created = sandbox.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
    assert status == 201, created
    spec = created["spec"]
    for gone in ("volumes", "imagePullSecrets", "nodeSelector", "hostNetwork"):
        assert gone not in spec, gone
    assert "labels" not in created["metadata"] and "annotations" not in created["metadata"]
    assert spec["terminationGracePeriodSeconds"] == 0 and spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]
    assert container["env"] == [{"name": "E"}, {"name": "F", "value": "f"}]
    for gone in ("ports", "command", "workingDir", "volumeMounts", "stdin"):
        assert gone not in container, gone
    assert container["args"] == [""]
    assert container["resources"] == {}  # a struct: empty, but there
    assert container["readinessProbe"] == {"tcpSocket": {"port": 0}}
    _, _, read = sandbox.request("GET", f"/api/v1/namespaces/{namespace}/pods/empties")
    assert read["spec"] == spec


def test_patching_in_an_empty_list_changes_nothing(sandbox: Sandbox, namespace: str) -> None:
    """What makes a module that sends `imagePullSecrets: []` change on every run on a real cluster."""
    base = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    sandbox.request("POST", base, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}})
    _, _, before = sandbox.request("GET", f"{base}/robot")
    headers = {"Content-Type": "application/merge-patch+json"}
    status, _, after = sandbox.request("PATCH", f"{base}/robot", {"imagePullSecrets": []}, headers=headers)
    assert status == 200
    assert "imagePullSecrets" not in after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_configmap_empty_data_is_dropped_and_immutable_false_kept(sandbox: Sandbox, namespace: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e"}, "data": {}, "immutable": False}
    status, _, created = sandbox.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", cm)
    assert status == 201
    assert "data" not in created and created["immutable"] is False


def test_knative_service_template_goes_through_the_webhook_round_trip(sandbox: Sandbox, namespace: str) -> None:
    ksvc = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "empties"},
        "spec": {
            "template": {
                "spec": {
                    "imagePullSecrets": [],
                    "volumes": [],
                    "containerConcurrency": 0,  # *int64
                    "containers": [
                        {
                            "image": "127.0.0.1:5000/app:v1",
                            "env": [],
                            "ports": [],
                            "args": [],
                            "command": [],
                            "envFrom": [],
                            "volumeMounts": [],
                        }
                    ],
                }
            },
            "traffic": [],
        },
    }
    path = f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services"
    status, _, created = sandbox.request("POST", path, ksvc)
    assert status == 201, created
    template_spec = created["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in template_spec and "volumes" not in template_spec
    assert template_spec["containerConcurrency"] == 0
    container = template_spec["containers"][0]
    for gone in ("env", "ports", "args", "command", "envFrom", "volumeMounts"):
        assert gone not in container, gone
    # The webhook's own defaults survive: the probe port has no omitempty (FACTS §1.5).
    assert container["readinessProbe"] == {"successThreshold": 1, "tcpSocket": {"port": 0}}
    assert created["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    sandbox.request("DELETE", f"{path}/empties")


def test_tekton_task_steps_drop_empty_lists_and_values(sandbox: Sandbox, namespace: str) -> None:
    task = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": {"name": "empties"},
        "spec": {
            "params": [],
            "workspaces": [],
            "steps": [
                {
                    "name": "s",
                    "image": "busybox",
                    "args": [],
                    "command": [],
                    "env": [{"name": "E", "value": ""}],
                    "script": "",
                }
            ],
        },
    }
    status, _, created = sandbox.request("POST", f"/apis/tekton.dev/v1/namespaces/{namespace}/tasks", task)
    assert status == 201, created
    assert "params" not in created["spec"] and "workspaces" not in created["spec"]
    step = created["spec"]["steps"][0]
    assert step["env"] == [{"name": "E"}]
    for gone in ("args", "command", "script"):
        assert gone not in step, gone


def test_null_means_absent_unless_the_field_is_nullable() -> None:
    template_meta = kinds.REVISION_TEMPLATE
    assert omit_empty(template_meta, {"metadata": {"creationTimestamp": None, "name": None}}) == {
        "metadata": {"creationTimestamp": None}  # metav1.Time serialises its zero value as null
    }
    assert omit_empty(POD_SPEC, {"containers": [], "hostname": None, "priority": 0}) == {
        "containers": [],  # no omitempty
        "priority": 0,  # *int32
    }
