"""The DNS-1123 label rule that names, namespaces and volume names share."""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils import _knative, _tekton
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError
from ansible_collections.knlab.serverless.plugins.module_utils._validation import is_dns1123_label


@pytest.mark.parametrize("name", ["a", "0", "hello-1", "a" * 63, "1-2-3"])
def test_valid_labels(name):
    assert is_dns1123_label(name)


@pytest.mark.parametrize("name", ["", "a" * 64, "-a", "a-", "Hello", "a.b", "a_b", "hello\n", None, 5])
def test_invalid_labels(name):
    assert not is_dns1123_label(name)


@pytest.mark.parametrize("name", ["hello\n", "a" * 64, "a_b"])
def test_every_caller_applies_the_same_rule(name):
    # Each caller keeps its own wording; the rule is the shared one.
    base = {"name": "hello", "namespace": "default", "state": "absent", "wait_timeout": 5}
    with pytest.raises(_knative.InvalidOption, match="is not a valid Knative Service name"):
        _knative.validate(base | {"name": name})
    with pytest.raises(_knative.InvalidOption, match="is not a valid DNS-1123 label"):
        _knative.validate(base | {"namespace": name})
    volume = {"name": name, "mount_path": "/v", "config_map": "c"}
    with pytest.raises(_knative.InvalidOption, match=r"volume name .* is not a valid DNS-1123 label"):
        _knative._check_volumes([volume])
    with pytest.raises(ServerlessError, match="is not a valid TaskRun name: use at most 63 lowercase"):
        _tekton.validate_name(name)
    with pytest.raises(ServerlessError, match=r"is not a valid namespace name \(DNS-1123 label\)"):
        _tekton.validate_namespace(name)


# -- the shared rules of issue 12 ------------------------------------------------------------------

from ansible_collections.knlab.serverless.plugins.module_utils import _validation  # noqa: E402
from ansible_collections.knlab.serverless.plugins.module_utils._module import strict_type_problem  # noqa: E402


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [("/dev/../", "/"), ("/dev//log", "/dev/log"), ("/a/./b/", "/a/b"), ("/../x", "/x"), ("a/../../b", "../b")],
)
def test_clean_path_is_go_path_clean(path, cleaned):
    assert _validation.clean_path(path) == cleaned


@pytest.mark.parametrize(
    "image",
    ["busybox", "hub.default.svc.cluster.local/demo/hello:v1", "localhost:5000/a/b@sha256:" + "a" * 64, "Host/repo"],
)
def test_valid_image_references(image):
    assert _validation.parse_image_reference(image) is not None


@pytest.mark.parametrize("image", ["", "a b", "hub/Hello", "img:", "img\n", "img@sha256:xyz", "/x", "a" * 256])
def test_invalid_image_references(image):
    assert _validation.parse_image_reference(image) is None


@pytest.mark.parametrize("name", ["A", "my.env-name", "_x", "MY_ENV.NAME"])
def test_env_var_names(name):
    assert _validation.is_env_var_name(name)


@pytest.mark.parametrize("name", ["", "1BAD", "BAD NAME", "A=B", "NUL\x00", ".", "..", "..x", 5])
def test_bad_env_var_names(name):
    assert not _validation.is_env_var_name(name)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["a"], "name must be a string, got a list"),
        (True, "name must be a string, got a boolean"),
        ({"a": 1}, "name must be a string, got a dict"),
    ],
)
def test_strict_types_refuse_what_ansible_would_convert_for_strings(value, message):
    assert strict_type_problem({"name": {"type": "str"}}, {"name": value}) == message


@pytest.mark.parametrize("value", [True, "1e3", "0o10", 1.5, [1], {"a": 1}])
def test_strict_types_refuse_what_ansible_would_convert_for_ints(value):
    assert strict_type_problem({"port": {"type": "int"}}, {"port": value}).startswith("port must be a whole number")


@pytest.mark.parametrize("value", [8080, "8080", " 8080 ", 8080.0])
def test_strict_types_keep_what_is_a_whole_number(value):
    assert strict_type_problem({"port": {"type": "int"}}, {"port": value}) is None


def test_strict_types_walk_suboptions_and_elements():
    spec = {"volumes": {"type": "list", "elements": "dict", "options": {"name": {"type": "str"}}}}
    assert strict_type_problem(spec, {"volumes": [{"name": ["x"]}]}) == "volumes[0].name must be a string, got a list"
    assert strict_type_problem(spec, {"volumes": [5]}) == "volumes[0] must be a dict, got int"
    assert strict_type_problem({"args": {"type": "list", "elements": "str"}}, {"args": 5}) == (
        "args must be a list, got int"
    )
