"""The app role's input checks (plugins/filter/app_input_problems.py) and the pieces they share.

The checks were one Jinja expression; the Python keeps its judgement. The cases below pin the
Jinja semantics the pieces copy (what counts as an integer, a boolean, a sequence; how a value is
shown) and each variable's rule. `make badinput` runs every generated bad value through the role.
"""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.filter.app_input_problems import FilterModule, app_input_problems
from ansible_collections.knlab.serverless.plugins.plugin_utils import _role_inputs as r

DIGEST = "sha256:" + "0" * 64
VALID = {
    "app_name": "hello",
    "app_namespace": "default",
    "app_image": f"hub.default.svc.cluster.local/hello@{DIGEST}",
    "app_env": {"TARGET": "World", "N": 3, "ON": True, "NONE": None},
    "app_port": None,
    "app_min_scale": None,
    "app_max_scale": None,
    "app_annotations": {},
    "app_labels": {},
    "app_service_account": "",
    "app_image_pull_secrets": [],
    "app_cluster_local": False,
    "app_wait_timeout": 300,
    "app_wait_listen_timeout": 20,
    "app_smoke_test": True,
    "app_smoke_path": "/",
    "app_smoke_status": 200,
    "app_smoke_text": "",
    "app_ingress_address": "",
    "app_smoke_retries": 10,
    "app_smoke_delay": 2,
    "app_smoke_timeout": 10,
    "app_validate_certs": True,
}


def problems(**changes) -> list[str]:
    return app_input_problems({**VALID, **changes})


def test_the_filter_is_exported_under_its_name() -> None:
    assert FilterModule().filters() == {"app_input_problems": app_input_problems}


def test_valid_settings_have_no_problem() -> None:
    assert problems() == []
    assert (
        problems(
            app_port="8080",
            app_min_scale=1,
            app_max_scale="3",
            app_cluster_local="yes",
            app_labels={"tier": "web"},
            app_annotations={"example.com/x": 1},
            app_image_pull_secrets=["pull"],
            app_service_account="builder",
            app_ingress_address="http://127.0.0.1:8080",
            app_smoke_path="/?q=1",
            app_image="registry:5000/a/b:v1",
        )
        == []
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"app_name": ["x"]}, 'app_name must be a string, got ["x"]'),
        ({"app_name": "1abc"}, "app_name must be a Knative Service name"),
        ({"app_name": "hello\n"}, "app_name must be a Knative Service name"),
        ({"app_namespace": "a.b"}, "app_namespace must be a DNS-1123 label"),
        ({"app_image": ""}, "app_image is empty"),
        ({"app_image": "hub/Hello"}, "app_image must be an image reference"),
        ({"app_image": "a" * 256 + ":v1"}, "app_image must be an image reference"),
        ({"app_env": {"PORT": "1"}}, "app_env must not set PORT: Knative sets these itself"),
        ({"app_env": {"..x": "1"}}, "app_env has invalid names (letters, digits, underscores, hyphens and dots, not"),
        ({"app_env": {"A": ["list"]}}, "app_env must be a dict of variable names"),
        ({"app_port": 8012}, "app_port must be unset (null) or an integer from 1 to 65535 other than"),
        ({"app_port": True}, "app_port must be unset"),
        ({"app_port": "1e3"}, "app_port must be unset"),
        ({"app_min_scale": -1}, "app_min_scale must be unset (null) or an integer from 0 to 2147483647"),
        ({"app_min_scale": 3, "app_max_scale": 2}, "app_max_scale (2) must not be less than app_min_scale (3)"),
        ({"app_annotations": {"k": True}}, "app_annotations must be a dict of annotation keys"),
        ({"app_annotations": {"-bad": "1"}}, "app_annotations has invalid keys"),
        ({"app_annotations": {"k": "x" * 262144}}, "app_annotations add up to more than the 256 KiB"),
        (
            {"app_min_scale": 1, "app_annotations": {"autoscaling.knative.dev/minScale": "1"}},
            "app_annotations must not set autoscaling.knative.dev/minScale together with app_min_scale",
        ),
        ({"app_labels": {"k": 1}}, "app_labels must be a dict of label keys to string label values"),
        ({"app_labels": {"k": "-v"}}, "app_labels has invalid values (at most 63 letters, digits, hyphens, under"),
        (
            {"app_labels": {"networking.knative.dev/visibility": "x"}},
            "app_labels must not set networking.knative.dev/visibility",
        ),
        ({"app_service_account": "Bad"}, "app_service_account must be empty or a service account name"),
        ({"app_image_pull_secrets": "pull"}, "app_image_pull_secrets must be a list of Secret names"),
        ({"app_image_pull_secrets": ["Bad"]}, "app_image_pull_secrets has invalid Secret names"),
        ({"app_cluster_local": "maybe"}, 'app_cluster_local must be a boolean, got "maybe"'),
        ({"app_wait_timeout": 0}, "app_wait_timeout must be an integer from 1 to 86400 (seconds), got 0"),
        ({"app_wait_listen_timeout": "0o10"}, "app_wait_listen_timeout must be an integer from 0 to 3600"),
        ({"app_smoke_test": 1}, "app_smoke_test must be a boolean, got 1"),
        ({"app_smoke_path": "no-slash"}, "app_smoke_path must be a URL path starting with /"),
        ({"app_smoke_path": "/#frag"}, "app_smoke_path must be a URL path starting with /"),
        ({"app_smoke_status": 99}, "app_smoke_status must be an HTTP status code"),
        ({"app_smoke_text": "a\x00b"}, "app_smoke_text must be at most 4096 characters without control"),
        ({"app_ingress_address": "ftp://host"}, "app_ingress_address must be empty or an http:// or https:// URL"),
        ({"app_smoke_retries": 1001}, "app_smoke_retries must be an integer from 0 to 1000, got 1001"),
        ({"app_smoke_delay": -1}, "app_smoke_delay must be an integer from 0 to 3600 (seconds)"),
        ({"app_smoke_timeout": 0}, "app_smoke_timeout must be an integer from 1 to 3600 (seconds)"),
        ({"app_validate_certs": None}, "app_validate_certs must be a boolean, got null"),
    ],
)
def test_each_wrong_variable_is_named(changes: dict, expected: str) -> None:
    found = problems(**changes)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_every_problem_is_reported_in_the_order_of_the_spec() -> None:
    found = problems(app_name="", app_smoke_delay="x", app_port=0)
    assert [message.split(" ", 1)[0] for message in found] == ["app_name", "app_port", "app_smoke_delay"]


def test_text_and_tab_and_line_breaks_are_allowed_in_the_expected_answer() -> None:
    assert problems(app_smoke_text="Hello\tWorld\r\n") == []


@pytest.mark.parametrize(
    ("value", "integer", "number", "boolean", "sequence"),
    [
        (True, False, True, True, False),
        (3, True, True, False, False),
        (3.0, False, True, False, False),
        ("3", False, False, False, True),
        ([1], False, False, False, True),
        ({"a": 1}, False, False, False, True),
        (None, False, False, False, False),
    ],
)
def test_the_jinja_tests_are_kept(value, integer: bool, number: bool, boolean: bool, sequence: bool) -> None:
    assert r.is_integer(value) is integer
    assert r.is_number(value) is number
    assert r.is_boolean(value) is boolean
    assert r.is_sequence(value) is sequence


def test_int_reads_text_as_jinja_does() -> None:
    assert r.to_int("+5") == 5
    assert r.to_int("1.5") == 1
    assert r.to_int("x") == 0
    assert r.to_int(None) == 0
    assert r.int_in("0010", 1, 10)
    assert not r.int_in("1e3", 0, 10**6)
    assert not r.int_in(True, 0, 1)


def test_values_are_shown_as_json_cut_with_jinjas_leeway() -> None:
    assert r.got("x" * 83) == '"' + "x" * 83 + '"'  # 85 characters: within the leeway of 5
    assert r.got("x" * 84) == '"' + "x" * 76 + "..."
    assert r.got({"a": None}) == '{"a": null}'
    assert r.got("é\n") == '"\\u00e9\\n"'


def test_match_is_anchored_at_the_start_only() -> None:
    assert r.match("abc", "b") is False
    assert r.search("abc", "b") is True
    assert r.match(12, "[0-9]+") is True
