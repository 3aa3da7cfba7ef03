# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: build_input_problems
short_description: What is wrong with the knlab.serverless.build role's variables
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - Checks every variable of the M(knlab.serverless.build) role the way the cluster, the registry
    and the role would judge it (names, the source path, registry hosts, image references, the Go
    duration of the timeout, label keys and values, ranges) and returns one sentence per variable
    that is wrong.
  - The role's first task fails with these sentences before any request. Types are checked again
    here because the role's argument spec converts loosely (a list passes as a str option).
  - Integers and booleans may come as text, as C(-e name=value) gives them.
options:
  _input:
    description: The role's variables, C(build_name) to C(build_keep_sources), by name.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the build settings before the first request
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "build: {{ problems | join('; ') }}"
  vars:
    problems: "{{ {'build_name': build_name, 'build_timeout': build_timeout} | knlab.serverless.build_input_problems }}"
"""

RETURN = r"""
_value:
  description: One message per wrong variable, each naming it; empty when all are right.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
import os  # noqa: E402
import re  # noqa: E402

from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import (  # noqa: E402
    RE_CONFIGMAP_KEY,
    RE_DNS_LABEL,
    RE_DNS_SUBDOMAIN,
    RE_HOST,
    RE_REPOSITORY,
    RE_TAG,
    bool_like,
    got,
    image_reference,
    int_in,
    is_mapping,
    is_sequence,
    is_string,
    label_dict_problem,
    match,
    rejected,
    search,
)

_RE_NAME = r"[a-z0-9](?:[-a-z0-9]{0,38}[a-z0-9])?\Z"
_RE_LABEL_NAME = rf"(?=.{{1,63}}\Z){RE_DNS_LABEL}\Z"
_RE_TASK_NAME = rf"(?=.{{1,63}}\Z){RE_DNS_SUBDOMAIN}\Z"
_RE_SECRET_NAME = rf"(?=.{{1,253}}\Z){RE_DNS_SUBDOMAIN}\Z"
_RE_REGISTRY_URL = rf"https?://{RE_HOST}/?\Z"
_RE_REGISTRY = rf"(?=.{{1,259}}\Z){RE_HOST}\Z"
_RE_REPOSITORY_NAME = rf"(?=.{{1,255}}\Z){RE_REPOSITORY}\Z"
_RE_TAG_NAME = rf"{RE_TAG}\Z"
_RE_CONTROL = r"[\x00-\x1f\x7f]"
# A Go duration (15m, 1h30m, 90s) and its units in seconds: the same as _build_re_duration_part and
# _build_duration_units in roles/build/vars/main.yml, which make _build_wait_seconds from it (a unit
# test keeps the two the same). \u00b5 is the micro sign, \u03bc the Greek mu: Go accepts both.
DURATION_PART = "([0-9]+(?:[.][0-9]*)?|[.][0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
DURATION_UNITS = {
    "ns": 0.000000001,
    "us": 0.000001,
    "\u00b5s": 0.000001,
    "\u03bcs": 0.000001,
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
}
_RE_DURATION = rf"[+]?(?:{DURATION_PART})+\Z"
_RESERVED_LABEL = "serverless.knlab.io/idempotency-key"
_OWNED_LABELS = ("app.kubernetes.io/managed-by", "serverless.knlab.io/build", "serverless.knlab.io/source")
_SUBDOMAIN_RULE = "(a DNS-1123 subdomain: at most 253 lowercase letters, digits, hyphens and dots)"


def duration_seconds(text: str) -> float:
    """The seconds of a Go duration, summed part by part as vars/main.yml's _build_timeout_seconds does."""
    total = 0
    for number, unit in re.findall(DURATION_PART, text):
        total = total + float(number) * DURATION_UNITS[unit]
    return total


def _not_string(name: str, value) -> str:
    return f"{name} must be a string, got {got(value)}"


def _name(v: dict) -> str:
    value = v["build_name"]
    if not is_string(value):
        return _not_string("build_name", value)
    if not match(value, _RE_NAME):
        return (
            "build_name must be at most 40 lowercase letters, digits and hyphens, starting and ending with a letter"
            f" or digit, got {got(value)}"
        )
    return ""


def _namespace(v: dict) -> str:
    value = v["build_namespace"]
    if not is_string(value):
        return _not_string("build_namespace", value)
    if not match(value, _RE_LABEL_NAME):
        return (
            "build_namespace must be a DNS-1123 label (at most 63 lowercase letters, digits and hyphens, starting"
            f" and ending with a letter or digit), got {got(value)}"
        )
    return ""


def _source_dir(v: dict) -> str:
    value = v["build_source_dir"]
    if not is_string(value):
        return _not_string("build_source_dir", value)
    if len(value) > 4096 or search(value, _RE_CONTROL) or not os.path.isabs(os.path.expanduser(value)):
        return (
            "build_source_dir must be an absolute path on the controller, at most 4096 characters without control"
            f" characters, got {got(value)}"
        )
    return ""


def _dockerfile(v: dict) -> str:
    value = v["build_dockerfile"]
    if not is_string(value):
        return _not_string("build_dockerfile", value)
    if not match(value, RE_CONFIGMAP_KEY):
        return (
            "build_dockerfile must be a file name in build_source_dir that can be a ConfigMap key (at most 253"
            f" letters, digits, hyphens, underscores and dots, not . and not starting with ..), got {got(value)}"
        )
    return ""


def _push_host(v: dict) -> str:
    value = v["build_push_host"]
    if not is_string(value):
        return _not_string("build_push_host", value)
    if not value:
        return (
            "build_push_host is empty. Run the knlab.serverless.registry role first (it sets registry_push_host)"
            " or set build_push_host to the registry host builds push to"
        )
    if not match(value, _RE_REGISTRY):
        return (
            "build_push_host must be a registry host with an optional port (registry.example.com, localhost:5001),"
            f" got {got(value)}"
        )
    return ""


def _pull_host(v: dict) -> str:
    value = v["build_pull_host"]
    if not is_string(value):
        return _not_string("build_pull_host", value)
    if value and not match(value, _RE_REGISTRY):
        return (
            "build_pull_host must be empty (use build_push_host) or a registry host with an optional port,"
            f" got {got(value)}"
        )
    return ""


def _image_repository(v: dict) -> str:
    value, push, pull = v["build_image_repository"], v["build_push_host"], v["build_pull_host"]
    if not is_string(value):
        return _not_string("build_image_repository", value)
    if not match(value, _RE_REPOSITORY_NAME):
        return (
            "build_image_repository must be a repository path of lowercase letters and digits, separated by /, ., _,"
            f" __ or hyphens, got {got(value)}"
        )
    # Checked even when a host is wrong itself: the longer of the two names the image.
    if is_string(push) and is_string(pull) and max(len(push), len(pull)) + 1 + len(value) > 255:
        return (
            "build_image_repository makes, after build_push_host or build_pull_host and /, an image name of more"
            f" than 255 characters, got {got(value)}"
        )
    return ""


def _image_tag(v: dict) -> str:
    value = v["build_image_tag"]
    if not is_string(value):
        return _not_string("build_image_tag", value)
    if not match(value, _RE_TAG_NAME):
        return (
            "build_image_tag must be at most 128 letters, digits, underscores, dots and hyphens, not starting with"
            f" a dot or hyphen, got {got(value)}"
        )
    return ""


def _boolean(v: dict, name: str) -> str:
    return "" if bool_like(v[name]) else f"{name} must be a boolean, got {got(v[name])}"


def _registry_url(v: dict) -> str:
    value = v["build_registry_url"]
    if not is_string(value):
        return _not_string("build_registry_url", value)
    if value and not match(value, _RE_REGISTRY_URL):
        return (
            "build_registry_url must be empty or an http:// or https:// URL of the hub (scheme, host and port only),"
            f" got {got(value)}"
        )
    return ""


def _registry_host_header(v: dict) -> str:
    value = v["build_registry_host_header"]
    if not is_string(value):
        return _not_string("build_registry_host_header", value)
    if value and not match(value, _RE_REGISTRY):
        return (
            f"build_registry_host_header must be empty or a host name with an optional port 1-65535, got {got(value)}"
        )
    return ""


def _docker_config_secret(v: dict) -> str:
    value = v["build_docker_config_secret"]
    if not is_string(value):
        return _not_string("build_docker_config_secret", value)
    if value and not match(value, _RE_SECRET_NAME):
        return f"build_docker_config_secret must be empty or a Secret name {_SUBDOMAIN_RULE}, got {got(value)}"
    return ""


def _task_name(v: dict) -> str:
    value = v["build_task_name"]
    if not is_string(value):
        return _not_string("build_task_name", value)
    if not match(value, _RE_TASK_NAME):
        return (
            "build_task_name must be a Tekton Task name, a DNS-1123 subdomain of at most 63 characters (lowercase"
            f" letters, digits, hyphens and dots, starting and ending with a letter or digit), got {got(value)}"
        )
    return ""


def _builder_image(v: dict) -> str:
    value = v["build_builder_image"]
    if not is_string(value):
        return _not_string("build_builder_image", value)
    if not image_reference(value):
        return (
            "build_builder_image must be an image reference ([host[:port]/]repository[:tag][@sha256:digest], name at"
            f" most 255 characters), got {got(value)}"
        )
    return ""


def _extra_args(v: dict) -> str:
    value = v["build_extra_args"]
    if is_string(value) or is_mapping(value) or not is_sequence(value) or rejected(value, is_string):
        return f"build_extra_args must be a list of strings, got {got(value)}"
    if (
        len(value) > 100
        or [arg for arg in value if search(arg, _RE_CONTROL)]
        or [arg for arg in value if not len(arg) >= 1]
        or [arg for arg in value if len(arg) > 4096]
    ):
        return (
            "build_extra_args must hold at most 100 kaniko arguments, each 1 to 4096 characters without control"
            f" characters, got {got(value)}"
        )
    return ""


def _service_account(v: dict) -> str:
    value = v["build_service_account"]
    if not is_string(value):
        return _not_string("build_service_account", value)
    if value and not match(value, _RE_SECRET_NAME):
        return f"build_service_account must be empty or a ServiceAccount name {_SUBDOMAIN_RULE}, got {got(value)}"
    return ""


def _timeout(v: dict) -> str:
    value = v["build_timeout"]
    if not is_string(value):
        return f"build_timeout must be a string (a Go duration such as 15m or 1h30m), got {got(value)}"
    if len(value) > 64 or not match(value, _RE_DURATION) or not (0 < duration_seconds(value) <= 86400):
        return (
            f"build_timeout must be a positive Go duration of at most 24h, such as 90s, 15m or 1h30m, got {got(value)}"
        )
    return ""


def _integer(v: dict, name: str, low: int, high: int, rule: str = "") -> str:
    if int_in(v[name], low, high):
        return ""
    return f"{name} must be an integer from {low} to {high}{rule}, got {got(v[name])}"


def _labels(v: dict) -> str:
    value = v["build_labels"]
    problem = label_dict_problem("build_labels", value)
    if problem:
        return problem
    if _RESERVED_LABEL in value:
        return f"build_labels must not set {_RESERVED_LABEL}: the role keys its TaskRuns with it"
    # The role's own labels would win silently over the user's, and it finds its objects by them.
    owned = [key for key in _OWNED_LABELS if key in value]
    if owned:
        return f"build_labels must not set {', '.join(owned)}: the role sets these itself and finds its objects by them"
    return ""


def build_input_problems(variables: dict) -> list[str]:
    """One message per wrong variable of the build role, in the order the role has always checked them."""
    v = variables
    problems = [
        _name(v),
        _namespace(v),
        _source_dir(v),
        _dockerfile(v),
        _push_host(v),
        _pull_host(v),
        _image_repository(v),
        _image_tag(v),
        _boolean(v, "build_insecure_registry"),
        _boolean(v, "build_verify_image"),
        _boolean(v, "build_registry_validate_certs"),
        _registry_url(v),
        _registry_host_header(v),
        _docker_config_secret(v),
        _task_name(v),
        _builder_image(v),
        _extra_args(v),
        _service_account(v),
        _timeout(v),
        _integer(v, "build_wait_timeout", 1, 86400, " (seconds)"),
        _integer(v, "build_log_lines", 0, 10000),
        _labels(v),
        _integer(v, "build_keep_sources", 1, 1000),
    ]
    return [problem for problem in problems if problem]


class FilterModule:
    def filters(self) -> dict:
        return {"build_input_problems": build_input_problems}
