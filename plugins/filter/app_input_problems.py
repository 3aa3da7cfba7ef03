# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: app_input_problems
short_description: What is wrong with the knlab.serverless.app role's variables
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - Checks every variable of the M(knlab.serverless.app) role the way the cluster and the role
    would judge it (Knative Service names, image references, env names, ports, label and
    annotation keys, URLs, ranges) and returns one sentence per variable that is wrong.
  - The role's first task fails with these sentences before any request. Types are checked again
    here because the role's argument spec converts loosely (a list passes as a str option).
  - Integers and booleans may come as text, as C(-e name=value) gives them.
options:
  _input:
    description: The role's variables, C(app_name) to C(app_validate_certs), by name.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the app settings before the first request
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "app: {{ problems | join('; ') }}"
  vars:
    problems: "{{ {'app_name': app_name, 'app_namespace': app_namespace} | knlab.serverless.app_input_problems }}"
"""

RETURN = r"""
_value:
  description: One message per wrong variable, each naming it; empty when all are right.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.

from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import (  # noqa: E402
    KEY_RULE,
    RE_DNS_LABEL,
    RE_DNS_SUBDOMAIN,
    RE_HOST,
    RE_QUALIFIED_KEY,
    bool_like,
    got,
    image_reference,
    int_in,
    int_like,
    is_boolean,
    is_mapping,
    is_number,
    is_sequence,
    is_string,
    label_dict_problem,
    match,
    rejected,
    search,
    to_int,
)

_RE_SERVICE_NAME = r"(?=.{1,63}\Z)[a-z](?:[-a-z0-9]*[a-z0-9])?\Z"
_RE_LABEL_NAME = rf"(?=.{{1,63}}\Z){RE_DNS_LABEL}\Z"
_RE_SUBDOMAIN_NAME = rf"(?=.{{1,253}}\Z){RE_DNS_SUBDOMAIN}\Z"
_RE_ENV_NAME = r"(?![.][.])(?![.]\Z)[-._a-zA-Z][-._a-zA-Z0-9]*\Z"
# Printable ASCII without spaces: the smoke path may carry a query but no fragment (#), the base URL neither.
_RE_SMOKE_PATH = r"/[\x21\x22\x24-\x7e]{0,2047}\Z"
_RE_URL = rf"(?=.{{1,2048}}\Z)https?://{RE_HOST}(?:/[\x21\x22\x24-\x3e\x40-\x7e]*)?\Z"
_RE_TEXT_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
_RESERVED_ENV = ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION")
_RESERVED_PORTS = (8012, 8013, 8022, 9090, 9091, 8008)
_MIN_SCALE_KEYS = ("autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/minScale")
_MAX_SCALE_KEYS = ("autoscaling.knative.dev/max-scale", "autoscaling.knative.dev/maxScale")


def _name(v: dict) -> str:
    value = v["app_name"]
    if not is_string(value):
        return f"app_name must be a string, got {got(value)}"
    if not match(value, _RE_SERVICE_NAME):
        return (
            "app_name must be a Knative Service name, a DNS-1035 label (at most 63 lowercase letters, digits and"
            f" hyphens, starting with a letter and ending with a letter or digit), got {got(value)}"
        )
    return ""


def _namespace(v: dict) -> str:
    value = v["app_namespace"]
    if not is_string(value):
        return f"app_namespace must be a string, got {got(value)}"
    if not match(value, _RE_LABEL_NAME):
        return (
            "app_namespace must be a DNS-1123 label (at most 63 lowercase letters, digits and hyphens, starting"
            f" and ending with a letter or digit), got {got(value)}"
        )
    return ""


def _image(v: dict) -> str:
    value = v["app_image"]
    if not is_string(value):
        return f"app_image must be a string, got {got(value)}"
    if not value:
        return "app_image is empty. Run the knlab.serverless.build role first (it sets build_image) or set app_image"
    if not image_reference(value):
        return (
            "app_image must be an image reference ([host[:port]/]repository[:tag][@sha256:digest], name at most"
            f" 255 characters), got {got(value)}"
        )
    return ""


def _env(v: dict) -> str:
    value = v["app_env"]
    if (
        not is_mapping(value)
        or rejected(value.keys(), is_string)
        or [item for item in value.values() if not (is_string(item) or is_number(item) or item is None)]
    ):
        return f"app_env must be a dict of variable names to string, number or boolean values, got {got(value)}"
    bad = rejected(value.keys(), lambda key: match(key, _RE_ENV_NAME))
    if bad:
        return (
            "app_env has invalid names (letters, digits, underscores, hyphens and dots, not starting with a digit"
            f" or .., not .): {got(bad, 200)}"
        )
    reserved = [key for key in value if key in _RESERVED_ENV]
    if reserved:
        return f"app_env must not set {', '.join(reserved)}: Knative sets these itself"
    return ""


def _port(v: dict) -> str:
    value = v["app_port"]
    if value is not None and not (int_in(value, 1, 65535) and to_int(value) not in _RESERVED_PORTS):
        return (
            "app_port must be unset (null) or an integer from 1 to 65535 other than the ports Knative reserves"
            f" ({', '.join(str(port) for port in _RESERVED_PORTS)}), got {got(value)}"
        )
    return ""


def _scale(v: dict) -> list[str]:
    low, high = v["app_min_scale"], v["app_max_scale"]
    problems = []
    if low is not None and not int_in(low, 0, 2147483647):
        problems.append(f"app_min_scale must be unset (null) or an integer from 0 to 2147483647, got {got(low)}")
    if high is not None and not int_in(high, 0, 2147483647):
        problems.append(
            f"app_max_scale must be unset (null) or an integer from 0 (no bound) to 2147483647, got {got(high)}"
        )
    elif (
        (low is None or int_like(low))
        and (high is None or int_like(high))
        and low is not None
        and high is not None
        and to_int(high) != 0
        and to_int(high) < to_int(low)
    ):
        problems.append(f"app_max_scale ({high}) must not be less than app_min_scale ({low}); 0 means no bound")
    return problems


def _annotations(v: dict) -> list[str]:
    value = v["app_annotations"]
    problems = []
    if (
        not is_mapping(value)
        or rejected(value.keys(), is_string)
        or [item for item in value.values() if not (is_string(item) or is_number(item))]
        or [item for item in value.values() if is_boolean(item)]
    ):
        problems.append(
            f"app_annotations must be a dict of annotation keys to string or number values, got {got(value)}"
        )
    elif bad := rejected(value.keys(), lambda key: match(key, RE_QUALIFIED_KEY)):
        problems.append(f"app_annotations has invalid keys {KEY_RULE}: {got(bad, 200)}")
    elif len("".join(value.keys())) + len("".join(str(item) for item in value.values())) > 262144:
        problems.append("app_annotations add up to more than the 256 KiB Kubernetes allows")
    keys = [key for key in value if is_string(key)] if is_mapping(value) else []
    for variable, names in (("app_min_scale", _MIN_SCALE_KEYS), ("app_max_scale", _MAX_SCALE_KEYS)):
        clashing = [key for key in keys if key in names]
        if v[variable] is not None and clashing:
            problems.append(f"app_annotations must not set {', '.join(clashing)} together with {variable}")
    return problems


def _labels(v: dict) -> str:
    value = v["app_labels"]
    problem = label_dict_problem("app_labels", value)
    if not problem and "networking.knative.dev/visibility" in value:
        problem = "app_labels must not set networking.knative.dev/visibility: use app_cluster_local"
    return problem


def _service_account(v: dict) -> str:
    value = v["app_service_account"]
    if not is_string(value):
        return f"app_service_account must be a string, got {got(value)}"
    if value and not match(value, _RE_SUBDOMAIN_NAME):
        return (
            "app_service_account must be empty or a service account name (a DNS-1123 subdomain: at most 253"
            f" lowercase letters, digits, hyphens and dots), got {got(value)}"
        )
    return ""


def _pull_secrets(v: dict) -> str:
    value = v["app_image_pull_secrets"]
    if is_string(value) or is_mapping(value) or not is_sequence(value) or rejected(value, is_string):
        return f"app_image_pull_secrets must be a list of Secret names, got {got(value)}"
    bad = rejected(value, lambda name: match(name, _RE_SUBDOMAIN_NAME))
    if bad:
        return (
            "app_image_pull_secrets has invalid Secret names (DNS-1123 subdomains: at most 253 lowercase letters,"
            f" digits, hyphens and dots): {got(bad, 200)}"
        )
    return ""


def _boolean(v: dict, name: str) -> str:
    return "" if bool_like(v[name]) else f"{name} must be a boolean, got {got(v[name])}"


def _integer(v: dict, name: str, low: int, high: int, rule: str = "") -> str:
    if int_in(v[name], low, high):
        return ""
    return f"{name} must be an integer from {low} to {high}{rule}, got {got(v[name])}"


def _smoke_path(v: dict) -> str:
    value = v["app_smoke_path"]
    if not is_string(value):
        return f"app_smoke_path must be a string, got {got(value)}"
    if not match(value, _RE_SMOKE_PATH):
        return (
            "app_smoke_path must be a URL path starting with /, at most 2048 printable ASCII characters without"
            f" spaces or #, got {got(value)}"
        )
    return ""


def _smoke_status(v: dict) -> str:
    value = v["app_smoke_status"]
    if int_in(value, 100, 599):
        return ""
    return f"app_smoke_status must be an HTTP status code, an integer from 100 to 599, got {got(value)}"


def _smoke_text(v: dict) -> str:
    value = v["app_smoke_text"]
    if not is_string(value):
        return f"app_smoke_text must be a string, got {got(value)}"
    if len(value) > 4096 or search(value, _RE_TEXT_CONTROL):
        return (
            "app_smoke_text must be at most 4096 characters without control characters other than tabs and line"
            f" breaks, got {got(value)}"
        )
    return ""


def _ingress_address(v: dict) -> str:
    value = v["app_ingress_address"]
    if not is_string(value):
        return f"app_ingress_address must be a string, got {got(value)}"
    if value and not match(value, _RE_URL):
        return (
            "app_ingress_address must be empty or an http:// or https:// URL with a host, an optional port and"
            f" path, and no query, got {got(value)}"
        )
    return ""


def app_input_problems(variables: dict) -> list[str]:
    """One message per wrong variable of the app role, in the order of its argument spec."""
    v = variables
    problems = [_name(v), _namespace(v), _image(v), _env(v), _port(v), *_scale(v), *_annotations(v)]
    problems += [
        _labels(v),
        _service_account(v),
        _pull_secrets(v),
        _boolean(v, "app_cluster_local"),
        _integer(v, "app_wait_timeout", 1, 86400, " (seconds)"),
        _integer(v, "app_wait_listen_timeout", 0, 3600, " (seconds)"),
        _boolean(v, "app_smoke_test"),
        _smoke_path(v),
        _smoke_status(v),
        _smoke_text(v),
        _ingress_address(v),
        _integer(v, "app_smoke_retries", 0, 1000),
        _integer(v, "app_smoke_delay", 0, 3600, " (seconds)"),
        _integer(v, "app_smoke_timeout", 1, 3600, " (seconds)"),
        _boolean(v, "app_validate_certs"),
    ]
    return [problem for problem in problems if problem]


class FilterModule:
    def filters(self) -> dict:
        return {"app_input_problems": app_input_problems}
