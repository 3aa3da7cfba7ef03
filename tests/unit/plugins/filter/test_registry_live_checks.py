"""The registry role's checks of what main.yml read before any write (the hub as it runs now and
Knative's config-features): plugins/filter/registry_storage_problems.py and
registry_feature_flag_problems.py, and the piece they added to _role_inputs (Ansible's bool).
"""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.filter import (
    registry_feature_flag_problems as flags,
)
from ansible_collections.knlab.serverless.plugins.filter import (
    registry_storage_problems as storage,
)
from ansible_collections.knlab.serverless.plugins.plugin_utils import _role_inputs as r

CLAIM_FLAG = "kubernetes.podspec-persistent-volume-claim"
WRITE_FLAG = "kubernetes.podspec-persistent-volume-write"
MOUNT = [{"name": "storage", "mountPath": "/var/lib/registry"}]


def hub(claim: str = "", env: list | None = None, mount_path: str = "/var/lib/registry") -> list[dict]:
    container: dict = {"name": "user-container", "env": env or []}
    spec: dict = {"containers": [container]}
    if claim:
        container["volumeMounts"] = [{"name": "storage", "mountPath": mount_path}]
        spec["volumes"] = [{"name": "storage", "persistentVolumeClaim": {"claimName": claim}}]
    return [{"kind": "Service", "spec": {"template": {"spec": spec}}}]


def storage_problems(live: list, **changes) -> list[str]:
    variables = {
        "registry_name": "hub",
        "registry_namespace": "default",
        "registry_persistence": True,
        "registry_pvc_name": "hub-data",
        "registry_allow_storage_change": False,
        "_registry_live_hub": live,
        "_registry_env": {"REGISTRY_STORAGE_DELETE_ENABLED": "true"},
        **changes,
    }
    return storage.registry_storage_problems(variables)


def test_the_filters_are_exported_under_their_names() -> None:
    assert storage.FilterModule().filters() == {"registry_storage_problems": storage.registry_storage_problems}
    assert flags.FilterModule().filters() == {"registry_feature_flag_problems": flags.registry_feature_flag_problems}


@pytest.mark.parametrize(
    ("live", "changes"),
    [
        ([], {}),  # no hub yet
        (hub(), {}),  # the images were in the pod: nothing to keep
        (hub("hub-data"), {}),  # the same claim
        (hub("other"), {"registry_allow_storage_change": "yes"}),  # the user's word
        (hub("hub-data", mount_path="/data"), {"registry_persistence": False}),  # a claim, not for the images
        (
            hub("", [{"name": "REGISTRY_STORAGE", "value": "s3"}]),
            {"registry_persistence": "no", "_registry_env": {"REGISTRY_STORAGE": "s3"}},
        ),
    ],
)
def test_a_run_that_keeps_the_images_passes(live: list, changes: dict) -> None:
    assert storage_problems(live, **changes) == []


def test_moving_the_hub_off_its_claim_is_refused_with_the_way_back() -> None:
    assert storage_problems(hub("hub-data"), registry_persistence=False) == [
        "the hub default/hub keeps its images on PersistentVolumeClaim hub-data; this run would move it into its"
        " pod only (no claim, registry_persistence is false), and the hub would start again without those images"
        " (apps pinned to them could no longer be pulled). Nothing was changed. Set"
        " registry_allow_storage_change=true to do it anyway (copy the images first if you need them), or keep"
        " registry_persistence=true and registry_pvc_name=hub-data."
    ]


def test_the_storage_env_is_compared_and_shown() -> None:
    live = hub("", [{"name": "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "value": "/x"}, {"name": "A", "value": "1"}])
    (found,) = storage_problems(live, _registry_env={"REGISTRY_STORAGE": "s3", "REGISTRY_STORAGE_DELETE_ENABLED": "1"})
    assert "keeps its images in its pod with REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x;" in found
    assert "would move it to PersistentVolumeClaim hub-data with REGISTRY_STORAGE=s3," in found
    assert found.endswith("or keep the storage settings in registry_env.")


def test_a_variable_without_a_value_counts_as_empty_and_a_null_one_is_not_set() -> None:
    live = hub("hub-data", [{"name": "REGISTRY_STORAGE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    assert storage_problems(live, _registry_env={"REGISTRY_STORAGE": ""}) == []
    assert storage_problems(hub("hub-data"), _registry_env={"REGISTRY_STORAGE": None}) == []


def test_a_boolean_env_value_is_compared_as_knative_service_sends_it() -> None:
    # knative_service sends true/false; str() said True, and every re-run would then have been refused.
    live = hub("hub-data", [{"name": "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "value": "true"}])
    assert storage_problems(live, _registry_env={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": True}) == []


def flag_problems(features: list, namespace: str = "knative-serving") -> list[str]:
    return flags.registry_feature_flag_problems(
        {"registry_knative_namespace": namespace, "_registry_features": features}
    )


def test_the_flags_pass_when_enabled_in_any_case() -> None:
    assert flag_problems([{"data": {CLAIM_FLAG: "Enabled", WRITE_FLAG: "enabled"}}]) == []


def test_a_missing_config_map_is_named() -> None:
    assert flag_problems([], "kn") == [
        "ConfigMap kn/config-features was not found, so the Knative PVC feature flags cannot be checked. Is Knative"
        " Serving installed in namespace kn (registry_knative_namespace)? Set registry_check_feature_flags=false to"
        " skip this check."
    ]


def test_the_flags_that_are_off_are_named_with_the_patch_that_enables_them() -> None:
    assert flag_problems([{"data": {CLAIM_FLAG: "enabled", WRITE_FLAG: "allowed"}}]) == [
        "registry_persistence needs Knative to allow writable PersistentVolumeClaims, but"
        f' {WRITE_FLAG} is not "enabled" in ConfigMap knative-serving/config-features. Enable it with: kubectl'
        " patch configmap config-features -n knative-serving --type merge -p"
        f""" '{{"data": {{"{WRITE_FLAG}": "enabled"}}}}' or run without persistence (registry_persistence=false)."""
    ]
    (found,) = flag_problems([{"data": None}])
    assert f"but {CLAIM_FLAG} and {WRITE_FLAG} are not" in found
    assert "Enable them with:" in found


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("Yes", True),
        ("on", True),
        ("1", True),
        (1, True),
        (1.0, True),
        (False, False),
        ("no", False),
        ("OFF", False),
        (0, False),
        ("maybe", False),
        (None, False),
        (["yes"], False),
    ],
)
def test_to_bool_is_ansibles_bool_filter(value, expected: bool) -> None:
    assert r.to_bool(value) is expected


S3_LIVE = [
    {"name": "REGISTRY_STORAGE", "value": "s3"},
    {"name": "REGISTRY_STORAGE_S3_REGIONENDPOINT", "value": "http://10.250.0.10:7070"},
    {"name": "REGISTRY_STORAGE_S3_BUCKET", "value": "hub"},
    {"name": "REGISTRY_HTTP_SECRET", "valueFrom": {"secretKeyRef": {"name": "hub-http-secret", "key": "secret"}}},
]
S3_ENV = {
    "REGISTRY_STORAGE_DELETE_ENABLED": "true",
    "REGISTRY_STORAGE": "s3",
    "REGISTRY_STORAGE_S3_REGIONENDPOINT": "http://10.250.0.10:7070",
    "REGISTRY_STORAGE_S3_BUCKET": "hub",
}


def test_a_hub_on_s3_may_run_again_with_the_same_bucket_but_not_move_to_another() -> None:
    assert storage_problems(hub("", S3_LIVE), registry_persistence=False, _registry_env=S3_ENV) == []
    (found,) = storage_problems(
        hub("", S3_LIVE), registry_persistence=False, _registry_env={**S3_ENV, "REGISTRY_STORAGE_S3_BUCKET": "other"}
    )
    assert "REGISTRY_STORAGE_S3_BUCKET=hub; this run would move it" in found
    assert found.endswith("or keep registry_storage=s3 with the same endpoint, bucket and root directory.")
    # Back to the pod's filesystem: the bucket's images would no longer be served.
    (found,) = storage_problems(hub("", S3_LIVE), registry_persistence=False)
    assert "keeps its images in its pod with REGISTRY_STORAGE=s3" in found
    # Off a claim onto s3 needs the user's word too: the images on the claim stay behind.
    (found,) = storage_problems(hub("hub-data"), registry_persistence=False, _registry_env=S3_ENV)
    assert found.startswith("the hub default/hub keeps its images on PersistentVolumeClaim hub-data;")
