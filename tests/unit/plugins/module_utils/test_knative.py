"""Knative Service options: validation, the desired object, quantities, readiness."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils._knative import (
    InvalidOption,
    align_quantities,
    desired_service,
    env_list,
    parse_quantity,
    readiness,
    validate,
)

BASE = {
    "name": "hello",
    "namespace": "default",
    "state": "present",
    "image": "hello:1",
    "wait_timeout": 300,
    "cluster_local": False,
}


def volume(**fields):
    base = {
        "name": "data",
        "mount_path": "/data",
        "read_only": None,
        "persistent_volume_claim": None,
        "config_map": None,
        "secret": None,
        "empty_dir": None,
    }
    return base | fields


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Hello"}, "name 'Hello' is not a valid Knative Service name"),
        ({"name": "a" * 64}, "is not a valid Knative Service name"),
        ({"name": "hello-"}, "is not a valid Knative Service name"),
        ({"name": "my.app"}, "is not a valid Knative Service name"),
        ({"namespace": "Demo"}, "namespace 'Demo' is not a valid DNS-1123 label"),
        ({"image": None}, "image is required when state is present"),
        ({"image": ""}, "image is required when state is present"),
        ({"min_scale": 5, "max_scale": 2}, "max_scale (2) is less than min_scale (5)"),
        ({"min_scale": -1}, "min_scale must be between 0 and 2147483647, got -1"),
        ({"max_scale": -3}, "max_scale must be between 0 and 2147483647"),
        ({"concurrency": -1}, "concurrency must be between 0 and 2147483647"),
        ({"timeout_seconds": 0}, "timeout_seconds must be at least 1; leave it out for Knative's default"),
        ({"timeout_seconds": -5}, "timeout_seconds must be between 1 and 2147483647"),
        ({"timeout_seconds": 2**31}, "timeout_seconds must be between 1 and 2147483647, got 2147483648"),
        ({"wait_timeout": 0}, "wait_timeout must be greater than 0"),
        ({"port": 8012}, "port 8012 is reserved by Knative"),
        ({"port": 9091}, "port 9091 is reserved"),
        ({"port": 8008}, "port 8008 is reserved"),
        ({"port": 0}, "port must be between 1 and 65535"),
        ({"port": 70000}, "port must be between 1 and 65535"),
        ({"env": {"PORT": "8080"}}, "env must not set PORT: Knative sets these itself"),
        ({"env": [{"name": "K_REVISION", "value": "x"}]}, "env must not set K_REVISION"),
        ({"env": [{"value": "x"}]}, "env[0] needs a name"),
        ({"env": [{"name": "A", "value": "1", "valueFrom": {}}]}, "needs exactly one of value or valueFrom"),
        ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "env sets A more than once"),
        ({"env": "A=1"}, "env must be a dict of name: value or a list of EnvVar dicts"),
        ({"volumes": [volume(mount_path="/", empty_dir={})]}, "mount_path '/' of volume 'data' is reserved"),
        ({"volumes": [volume(mount_path="/dev/log/", empty_dir={})]}, "is reserved by Knative"),
        ({"volumes": [volume(mount_path="data", empty_dir={})]}, "must be absolute"),
        ({"volumes": [volume(empty_dir={}), volume(empty_dir={})]}, "volume 'data' is listed more than once"),
        (
            {"volumes": [volume(empty_dir={}), volume(name="other", empty_dir={})]},
            "mount_path '/data' is used by more than one volume",
        ),
        ({"volumes": [volume()]}, "needs exactly one of"),
        ({"volumes": [volume(config_map="c", read_only=False)]}, "always mounts config_map volumes read-only"),
        ({"volumes": [volume(name="Data", empty_dir={})]}, "volume name 'Data' is not a valid DNS-1123 label"),
        ({"resources": {"requests": {"cpu": "lots"}, "limits": None}}, "'lots' is not a Kubernetes quantity"),
        ({"min_scale": 1, "annotations": {"autoscaling.knative.dev/minScale": "2"}}, "set either min_scale or"),
        ({"labels": {"networking.knative.dev/visibility": "cluster-local"}}, "use cluster_local instead"),
    ],
)
def test_invalid_options_are_refused_with_one_line(changes, message):
    with pytest.raises(InvalidOption) as caught:
        validate(BASE | changes)
    assert message in caught.value.msg
    assert "\n" not in caught.value.msg


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"min_scale": 3, "max_scale": 0},  # max-scale 0 is "no bound"
        {"min_scale": 2, "max_scale": 2},
        {"port": 5000, "timeout_seconds": 600, "concurrency": 0},
        {"state": "absent", "image": None, "min_scale": 9, "max_scale": 1},  # absent ignores the rest
        {"volumes": [volume(persistent_volume_claim="claim")]},
        {"resources": {"requests": {"cpu": 0.5, "memory": "1Gi"}, "limits": None}},
    ],
)
def test_valid_options_pass(changes):
    validate(BASE | changes)


def test_env_dict_and_list_forms():
    # valueFrom is owned as absent, so a plain value replaces a valueFrom set earlier; an empty
    # value is owned as absent too (EnvVar.value is omitempty: the server never stores "").
    assert env_list({"A": 1, "B": True, "C": None, "D": ""}) == [
        {"name": "A", "value": "1", "valueFrom": None},
        {"name": "B", "value": "true", "valueFrom": None},
        {"name": "C", "value": None, "valueFrom": None},
        {"name": "D", "value": None, "valueFrom": None},
    ]
    from_secret = {"secretKeyRef": {"name": "s", "key": "k"}}
    assert env_list([{"name": "A", "valueFrom": from_secret}]) == [
        {"name": "A", "value": None, "valueFrom": from_secret}
    ]


def test_desired_service_sets_only_what_the_options_set():
    desired = desired_service(BASE)
    assert desired["spec"] == {"template": {"spec": {"containers": [{"image": "hello:1"}]}}}
    assert desired["metadata"]["labels"] == {"networking.knative.dev/visibility": None}


def test_desired_service_with_everything():
    params = BASE | {
        "command": ["/app"],
        "args": ["-v"],
        "env": {"A": "1"},
        "port": 5000,
        "min_scale": 1,
        "max_scale": 1,
        "concurrency": 10,
        "timeout_seconds": 60,
        "annotations": {"serving.knative.dev/progress-deadline": "60s"},
        "labels": {"app": "hub"},
        "service_account": "builder",
        "image_pull_secrets": ["pull"],
        "volumes": [volume(persistent_volume_claim="hub-data", read_only=True)],
        "resources": {"requests": {"cpu": 1}, "limits": None},
        "cluster_local": True,
    }
    desired = desired_service(params)
    template = desired["spec"]["template"]
    assert desired["metadata"]["labels"] == {"app": "hub", "networking.knative.dev/visibility": "cluster-local"}
    assert template["metadata"]["annotations"] == {
        "serving.knative.dev/progress-deadline": "60s",
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/minScale": None,
        "autoscaling.knative.dev/max-scale": "1",
        "autoscaling.knative.dev/maxScale": None,
    }
    spec = template["spec"]
    assert (spec["serviceAccountName"], spec["containerConcurrency"], spec["timeoutSeconds"]) == ("builder", 10, 60)
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    assert spec["volumes"] == [
        {
            "name": "data",
            "persistentVolumeClaim": {"claimName": "hub-data", "readOnly": True},
            "configMap": None,
            "secret": None,
            "emptyDir": None,
        }
    ]
    (container,) = spec["containers"]
    assert container == {
        "image": "hello:1",
        "command": ["/app"],
        "args": ["-v"],
        "env": [{"name": "A", "value": "1", "valueFrom": None}],
        "ports": [{"containerPort": 5000}],
        "resources": {"requests": {"cpu": "1"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    }


def test_empty_lists_and_strings_are_owned_as_absent():
    # The webhook's Go round trip never stores [] or an omitempty "": the desired object says
    # "must be absent" (None) instead, which a live Service without the key already satisfies and
    # which makes the merge patch delete the key when the live Service has items.
    params = BASE | {
        "command": [],
        "args": [],
        "env": {},
        "service_account": "",
        "image_pull_secrets": [],
        "volumes": [],
    }
    spec = desired_service(params)["spec"]["template"]["spec"]
    assert (spec["imagePullSecrets"], spec["volumes"], spec["serviceAccountName"]) == (None, None, None)
    assert spec["containers"] == [
        {"image": "hello:1", "command": None, "args": None, "env": None, "volumeMounts": None}
    ]


def test_volume_sources():
    params = BASE | {
        "volumes": [
            volume(name="a", mount_path="/a", config_map="cm"),
            volume(name="b", mount_path="/b", secret="sec"),
            volume(name="c", mount_path="/c", empty_dir={"medium": "Memory", "size_limit": "64Mi"}),
            volume(name="d", mount_path="/d", empty_dir={"medium": "", "size_limit": None}),
        ]
    }
    volumes = desired_service(params)["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["configMap"] == {"name": "cm"}
    assert volumes[1]["secret"] == {"secretName": "sec"}
    assert volumes[2]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert volumes[3]["emptyDir"] == {}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("1", Decimal(1)),
        (2, Decimal(2)),
        ("0.5", Decimal("0.5")),
        ("128Mi", Decimal(128 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("lots", None),
        ("1 Gi", None),
        (True, None),
    ],
)
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


def test_align_quantities_takes_the_servers_spelling_of_an_equal_value():
    desired = desired_service(BASE | {"resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": None}})
    live = {
        "spec": {"template": {"spec": {"containers": [{"resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}}
    }
    align_quantities(desired, live)
    assert desired["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "1",
        "memory": "1Gi",
    }


def ksvc(generation, observed, *conditions):
    return {
        "metadata": {"generation": generation},
        "status": {"observedGeneration": observed, "conditions": list(conditions)},
    }


def cond(kind, status, reason="", message=""):
    return {"type": kind, "status": status, "reason": reason, "message": message}


def test_readiness_waits_for_the_current_generation():
    assert readiness(ksvc(2, 1, cond("Ready", "True"))) is None
    assert readiness(ksvc(2, 2, cond("Ready", "Unknown", "RevisionMissing"))) is None
    assert readiness(ksvc(2, 2)) is None
    verdict = readiness(ksvc(2, 2, cond("Ready", "True")))
    assert verdict.done and not verdict.failed


def test_readiness_failure_carries_reason_and_the_detail_of_the_sub_conditions():
    obj = ksvc(
        2,
        2,
        cond("Ready", "False", "RevisionFailed", 'Revision "hello-00002" failed with message: Container failed.'),
        cond(
            "ConfigurationsReady",
            "False",
            "RevisionFailed",
            'Revision "hello-00002" failed with message: Container failed.',
        ),
        cond("RoutesReady", "False", "RevisionMissing", 'Configuration "hello" does not have any ready Revision.'),
    )
    verdict = readiness(obj)
    assert verdict.failed and not verdict.done
    assert verdict.reason == "RevisionFailed"
    assert verdict.message == (
        'Revision "hello-00002" failed with message: Container failed.; '
        'RoutesReady=False (RevisionMissing: Configuration "hello" does not have any ready Revision.)'
    )


def test_readiness_of_a_deleted_service_is_a_failure():
    verdict = readiness(None)
    assert verdict.failed and verdict.reason == "Deleted"
