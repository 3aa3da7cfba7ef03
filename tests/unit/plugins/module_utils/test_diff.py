"""Owned-field comparison, including against a Service as Knative's defaulting webhook returns it."""

from __future__ import annotations

import copy

from ansible_collections.knlab.serverless.plugins.module_utils._diff import (
    merge_patch,
    overlay,
    owned_diff,
    project,
    same,
    without_none,
)
from ansible_collections.knlab.serverless.plugins.module_utils._knative import desired_service

PARAMS = {
    "name": "hello",
    "namespace": "demo",
    "state": "present",
    "image": "hub.demo.svc.cluster.local/hello@sha256:" + "ab" * 32,
    "command": None,
    "args": ["--greeting", "hi"],
    "env": {"TARGET": "World", "DEBUG": True},
    "port": 8080,
    "min_scale": 1,
    "max_scale": 3,
    "concurrency": None,
    "timeout_seconds": None,
    "annotations": {"autoscaling.knative.dev/target": 10},
    "labels": {"app": "hello"},
    "service_account": None,
    "image_pull_secrets": ["pull"],
    "volumes": [
        {
            "name": "config",
            "mount_path": "/etc/hello",
            "read_only": None,
            "config_map": "hello-config",
            "secret": None,
            "persistent_volume_claim": None,
            "empty_dir": None,
        },
        {
            "name": "scratch",
            "mount_path": "/tmp/scratch",
            "read_only": None,
            "config_map": None,
            "secret": None,
            "persistent_volume_claim": None,
            "empty_dir": {"medium": None, "size_limit": None},
        },
    ],
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": None},
    "cluster_local": False,
    "wait": True,
    "wait_timeout": 300,
}

# The object as the API server returns it after Knative's webhook defaulted it (FACTS 1.5) and the
# controller reported on it: everything here that the options did not set must be ignored.
DEFAULTED = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {
        "name": "hello",
        "namespace": "demo",
        "uid": "0d9c9f1e-6a43-4bd5-9d55-1b4c2f3e5a77",
        "resourceVersion": "48213",
        "generation": 1,
        "creationTimestamp": "2026-08-01T10:00:00Z",
        "labels": {"app": "hello", "team": "web"},
        "annotations": {
            "serving.knative.dev/creator": "kubernetes-admin",
            "serving.knative.dev/lastModifier": "kubernetes-admin",
        },
    },
    "spec": {
        "template": {
            "metadata": {
                "creationTimestamp": None,
                "annotations": {
                    "autoscaling.knative.dev/target": "10",
                    "autoscaling.knative.dev/min-scale": "1",
                    "autoscaling.knative.dev/max-scale": "3",
                },
            },
            "spec": {
                "containerConcurrency": 0,
                "timeoutSeconds": 300,
                "enableServiceLinks": False,
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [
                    {
                        "name": "user-container",
                        "image": "hub.demo.svc.cluster.local/hello@sha256:" + "ab" * 32,
                        "args": ["--greeting", "hi"],
                        "env": [{"name": "TARGET", "value": "World"}, {"name": "DEBUG", "value": "true"}],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        "readinessProbe": {"tcpSocket": {"port": 0}, "successThreshold": 1},
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/hello", "readOnly": True},
                            {"name": "scratch", "mountPath": "/tmp/scratch"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "config", "configMap": {"name": "hello-config"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            },
        },
        "traffic": [{"latestRevision": True, "percent": 100}],
    },
    "status": {
        "observedGeneration": 1,
        "url": "http://hello.demo.example.com",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def test_defaulted_service_is_unchanged():
    changed, before, after = owned_diff(desired_service(PARAMS), copy.deepcopy(DEFAULTED))
    assert not changed
    assert before == after
    # The diff shows owned fields only: none of the webhook's additions.
    container = before["spec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in container
    assert "name" not in container
    assert "creator" not in str(before)


def test_an_owned_field_that_differs_is_a_change_and_shows_in_the_diff():
    live = copy.deepcopy(DEFAULTED)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "old@sha256:" + "cd" * 32
    changed, before, after = owned_diff(desired_service(PARAMS), live)
    assert changed
    assert before["spec"]["template"]["spec"]["containers"][0]["image"].startswith("old@")
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == PARAMS["image"]


def test_named_lists_compare_by_name_not_order():
    live = copy.deepcopy(DEFAULTED)
    live["spec"]["template"]["spec"]["containers"][0]["env"].reverse()
    live["spec"]["template"]["spec"]["volumes"].reverse()
    assert not owned_diff(desired_service(PARAMS), live)[0]


def test_an_extra_item_in_an_owned_list_is_a_change():
    live = copy.deepcopy(DEFAULTED)
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "OLD", "value": "1"})
    changed, before, after = owned_diff(desired_service(PARAMS), live)
    assert changed
    assert {"name": "OLD", "value": "1"} in before["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OLD", "value": "1"} not in after["spec"]["template"]["spec"]["containers"][0]["env"]


def test_none_means_absent():
    assert same({"a": None}, {})
    assert not same({"a": None}, {"a": "x"})
    assert same({"a": {"b": None}}, {"a": {}})


def test_empty_is_absent_after_the_go_round_trip():
    # Knative's webhook drops empty lists, maps and omitempty strings from what it stores.
    assert same({"a": []}, {})
    assert same({"a": None}, {"a": []})
    assert same({"a": None}, {"a": ""})
    assert same({"labels": {"x": None}}, {})  # the empty labels map was dropped
    assert not same({"labels": {"x": "1"}}, {})
    assert not same({"a": [{"name": "x"}]}, {})
    assert not same({"a": None}, {"a": [{"name": "x"}]})
    assert not same({"labels": {"x": ""}}, {"labels": {}})  # map values keep empty strings


def test_a_list_owned_as_absent_is_deleted_by_the_merge_patch():
    live = copy.deepcopy(DEFAULTED)
    desired = desired_service(PARAMS | {"image_pull_secrets": [], "volumes": []})
    changed, before, after = owned_diff(desired, live)
    assert changed
    assert before["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "pull"}]
    assert "imagePullSecrets" not in after["spec"]["template"]["spec"]
    spec = merge_patch(desired, live)["spec"]["template"]["spec"]
    assert (spec["imagePullSecrets"], spec["volumes"]) == (None, None)  # null deletes the key
    assert "volumeMounts" not in spec["containers"][0]


def test_old_camel_case_scale_key_is_a_change_and_shows_as_removed():
    live = copy.deepcopy(DEFAULTED)
    live["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/minScale"] = "1"
    changed, before, after = owned_diff(desired_service(PARAMS), live)
    assert changed
    assert before["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/minScale"] == "1"
    assert "autoscaling.knative.dev/minScale" not in after["spec"]["template"]["metadata"]["annotations"]


def test_types_are_not_coerced():
    assert not same({"a": "1"}, {"a": 1})
    assert not same({"a": True}, {"a": 1})
    assert same({"a": 1}, {"a": 1})


def test_absent_object_diff():
    changed, before, after = owned_diff({"a": {"b": None, "c": 1}}, None)
    assert (changed, before, after) == (True, {}, {"a": {"c": 1}})


def test_overlay_keeps_defaults_inside_list_items_and_drops_nones():
    live = copy.deepcopy(DEFAULTED)["spec"]["template"]
    desired = desired_service(PARAMS | {"image": "new"})["spec"]["template"]
    written = overlay(desired, live)
    container = written["spec"]["containers"][0]
    assert container["image"] == "new"
    assert container["name"] == "user-container"
    assert container["readinessProbe"] == {"tcpSocket": {"port": 0}, "successThreshold": 1}
    assert written["spec"]["volumes"][0] == {"name": "config", "configMap": {"name": "hello-config"}}
    assert written["spec"] == without_none(written["spec"])  # no null to send inside a list


def test_overlay_drops_list_items_the_user_no_longer_lists():
    assert overlay([{"name": "a", "value": "1"}], [{"name": "a", "value": "0"}, {"name": "b", "value": "2"}]) == [
        {"name": "a", "value": "1"}
    ]
    assert overlay(["x"], ["y", "z"]) == ["x"]


def test_merge_patch_sends_maps_by_key_and_lists_whole():
    live = copy.deepcopy(DEFAULTED)
    live["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/maxScale"] = "9"
    patch = merge_patch(desired_service(PARAMS), live)
    annotations = patch["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/maxScale"] is None  # deletes the old spelling
    assert patch["metadata"]["labels"] == {"app": "hello", "networking.knative.dev/visibility": None}
    containers = patch["spec"]["template"]["spec"]["containers"]
    assert containers[0]["name"] == "user-container"  # lists carry the live defaults along
    assert "traffic" not in patch["spec"]


def test_project_keeps_unowned_extra_named_items():
    assert project([{"name": "a", "x": 1}], [{"name": "a", "x": 2, "y": 3}, {"name": "b"}]) == [
        {"name": "a", "x": 2},
        {"name": "b"},
    ]
