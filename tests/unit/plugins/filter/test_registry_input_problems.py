"""The registry role's input checks (plugins/filter/registry_input_problems.py).

The checks were one Jinja expression; the Python keeps its judgement and its sentences. The pieces
it is built from (plugins/plugin_utils/_role_inputs.py) are pinned in test_app_input_problems.py.
`make badinput` runs every generated bad value through the role.
"""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.filter.registry_input_problems import (
    FilterModule,
    registry_input_problems,
)

VALID = {
    "registry_name": "hub",
    "registry_namespace": "default",
    "registry_image": "docker.io/library/registry:2",
    "registry_port": 5000,
    "registry_cluster_local": False,
    "registry_env": {},
    "registry_annotations": {},
    "registry_labels": {},
    "registry_wait_timeout": 300,
    "registry_persistence": False,
    "registry_pvc_name": "hub-data",
    "registry_pvc_create": True,
    "registry_pvc_size": "1Gi",
    "registry_pvc_storage_class": "",
    "registry_pvc_access_modes": ["ReadWriteOnce"],
    "registry_check_feature_flags": True,
    "registry_allow_storage_change": False,
    "registry_knative_namespace": "knative-serving",
    "registry_auth_secret": "",
    "registry_auth_secret_key": "htpasswd",
    "registry_auth_realm": "Registry Realm",
    "registry_push_host_override": "",
    "registry_pull_host_override": "",
    "registry_storage": "filesystem",
    "registry_s3_endpoint": "",
    "registry_s3_bucket": "",
    "registry_s3_region": "us-east-1",
    "registry_s3_credentials_secret": "",
    "registry_s3_access_key_item": "access_key",
    "registry_s3_secret_key_item": "secret_key",
    "registry_s3_force_path_style": True,
    "registry_s3_skip_verify": False,
    "registry_s3_redirect": False,
    "registry_s3_root_directory": "",
    "registry_http_secret": "hub-http-secret",
    "registry_min_scale": 1,
    "registry_max_scale": 1,
    "registry_autoscaling_target": 0,
    "registry_autoscaling_metric": "",
    "_registry_owned_labels": {
        "app.kubernetes.io/managed-by": "knlab.serverless",
        "serverless.knlab.io/registry": "hub",
    },
}


def problems(**changes) -> list[str]:
    return registry_input_problems({**VALID, **changes})


def test_the_filter_is_exported_under_its_name() -> None:
    assert FilterModule().filters() == {"registry_input_problems": registry_input_problems}


def test_valid_settings_have_no_problem() -> None:
    assert problems() == []
    assert (
        problems(
            registry_port="6000",
            registry_cluster_local="yes",
            registry_env={"REGISTRY_HTTP_ADDR": ":6000", "A.b-c": 1, "FLAG": True, "UNSET": None},
            registry_annotations={"example.com/note": "x", "n": 1.5},
            registry_labels={"tier": "infra", "n": 3, "empty": ""},
            registry_wait_timeout="0600",
            registry_persistence="True",
            registry_pvc_size="500M",
            registry_pvc_storage_class="local-path",
            registry_pvc_access_modes=["ReadOnlyMany", "ReadWriteMany"],
            registry_auth_secret="hub-auth",
            registry_auth_secret_key="users.htpasswd",
            registry_push_host_override="[::1]:5000",
            registry_pull_host_override="127.0.0.1:30500",
            registry_image=f"registry.example:5000/library/registry:2@sha256:{'0' * 64}",
        )
        == []
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"registry_name": ["hub"]}, 'registry_name must be a string, got ["hub"]'),
        ({"registry_name": ""}, "registry_name must not be empty"),
        ({"registry_name": "a" * 300}, "registry_name is 300 characters long; at most 253 are allowed"),
        ({"registry_name": "hub\n"}, "registry_name must not contain control characters (newline, tab, NUL, ...)"),
        (
            {"registry_name": "1hub"},
            'registry_name must be a DNS-1035 label (at most 63 lowercase letters, digits and "-"',
        ),
        ({"registry_namespace": "a.b"}, "registry_namespace must be a DNS-1123 label"),
        (
            {"registry_image": "hub/Hello"},
            "registry_image must be an image reference ([host[:port]/]path[:tag][@digest]",
        ),
        ({"registry_image": "a" * 513}, "registry_image is 513 characters long; at most 512 are allowed"),
        ({"registry_port": 0}, "registry_port must be an integer from 1 to 65535, got 0"),
        ({"registry_port": "+5000"}, 'registry_port must be an integer from 1 to 65535, got "+5000"'),
        ({"registry_port": True}, "registry_port must be an integer from 1 to 65535, got true"),
        (
            {"registry_port": "8012"},
            "registry_port 8012 is reserved by Knative (its queue-proxy and profiling ports: 8008,",
        ),
        ({"registry_cluster_local": "maybe"}, 'registry_cluster_local must be a boolean (true or false), got "maybe"'),
        ({"registry_env": ["A=1"]}, 'registry_env must be a dict of variable name: value, got ["A=1"]'),
        ({"registry_env": {"1BAD": "x"}}, 'registry_env keys must be environment variable names (letters, digits, "_"'),
        ({"registry_env": {"A": ["x"]}}, "registry_env values must be strings, numbers or booleans (or null), got"),
        ({"registry_env": {"K_SERVICE": "x", "PORT": "1"}}, "registry_env must not set K_SERVICE, PORT: Knative sets"),
        (
            {"registry_env": {"REGISTRY_HTTP_ADDR": ":6000"}},
            'registry_env must not set REGISTRY_HTTP_ADDR to anything but ":5000", got ":6000": set registry_port',
        ),
        ({"registry_annotations": "x"}, 'registry_annotations must be a dict of key: value, got "x"'),
        (
            {"registry_annotations": {"bad key!": "v"}},
            "registry_annotations keys must be [prefix/]name (an optional DNS",
        ),
        (
            {"registry_annotations": {"k": None}},
            'registry_annotations values must be strings, numbers or booleans, got {"k"',
        ),
        (
            {"registry_annotations": {"autoscaling.knative.dev/maxScale": "2"}},
            "registry_annotations must not set autoscaling.knative.dev/maxScale: the role runs exactly one replica",
        ),
        (
            {"registry_annotations": {"k": "x" * 262144}},
            "registry_annotations hold 262145 bytes; Kubernetes allows at most 262144",
        ),
        ({"registry_labels": 5}, "registry_labels must be a dict of key: value, got 5"),
        (
            {"registry_labels": {"-k": "v"}},
            'registry_labels keys must be [prefix/]name (an optional DNS subdomain and "/"',
        ),
        ({"registry_labels": {"k": {}}}, "registry_labels values must be strings, numbers or booleans, got"),
        (
            {"registry_labels": {"k": "v" * 64}},
            "registry_labels values must be label values (at most 63 letters, digits",
        ),
        (
            {"registry_labels": {"serverless.knlab.io/registry": "x", "networking.knative.dev/visibility": "y"}},
            "registry_labels must not set serverless.knlab.io/registry, networking.knative.dev/visibility: the role",
        ),
        ({"registry_wait_timeout": 86401}, "registry_wait_timeout must be an integer from 1 to 86400, got 86401"),
        ({"registry_wait_timeout": 1.0}, "registry_wait_timeout must be an integer from 1 to 86400, got 1.0"),
        ({"registry_persistence": 1}, "registry_persistence must be a boolean (true or false), got 1"),
        ({"registry_pvc_name": "Bad_Name"}, "registry_pvc_name must be a DNS-1123 subdomain (at most 253 characters"),
        ({"registry_pvc_create": None}, "registry_pvc_create must be a boolean (true or false), got null"),
        ({"registry_pvc_size": "0"}, "registry_pvc_size must be a Kubernetes quantity greater than 0, such as 1Gi"),
        ({"registry_pvc_size": "1" * 65}, "registry_pvc_size is 65 characters long; at most 64 are allowed"),
        ({"registry_pvc_storage_class": "Bad"}, "registry_pvc_storage_class must be a DNS-1123 subdomain"),
        ({"registry_pvc_access_modes": "ReadWriteOnce"}, "registry_pvc_access_modes must be a list of access modes"),
        ({"registry_pvc_access_modes": []}, "registry_pvc_access_modes must not be empty"),
        (
            {"registry_pvc_access_modes": ["ReadWriteOnce", "Sometimes"]},
            "registry_pvc_access_modes must be among ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod,"
            ' got ["Sometimes"]',
        ),
        (
            {"registry_pvc_access_modes": ["ReadOnlyMany", "ReadOnlyMany"]},
            "registry_pvc_access_modes lists a mode more than once",
        ),
        (
            {"registry_pvc_access_modes": ["ReadWriteOncePod", "ReadWriteOnce"]},
            "registry_pvc_access_modes may not combine ReadWriteOncePod with other modes",
        ),
        (
            {"registry_persistence": "yes", "registry_pvc_access_modes": ["ReadOnlyMany"]},
            "registry_pvc_access_modes must include a writable mode (ReadWriteOnce, ReadWriteMany, ReadWriteOncePod)",
        ),
        ({"registry_check_feature_flags": "on"}, "registry_check_feature_flags must be a boolean"),
        ({"registry_allow_storage_change": "y"}, "registry_allow_storage_change must be a boolean"),
        ({"registry_knative_namespace": ""}, "registry_knative_namespace must not be empty"),
        ({"registry_auth_secret": "-lead"}, "registry_auth_secret must be a DNS-1123 subdomain"),
        (
            {"registry_auth_secret_key": "../etc/passwd"},
            "registry_auth_secret_key must be a Secret key (letters, digits",
        ),
        ({"registry_auth_realm": 'say "hi"'}, "registry_auth_realm must be text without double quotes or backslashes"),
        ({"registry_auth_realm": "r" * 257}, "registry_auth_realm is 257 characters long; at most 256 are allowed"),
        ({"registry_push_host_override": "h:99999"}, "registry_push_host_override must be a host name or address with"),
        (
            {"registry_pull_host_override": "a" * 64 + ".x"},
            "registry_pull_host_override must be a host name or address",
        ),
    ],
)
def test_each_wrong_variable_is_named(changes: dict, expected: str) -> None:
    found = problems(**changes)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_without_a_claim_to_write_to_read_only_modes_are_fine() -> None:
    assert problems(registry_pvc_access_modes=["ReadOnlyMany"]) == []
    assert (
        problems(registry_persistence=True, registry_pvc_create="no", registry_pvc_access_modes=["ReadOnlyMany"]) == []
    )


def test_the_http_address_may_name_the_port() -> None:
    assert problems(registry_port=6000, registry_env={"REGISTRY_HTTP_ADDR": ":6000"}) == []
    assert problems(registry_port="6000", registry_env={"REGISTRY_HTTP_ADDR": ":6000"}) == []


def test_every_problem_is_reported_in_the_order_of_the_old_check() -> None:
    found = problems(
        registry_pull_host_override="bad host!",
        registry_allow_storage_change="x",
        registry_check_feature_flags="x",
        registry_labels=5,
        registry_port=0,
        registry_name="",
    )
    assert [message.split(" ", 1)[0] for message in found] == [
        "registry_name",
        "registry_port",
        "registry_labels",
        "registry_check_feature_flags",
        "registry_allow_storage_change",
        "registry_pull_host_override",
    ]


def test_annotations_are_measured_as_kubernetes_does_in_bytes_of_keys_and_values() -> None:
    # 262141 bytes: accepted by Kubernetes (the JSON text, 262149 characters, used to be measured).
    assert problems(registry_annotations={"k": "x" * 262140}) == []
    # A two-byte character counts two (its JSON escape used to count six).
    assert problems(registry_annotations={"k": "\u00e9" * 131071}) == []
    assert problems(registry_annotations={"k": "\u00e9" * 131072}) == [
        "registry_annotations hold 262145 bytes; Kubernetes allows at most 262144"
    ]


S3 = {
    "registry_storage": "s3",
    "registry_s3_endpoint": "http://10.250.0.10:7070",
    "registry_s3_bucket": "hub",
    "registry_s3_credentials_secret": "hub-s3",
}


def test_s3_storage_with_its_settings_has_no_problem() -> None:
    assert problems(**S3) == []
    https = {**S3, "registry_s3_endpoint": "https://s3.example.com/", "registry_s3_root_directory": "/hubs/one"}
    assert problems(**https) == []
    assert problems(**{**S3, "registry_s3_endpoint": "", "registry_s3_credentials_secret": ""}) == []
    assert problems(**S3, registry_min_scale=0, registry_max_scale=5, registry_autoscaling_target=20) == []
    assert problems(**S3, registry_max_scale=0, registry_autoscaling_metric="rps") == []
    assert problems(**S3, registry_env={"REGISTRY_STORAGE_S3_CHUNKSIZE": "10485760"}) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"registry_storage": "gcs"}, "registry_storage must be one of filesystem, s3, got"),
        ({**S3, "registry_persistence": True}, "registry_storage=s3 and registry_persistence=true cannot be combined"),
        ({**S3, "registry_s3_bucket": ""}, "registry_s3_bucket must be set with registry_storage=s3"),
        ({**S3, "registry_s3_bucket": "Hub_Images"}, "registry_s3_bucket must be an S3 bucket name"),
        ({**S3, "registry_s3_bucket": "a..b"}, "registry_s3_bucket must be an S3 bucket name"),
        ({**S3, "registry_s3_endpoint": "10.250.0.10:7070"}, "registry_s3_endpoint must be an http:// or https:// URL"),
        ({**S3, "registry_s3_endpoint": "http://host/path"}, "registry_s3_endpoint must be an http:// or https:// URL"),
        (
            {**S3, "registry_s3_endpoint": "http://host:99999"},
            "registry_s3_endpoint must be an http:// or https:// URL",
        ),
        ({**S3, "registry_s3_endpoint": ["http://h"]}, "registry_s3_endpoint must be a string, got"),
        ({**S3, "registry_s3_region": ""}, "registry_s3_region must not be empty"),
        ({**S3, "registry_s3_credentials_secret": "Hub S3"}, "registry_s3_credentials_secret must be a DNS-1123"),
        ({**S3, "registry_s3_access_key_item": "../key"}, "registry_s3_access_key_item must be a Secret key"),
        ({**S3, "registry_s3_secret_key_item": ""}, "registry_s3_secret_key_item must not be empty"),
        ({**S3, "registry_s3_force_path_style": "maybe"}, "registry_s3_force_path_style must be a boolean"),
        ({**S3, "registry_s3_skip_verify": 2}, "registry_s3_skip_verify must be a boolean"),
        ({**S3, "registry_s3_redirect": None}, "registry_s3_redirect must be a boolean"),
        (
            {**S3, "registry_s3_root_directory": "hubs"},
            'registry_s3_root_directory must be a key prefix starting with "/"',
        ),
        ({**S3, "registry_s3_root_directory": "/a/../b"}, "registry_s3_root_directory must be a key prefix"),
        ({**S3, "registry_http_secret": ""}, "registry_http_secret must not be empty"),
        ({**S3, "registry_env": {"REGISTRY_STORAGE": "filesystem"}}, "registry_env must not set REGISTRY_STORAGE with"),
        ({**S3, "registry_env": {"REGISTRY_HTTP_SECRET": "x"}}, "registry_env must not set REGISTRY_HTTP_SECRET with"),
        ({"registry_max_scale": 3}, "registry_max_scale must be 1 unless registry_storage=s3, got 3"),
        ({"registry_max_scale": 0, "registry_persistence": True}, "registry_max_scale must be 1 unless"),
        ({"registry_min_scale": 0}, "registry_min_scale 0 needs registry_storage=s3 or registry_persistence=true"),
        ({**S3, "registry_min_scale": 4, "registry_max_scale": 3}, "registry_min_scale (4) must not be more than"),
        ({**S3, "registry_max_scale": -1}, "registry_max_scale must be an integer from 0 to 1000, got -1"),
        ({"registry_min_scale": "one"}, "registry_min_scale must be an integer from 0 to 1000"),
        ({"registry_autoscaling_target": -5}, "registry_autoscaling_target must be an integer from 0 to 100000"),
        (
            {"registry_autoscaling_metric": "cpu"},
            "registry_autoscaling_metric must be empty (Knative's default) or one",
        ),
        (
            {"registry_autoscaling_target": 10, "registry_annotations": {"autoscaling.knative.dev/target": "5"}},
            "registry_annotations must not set autoscaling.knative.dev/target (registry_autoscaling_target sets it)",
        ),
    ],
)
def test_each_wrong_s3_or_scale_setting_is_named(changes: dict, expected: str) -> None:
    found = problems(**changes)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_with_filesystem_storage_the_s3_settings_are_checked_but_not_required() -> None:
    assert problems(registry_s3_bucket="") == []
    assert problems(registry_env={"REGISTRY_STORAGE": "inmemory"}) == []
    assert problems(registry_min_scale=0, registry_persistence=True) == []
    assert problems(registry_s3_bucket="UPPER")[0].startswith("registry_s3_bucket must be an S3 bucket name")
