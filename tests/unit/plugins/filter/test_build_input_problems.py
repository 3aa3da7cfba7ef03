"""The build role's input checks (plugins/filter/build_input_problems.py).

The checks were one Jinja expression; the Python keeps its judgement and its sentences. The cases
below pin each variable's rule; `make badinput` runs every generated bad value through the role.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.knlab.serverless.plugins.filter import build_input_problems as module
from ansible_collections.knlab.serverless.plugins.filter.build_input_problems import (
    FilterModule,
    build_input_problems,
    duration_seconds,
)
from ansible_collections.knlab.serverless.plugins.plugin_utils import _role_inputs as r

ROLE = Path(__file__).resolve().parents[4] / "roles" / "build"
DIGEST = "sha256:" + "0" * 64
VALID = {
    "build_name": "hello",
    "build_namespace": "default",
    "build_source_dir": "/srv/hello",
    "build_dockerfile": "Dockerfile",
    "build_push_host": "hub.default.svc.cluster.local",
    "build_pull_host": "",
    "build_image_repository": "hello",
    "build_image_tag": "latest",
    "build_insecure_registry": True,
    "build_verify_image": True,
    "build_registry_url": "",
    "build_registry_host_header": "",
    "build_registry_validate_certs": True,
    "build_docker_config_secret": "",
    "build_task_name": "hello-kaniko",
    "build_builder_image": f"ghcr.io/osscontainertools/kaniko:v1.27.6@{DIGEST}",
    "build_extra_args": [],
    "build_service_account": "",
    "build_timeout": "15m",
    "build_wait_timeout": 900,
    "build_log_lines": 20,
    "build_labels": {},
    "build_keep_sources": 3,
}


def problems(**changes) -> list[str]:
    return build_input_problems({**VALID, **changes})


def test_the_filter_is_exported_under_its_name() -> None:
    assert FilterModule().filters() == {"build_input_problems": build_input_problems}


def test_valid_settings_have_no_problem() -> None:
    assert problems() == []
    assert (
        problems(
            build_name="a" * 40,
            build_source_dir="~/src",
            build_dockerfile=".dockerfile",
            build_push_host="localhost:5001",
            build_pull_host="[::1]:5000",
            build_insecure_registry="no",
            build_verify_image="Yes",
            build_registry_url="https://hub.example.com:8443/",
            build_registry_host_header="hub.example.com",
            build_docker_config_secret="creds.docker",
            build_task_name="a.b",
            build_builder_image="registry:5000/a/b:v1",
            build_extra_args=["--reproducible", "x" * 4096],
            build_service_account="builder",
            build_timeout="+1h30m",
            build_wait_timeout="86400",
            build_log_lines="0",
            build_labels={"example.com/tier": "web", "empty": ""},
            build_keep_sources="1000",
        )
        == []
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"build_name": ["x"]}, 'build_name must be a string, got ["x"]'),
        ({"build_name": "a" * 41}, "build_name must be at most 40 lowercase letters, digits and hyphens"),
        ({"build_name": "hello\n"}, "build_name must be at most 40 lowercase letters"),
        ({"build_namespace": "a.b"}, "build_namespace must be a DNS-1123 label"),
        ({"build_source_dir": None}, "build_source_dir must be a string, got null"),
        ({"build_source_dir": "relative/path"}, "build_source_dir must be an absolute path on the controller"),
        ({"build_source_dir": "/nul\x00"}, "build_source_dir must be an absolute path on the controller"),
        ({"build_source_dir": "/" + "a" * 4096}, "build_source_dir must be an absolute path on the controller"),
        ({"build_dockerfile": ".."}, "build_dockerfile must be a file name in build_source_dir that can be a Config"),
        ({"build_dockerfile": "sub/Dockerfile"}, "build_dockerfile must be a file name in build_source_dir"),
        ({"build_push_host": ""}, "build_push_host is empty. Run the knlab.serverless.registry role first"),
        ({"build_push_host": "h:0"}, "build_push_host must be a registry host with an optional port"),
        ({"build_pull_host": "bad host!"}, "build_pull_host must be empty (use build_push_host) or a registry host"),
        ({"build_image_repository": "Hello"}, "build_image_repository must be a repository path of lowercase"),
        (
            {"build_push_host": "a" * 200, "build_image_repository": "b" * 55},
            "build_image_repository makes, after build_push_host or build_pull_host and /, an image name of more",
        ),
        ({"build_image_tag": "-v1"}, "build_image_tag must be at most 128 letters, digits, underscores"),
        ({"build_insecure_registry": "maybe"}, 'build_insecure_registry must be a boolean, got "maybe"'),
        ({"build_verify_image": 1}, "build_verify_image must be a boolean, got 1"),
        ({"build_registry_validate_certs": None}, "build_registry_validate_certs must be a boolean, got null"),
        ({"build_registry_url": "http://h:5000/v2"}, "build_registry_url must be empty or an http:// or https:// URL"),
        ({"build_registry_host_header": "h:65536"}, "build_registry_host_header must be empty or a host name"),
        ({"build_docker_config_secret": "Bad"}, "build_docker_config_secret must be empty or a Secret name"),
        ({"build_task_name": "a" * 64}, "build_task_name must be a Tekton Task name"),
        ({"build_builder_image": "hub/Hello"}, "build_builder_image must be an image reference"),
        ({"build_builder_image": "a" * 256 + ":v1"}, "build_builder_image must be an image reference"),
        ({"build_extra_args": "--reproducible"}, 'build_extra_args must be a list of strings, got "--reproducible"'),
        ({"build_extra_args": [True]}, "build_extra_args must be a list of strings, got [true]"),
        ({"build_extra_args": [""]}, "build_extra_args must hold at most 100 kaniko arguments"),
        ({"build_extra_args": ["ok\x7f"]}, "build_extra_args must hold at most 100 kaniko arguments"),
        ({"build_extra_args": ["a"] * 101}, "build_extra_args must hold at most 100 kaniko arguments"),
        ({"build_extra_args": ["a" * 4097]}, "build_extra_args must hold at most 100 kaniko arguments"),
        ({"build_service_account": "-lead"}, "build_service_account must be empty or a ServiceAccount name"),
        ({"build_timeout": 900}, "build_timeout must be a string (a Go duration such as 15m or 1h30m), got 900"),
        ({"build_timeout": "10"}, "build_timeout must be a positive Go duration of at most 24h"),
        ({"build_timeout": "15m\n"}, "build_timeout must be a positive Go duration"),
        ({"build_timeout": "0s"}, "build_timeout must be a positive Go duration"),
        ({"build_timeout": "24h1ns"}, "build_timeout must be a positive Go duration"),
        ({"build_timeout": "1" * 63 + "s"}, "build_timeout must be a positive Go duration"),
        ({"build_wait_timeout": 0}, "build_wait_timeout must be an integer from 1 to 86400 (seconds), got 0"),
        ({"build_wait_timeout": True}, "build_wait_timeout must be an integer from 1 to 86400 (seconds), got true"),
        ({"build_log_lines": "1e3"}, 'build_log_lines must be an integer from 0 to 10000, got "1e3"'),
        ({"build_labels": {"k": 1}}, "build_labels must be a dict of label keys to string label values"),
        ({"build_labels": ["k"]}, "build_labels must be a dict of label keys to string label values"),
        ({"build_labels": {"bad key!": "v"}}, "build_labels has invalid keys (an optional DNS subdomain prefix"),
        ({"build_labels": {"k": "v" * 64}}, "build_labels has invalid values (at most 63 letters"),
        (
            {"build_labels": {"serverless.knlab.io/idempotency-key": "x"}},
            "build_labels must not set serverless.knlab.io/idempotency-key: the role keys its TaskRuns with it",
        ),
        (
            {"build_labels": {"serverless.knlab.io/source": "x", "app.kubernetes.io/managed-by": "me"}},
            "build_labels must not set app.kubernetes.io/managed-by, serverless.knlab.io/source: the role sets",
        ),
        ({"build_keep_sources": 0}, "build_keep_sources must be an integer from 1 to 1000, got 0"),
    ],
)
def test_each_wrong_variable_is_named(changes: dict, expected: str) -> None:
    found = problems(**changes)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_every_problem_is_reported_in_the_order_of_the_spec() -> None:
    found = problems(build_keep_sources="x", build_name="", build_timeout="1x", build_push_host="")
    assert [message.split(" ", 1)[0] for message in found] == [
        "build_name",
        "build_push_host",
        "build_timeout",
        "build_keep_sources",
    ]


def test_a_long_repository_is_named_even_when_a_host_is_wrong_itself() -> None:
    found = problems(build_push_host="a" * 300, build_image_repository="b")
    assert [message.split(" ", 1)[0] for message in found] == ["build_push_host", "build_image_repository"]


def test_labels_name_the_keys_whose_values_are_wrong() -> None:
    found = problems(build_labels={"good": "v", "bad": "-v", "worse": "x y"})
    assert found[0].endswith(' for ["bad", "worse"]')


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("1h30m", 5400), ("1.5h", 5400), (".5s", 0.5), ("1ms", 0.001), ("1\u00b5s", 1e-6), ("5.m", 300)],
)
def test_go_durations_are_summed_part_by_part(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


def test_the_duration_rules_are_those_of_the_roles_vars() -> None:
    # vars/main.yml makes _build_wait_seconds from build_timeout with its own copy of the rules.
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
    assert role_vars["_build_re_duration_part"] == module.DURATION_PART
    assert role_vars["_build_duration_units"] == module.DURATION_UNITS


def test_every_option_of_the_entry_point_is_checked() -> None:
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    assert list(VALID) == list(spec["argument_specs"]["main"]["options"])
    validate = (ROLE / "tasks" / "validate.yml").read_text(encoding="utf-8")
    assert all(f"'{name}': {name}," in validate or f"'{name}': {name}\n" in validate for name in VALID)


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("Dockerfile", True),
        (".dockerignore", True),
        ("a" * 253, True),
        ("a" * 254, False),
        (".", False),
        ("..", False),
        ("..a", False),
        ("a..b", True),
        ("a/b", False),
        ("a\n", False),
        ("", False),
    ],
)
def test_configmap_keys_follow_kubernetes(key: str, valid: bool) -> None:
    assert r.match(key, r.RE_CONFIGMAP_KEY) is valid


def test_jinja_sort_ignores_case_and_keeps_the_order_of_equals() -> None:
    assert r.jinja_sorted(["b", "A", "a", "B"]) == ["A", "a", "b", "B"]
    assert r.jinja_sorted([3, 1, 2]) == [1, 2, 3]
