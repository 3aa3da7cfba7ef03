"""The knative_stack role's input checks (plugins/filter/knative_stack_input_problems.py).

The checks were one Jinja expression; the Python keeps its judgement and its sentences. The cases
below pin each variable's rule, the order of the messages, the look for the manifests of
knative_stack_manifest_dir, and the pieces this filter added to plugin_utils/_role_inputs.py.
`make badinput` runs every generated bad value through the role.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.knlab.serverless.plugins.filter import knative_stack_input_problems as filter_module
from ansible_collections.knlab.serverless.plugins.filter.knative_stack_input_problems import (
    FilterModule,
    knative_stack_input_problems,
)
from ansible_collections.knlab.serverless.plugins.plugin_utils import _role_inputs as r

ROLE = Path(__file__).resolve().parents[4] / "roles" / "knative_stack"
S = "knative_stack_"
# The role's defaults, rendered (the URLs, checksum and image name the versions).
VALID = {
    S + "serving_version": "knative-v1.23.0",
    S + "kourier_version": "knative-v1.23.0",
    S + "tekton_version": "v1.15.0",
    S + "traefik_version": "v3.6.12",
    S + "local_path_version": "v0.0.30",
    S + "serving_release_url": "https://github.com/knative/serving/releases/download/knative-v1.23.0",
    S + "kourier_release_url": "https://github.com/knative-extensions/net-kourier/releases/download/knative-v1.23.0",
    S + "tekton_release_url": "https://infra.tekton.dev/tekton-releases/pipeline/previous/v1.15.0",
    S + "serving_checksum": (
        "sha256:https://github.com/knative/serving/releases/download/knative-v1.23.0/checksums.txt"
    ),
    S + "kourier_checksum": "",
    S + "tekton_checksum": "",
    S + "local_path_release_url": "https://raw.githubusercontent.com/rancher/local-path-provisioner/v0.0.30/deploy",
    S + "local_path_checksum": "",
    S + "manifest_dir": "",
    S + "cache_dir": "~/.cache/knlab.serverless/knative_stack",
    S + "install_serving": True,
    S + "ingress": "kourier",
    S + "traefik_image": "docker.io/library/traefik:v3.6.12",
    S + "install_tekton": True,
    S + "pvc_provisioner": "none",
    S + "pvc_default_class": True,
    S + "field_manager": "knlab-knative-stack",
    S + "wait_timeout": 600,
    S + "ingress_class": "",
    S + "domain": "127.0.0.1.sslip.io",
    S + "enable_pvc": True,
    S + "features": {},
    S + "ingress_node_port": 31080,
    S + "hub_name": "hub",
    S + "hub_namespace": "default",
    S + "hub_port": 5000,
    S + "hub_node_port": 30500,
    S + "hub_pull_host": "localhost:5001",
    S + "skip_tag_resolution": ["kind.local", "ko.local", "dev.local"],
}
NODE_PORT_RULE = "must be 0 (no node port) or a node port from 30000 to 32767 (the default NodePort range)"
MANIFESTS = ("serving-crds.yaml", "serving-core.yaml", "kourier.yaml", "tekton.yaml", "local-path.yaml")


def problems(needs_manifests: bool = True, **changes) -> list[str]:
    return knative_stack_input_problems(
        {**VALID, **{S + name: value for name, value in changes.items()}}, needs_manifests
    )


def test_the_filter_is_exported_under_its_name() -> None:
    assert FilterModule().filters() == {"knative_stack_input_problems": knative_stack_input_problems}


def test_valid_settings_have_no_problem() -> None:
    assert problems() == []
    assert (
        problems(
            ingress="traefik",
            traefik_version="3.6",
            kourier_version="knative-v1.22.0",
            install_serving="yes",
            install_tekton="False",
            pvc_provisioner="local-path",
            wait_timeout="0010",
            ingress_node_port="0",
            hub_node_port=0,
            hub_name="h" * 63,
            features={"multi-container": "enabled"},
            skip_tag_resolution=[],
            hub_pull_host="[::1]:5001",
            domain="",
            kourier_checksum="sha512:" + "A" * 128,
            traefik_image="[::1]:5000/traefik:v3@sha256:" + "a" * 64,
        )
        == []
    )


def test_the_role_defaults_are_the_valid_baseline() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(defaults) == set(VALID)
    assert {name: value for name, value in defaults.items() if "{{" not in str(value)} == {
        name: value for name, value in VALID.items() if "{{" not in str(defaults[name])
    }


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"serving_version": ["x"]}, 'knative_stack_serving_version must be a string, got ["x"]'),
        (
            {"serving_version": "v1 2"},
            'knative_stack_serving_version must be a release tag such as knative-v1.23.0, got "v1',
        ),
        ({"tekton_version": ""}, "knative_stack_tekton_version must not be empty"),
        ({"tekton_version": "v" * 65}, "knative_stack_tekton_version is 65 characters long; at most 64 are allowed"),
        ({"tekton_version": "knative-v1.0.0"}, "knative_stack_tekton_version must be a release tag such as v1.15.0"),
        (
            {"kourier_version": "knative-v1.22.0"},
            "knative_stack_kourier_version must be of the minor version of knative_stack_serving_version (1.23), as"
            ' Knative requires, got "knative-v1.22.0"',
        ),
        (
            {"ingress": "traefik", "traefik_version": "v3.5.9"},
            "knative_stack_traefik_version must be 3.6 or later (the first Traefik with a Knative provider)",
        ),
        ({"traefik_version": "v3"}, "knative_stack_traefik_version must be a Traefik version such as v3.6.12"),
        ({"local_path_version": "v0.0"}, "knative_stack_local_path_version must be a release tag such as v0.0.30"),
        (
            {"tekton_release_url": "ftp://host"},
            "knative_stack_tekton_release_url must be an http(s) URL with a host, got",
        ),
        ({"local_path_release_url": "https://h/" + "x" * 2048}, "knative_stack_local_path_release_url is 2058 char"),
        ({"kourier_checksum": "sha256:xyz"}, "knative_stack_kourier_checksum must be empty or a get_url checksum"),
        ({"manifest_dir": ["a"]}, 'knative_stack_manifest_dir must be a string, got ["a"]'),
        ({"cache_dir": ""}, "knative_stack_cache_dir must not be empty"),
        (
            {"cache_dir": "/x\ty"},
            "knative_stack_cache_dir must not contain control characters (newline, tab, NUL, ...)",
        ),
        ({"install_serving": "on"}, 'knative_stack_install_serving must be a boolean (true or false), got "on"'),
        ({"ingress": "Kourier"}, 'knative_stack_ingress must be one of kourier, traefik, none, got "Kourier"'),
        ({"traefik_image": "Traefik:v3"}, "knative_stack_traefik_image must be an image reference ([host[:port]/]path"),
        ({"install_tekton": 1}, "knative_stack_install_tekton must be a boolean (true or false), got 1"),
        ({"pvc_provisioner": ["none"]}, 'knative_stack_pvc_provisioner must be one of none, local-path, got ["none"]'),
        ({"pvc_default_class": None}, "knative_stack_pvc_default_class must be a boolean (true or false), got null"),
        (
            {"field_manager": "f" * 122},
            "knative_stack_field_manager is 122 characters long; at most 121 are allowed (Kubernetes allows 128, and",
        ),
        ({"field_manager": "f" * 254}, "knative_stack_field_manager is 254 characters long; at most 253 are allowed"),
        ({"wait_timeout": "+5"}, 'knative_stack_wait_timeout must be an integer from 1 to 86400, got "+5"'),
        ({"wait_timeout": True}, "knative_stack_wait_timeout must be an integer from 1 to 86400, got true"),
        ({"ingress_class": "Bad"}, "knative_stack_ingress_class must be a KIngress class such as kourier.ingress"),
        ({"domain": "Example.com"}, "knative_stack_domain must be a DNS-1123 subdomain (at most 253 characters"),
        ({"enable_pvc": "maybe"}, 'knative_stack_enable_pvc must be a boolean (true or false), got "maybe"'),
        ({"features": ["a"]}, 'knative_stack_features must be a dict of config-features key: value, got ["a"]'),
        (
            {"features": {"..": "x", 5: "y", "a b": "z"}},
            'knative_stack_features keys must be ConfigMap keys (letters, digits, "-", "_" and "."), got ["..", "a b"]',
        ),
        ({"features": {"a": True}}, 'knative_stack_features values must be strings such as "enabled" (ConfigMap data'),
        ({"ingress_node_port": "-0"}, f'knative_stack_ingress_node_port {NODE_PORT_RULE}, got "-0"'),
        (
            {"hub_name": "1svc"},
            'knative_stack_hub_name must be a DNS-1035 label (at most 63 lowercase letters, digits and "-"',
        ),
        (
            {"hub_name": "h" * 55},
            "knative_stack_hub_name is 55 characters long; at most 54 are allowed with a node port (the Service "
            + "h" * 55
            + "-nodeport needs a name of at most 63)",
        ),
        ({"hub_namespace": "a.b"}, "knative_stack_hub_namespace must be a DNS-1123 label (at most 63 lowercase"),
        ({"hub_port": 0}, "knative_stack_hub_port must be an integer from 1 to 65535, got 0"),
        ({"hub_node_port": 80}, f"knative_stack_hub_node_port {NODE_PORT_RULE}, got 80"),
        (
            {"hub_node_port": "31080"},
            "knative_stack_hub_node_port must differ from knative_stack_ingress_node_port (31080)",
        ),
        ({"hub_pull_host": "h:0"}, "knative_stack_hub_pull_host must be a host name or address with an optional :port"),
        (
            {"skip_tag_resolution": "kind.local"},
            "knative_stack_skip_tag_resolution must be a list of registry hosts, got",
        ),
        (
            {"skip_tag_resolution": ["ok", "bad host!", 5]},
            "knative_stack_skip_tag_resolution must list registry hosts (a host name or address with an optional"
            ' :port), got [5, "bad host!"]',
        ),
    ],
)
def test_each_wrong_variable_is_named(changes: dict, expected: str) -> None:
    found = problems(**changes)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


@pytest.mark.parametrize(
    "changes",
    [
        {"kourier_version": "knative-v1.22.0", "ingress": "traefik"},  # Kourier is not installed
        {"kourier_version": "v1.23.5", "serving_version": "knative-v1.23.0-rc.1"},  # the same minor
        {"traefik_version": "v2.11"},  # Traefik is not installed
        {"hub_name": "h" * 55, "hub_node_port": 0},  # no node port Service
        {"hub_node_port": 31080, "ingress": "none"},  # no ingress node port
        {"hub_node_port": 0, "ingress_node_port": 0},
    ],
)
def test_the_rules_between_variables_apply_only_when_they_matter(changes: dict) -> None:
    assert problems(**changes) == []


def test_every_problem_is_reported_in_the_order_of_the_defaults() -> None:
    found = problems(serving_version="", skip_tag_resolution=1, hub_port=0, features=1, wait_timeout=0)
    assert [message.split(" ", 1)[0] for message in found] == [
        S + "serving_version",
        S + "wait_timeout",
        S + "features",
        S + "hub_port",
        S + "skip_tag_resolution",
    ]


def test_an_invalid_port_is_named_once_not_again_by_the_rules_between_variables() -> None:
    # The Jinja compared int("+30500") with the hub's port and named the hub's port too; and it
    # applied the hub name's length rule for a hub port that is no port.
    found = problems(ingress_node_port="+30500")
    assert len(found) == 1, found
    assert found[0].startswith(f'knative_stack_ingress_node_port {NODE_PORT_RULE}, got "+30500"')
    found = problems(hub_name="h" * 60, hub_node_port="1e3")
    assert len(found) == 1, found
    assert found[0].startswith("knative_stack_hub_node_port")
    found = problems(hub_name="h" * 60, hub_node_port=30600)
    assert found == [
        "knative_stack_hub_name is 60 characters long; at most 54 are allowed with a node port"
        f" (the Service {'h' * 60}-nodeport needs a name of at most 63)"
    ]


def _manifest_dir(tmp_path: Path, *files: str) -> Path:
    for name in files:
        (tmp_path / name).write_text("---\n")
    return tmp_path


def test_the_manifest_directory_must_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothere")
    assert problems(manifest_dir=missing) == [
        f'knative_stack_manifest_dir must be a directory on this host, got "{missing}"'
    ]
    assert problems(manifest_dir=str(_manifest_dir(tmp_path, "tekton.yaml") / "tekton.yaml")) == [
        f'knative_stack_manifest_dir must be a directory on this host, got "{tmp_path / "tekton.yaml"}"'
    ]


def test_the_manifests_the_run_applies_must_be_there(tmp_path: Path) -> None:
    directory = str(_manifest_dir(tmp_path, "serving-crds.yaml", "tekton.yaml"))
    (tmp_path / "kourier.yaml").mkdir()  # not a file
    assert problems(manifest_dir=directory) == [
        "knative_stack_manifest_dir must hold the manifests to apply (see the role README), missing:"
        " serving-core.yaml, kourier.yaml"
    ]
    assert problems(manifest_dir=directory, pvc_provisioner="local-path", install_tekton="no")[0].endswith(
        "missing: serving-core.yaml, kourier.yaml, local-path.yaml"
    )
    assert problems(manifest_dir=directory, install_serving="False", ingress="traefik") == []


def test_all_the_manifests_and_the_home_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _manifest_dir(tmp_path, *MANIFESTS)
    monkeypatch.setenv("HOME", str(tmp_path.parent))
    assert problems(manifest_dir=f"~/{tmp_path.name}", pvc_provisioner="local-path") == []


def test_the_manifests_are_looked_for_only_when_all_else_is_right_and_needed(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothere")
    assert problems(manifest_dir=missing, hub_port=0) == [
        "knative_stack_hub_port must be an integer from 1 to 65535, got 0"
    ]
    assert problems(needs_manifests=False, manifest_dir=missing) == []


def test_the_filter_knows_what_vars_main_yml_defines() -> None:
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert tuple(role_vars["_knative_stack_ingress_classes"]) == filter_module.INGRESSES
    manifests = role_vars["_knative_stack_manifests"]
    assert tuple(entry[0] for entry in filter_module.MANIFEST_FILES) == MANIFESTS
    for entry, name in zip(manifests.values(), MANIFESTS, strict=True):
        assert f"knative_stack_manifest_dir ~ '/{name}' if _knative_stack_local_manifests" in entry["file"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, True), ("0010", True), ("+5", False), ("-0", False), ("12345678901", False), (True, False), (1.0, False)],
)
def test_unsigned_integers_as_text(value, expected: bool) -> None:
    assert r.uint_like(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("YES", True),
        ("on", True),
        (1, True),
        ("1", True),
        (1.0, True),
        (False, False),
        ("No", False),
        ("off", False),
        (0, False),
        ("maybe", False),
        (None, False),
        (["yes"], False),
    ],
)
def test_bool_reads_values_as_ansibles_filter_does(value, expected: bool) -> None:
    assert r.to_bool(value) is expected
