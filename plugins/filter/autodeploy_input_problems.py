# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: autodeploy_input_problems
short_description: What is wrong with the knlab.serverless.autodeploy role's variables
version_added: 0.2.0
author:
  - knlab serverless developers (@knlab)
description:
  - Checks every variable of the M(knlab.serverless.autodeploy) role the way the cluster, the
    registry and the receiver would judge it (Knative Service and Secret names, repository and tag
    grammar, the registry's durations, host and URL forms, ranges) and returns one sentence per
    variable that is wrong.
  - The role's first task fails with these sentences before any request.
  - Integers may come as text, as C(-e name=value) gives them.
options:
  _input:
    description: The role's variables, C(autodeploy_name) to C(autodeploy_wait_timeout), by name.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the role's settings before the first request
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "autodeploy: {{ problems | join('; ') }}"
  vars:
    problems: "{{ {'autodeploy_name': autodeploy_name} | knlab.serverless.autodeploy_input_problems }}"
"""

RETURN = r"""
_value:
  description: One message per wrong variable, each naming it; empty when all are right.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
from typing import Any  # noqa: E402

from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import (  # noqa: E402
    RE_DNS_LABEL,
    RE_DNS_SUBDOMAIN,
    RE_HOST,
    RE_REPOSITORY,
    RE_TAG,
    got,
    int_in,
    is_mapping,
    is_sequence,
    is_string,
    match,
)

_RE_SERVICE_NAME = r"(?=.{1,63}\Z)[a-z](?:[-a-z0-9]*[a-z0-9])?\Z"
_RE_RECEIVER_NAME = r"(?=.{1,40}\Z)[a-z](?:[-a-z0-9]*[a-z0-9])?\Z"
_RE_LABEL_NAME = rf"(?=.{{1,63}}\Z){RE_DNS_LABEL}\Z"
_RE_SUBDOMAIN_NAME = rf"(?=.{{1,253}}\Z){RE_DNS_SUBDOMAIN}\Z"
_RE_REPOSITORY = rf"(?=.{{1,255}}\Z){RE_REPOSITORY}\Z"
_RE_TAG = rf"{RE_TAG}\Z"
_RE_HOST_ONLY = rf"(?=.{{1,253}}\Z){RE_HOST}\Z"
# A Go duration as the registry's config reads it (time.ParseDuration): positive, units ms s m h.
_RE_DURATION = r"(?=.{1,32}\Z)(?=.*[1-9])(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+\Z"
# The hub's URL: http(s), a host, an optional port, no path beyond "/", no query.
_RE_HUB_URL = rf"https?://{RE_HOST}/?\Z"
_BINDING_KEYS = ("repository", "tag", "service")

_SERVICE_RULE = (
    "a Knative Service name, a DNS-1035 label (at most 63 lowercase letters, digits and hyphens, starting with a"
    " letter and ending with a letter or digit)"
)
_LABEL_RULE = (
    "a DNS-1123 label (at most 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit)"
)
_RECEIVER_RULE = (
    "a DNS-1035 label of at most 40 characters (lowercase letters, digits and hyphens, starting with a letter and"
    " ending with a letter or digit; the build role names its objects after it)"
)
_HUB_URL_RULE = "an http(s) URL of the hub without a path, such as http://hub.default.svc.cluster.local"
_SUBDOMAIN_RULE = "a DNS-1123 subdomain (lowercase letters, digits, hyphens and dots, at most 253)"


def _text(v: dict, name: str, pattern: str, rule: str, *, empty: bool = False) -> str:
    value = v[name]
    if not is_string(value):
        return f"{name} must be a string, got {got(value)}"
    if empty and value == "":
        return ""
    if not match(value, pattern):
        return f"{name} must be {rule}, got {got(value)}"
    return ""


def _integer(v: dict, name: str, low: int, high: int, rule: str = "") -> str:
    if int_in(v[name], low, high):
        return ""
    return f"{name} must be an integer from {low} to {high}{rule}, got {got(v[name])}"


def _binding_problem(index: int, item: Any, v: dict) -> str:
    where = f"autodeploy_bindings[{index}]"
    if not is_mapping(item):
        return f"{where} must be a dict with repository, service and optionally tag, got {got(item)}"
    unknown = sorted(str(key) for key in item if key not in _BINDING_KEYS)
    if unknown:
        return f"{where} has unknown keys {', '.join(unknown)} (known: repository, tag, service)"
    for key in ("repository", "service"):
        if key not in item:
            return f"{where} needs {key}"
    if not is_string(item["repository"]) or not match(item["repository"], _RE_REPOSITORY):
        return (
            f"{where}.repository must be a repository name (lowercase path components separated by /, such as"
            f" hello or team/hello), got {got(item['repository'])}"
        )
    if "tag" in item and (not is_string(item["tag"]) or not match(item["tag"], _RE_TAG)):
        return f"{where}.tag must be a tag (letters, digits, _, . and -, at most 128), got {got(item['tag'])}"
    if not is_string(item["service"]) or not match(item["service"], _RE_SERVICE_NAME):
        return f"{where}.service must be {_SERVICE_RULE}, got {got(item['service'])}"
    if item["service"] in (v["autodeploy_name"], v["autodeploy_hub_name"]):
        return f"{where}.service must not be the receiver or the hub, got {got(item['service'])}"
    return ""


def _bindings(v: dict) -> list[str]:
    value = v["autodeploy_bindings"]
    if not is_sequence(value) or is_string(value) or is_mapping(value) or not value:
        return [
            f"autodeploy_bindings must be a non-empty list of dicts with repository, tag and service, got {got(value)}"
        ]
    problems = [_binding_problem(index, item, v) for index, item in enumerate(value)]
    problems = [problem for problem in problems if problem]
    if not problems:
        services = [item["service"] for item in value]
        twice = sorted({service for service in services if services.count(service) > 1})
        if twice:
            problems.append(f"autodeploy_bindings binds the Service {', '.join(twice)} more than once")
    return problems


def _duration(v: dict, name: str) -> str:
    value = v[name]
    if is_string(value) and match(value, _RE_DURATION):
        return ""
    return f"{name} must be a positive Go duration such as 500ms, 2s or 1m, got {got(value)}"


def autodeploy_input_problems(variables: dict) -> list[str]:
    """One message per wrong variable of the autodeploy role's main entry point."""
    v = variables
    token_secret = _text(v, "autodeploy_token_secret", _RE_SUBDOMAIN_NAME, _SUBDOMAIN_RULE)
    endpoints_secret = _text(v, "autodeploy_endpoints_secret", _RE_SUBDOMAIN_NAME, _SUBDOMAIN_RULE)
    if not token_secret and not endpoints_secret and v["autodeploy_endpoints_secret"] == v["autodeploy_token_secret"]:
        endpoints_secret = "autodeploy_endpoints_secret must not be the same Secret as autodeploy_token_secret"
    problems = [
        # The build role names its Task and ConfigMaps after it: at most 40 characters there.
        _text(v, "autodeploy_name", _RE_RECEIVER_NAME, _RECEIVER_RULE),
        _text(v, "autodeploy_namespace", _RE_LABEL_NAME, _LABEL_RULE),
        _text(v, "autodeploy_hub_name", _RE_SERVICE_NAME, _SERVICE_RULE),
        _text(v, "autodeploy_hub_namespace", _RE_LABEL_NAME, _LABEL_RULE),
        *_bindings(v),
        token_secret,
        endpoints_secret,
        _text(v, "autodeploy_hub_auth_secret", _RE_SUBDOMAIN_NAME, _SUBDOMAIN_RULE, empty=True),
        _integer(v, "autodeploy_resync_seconds", 5, 86400, " (seconds)"),
        _duration(v, "autodeploy_endpoint_timeout"),
        _integer(v, "autodeploy_endpoint_threshold", 1, 1000),
        _duration(v, "autodeploy_endpoint_backoff"),
        _text(v, "autodeploy_pull_host", _RE_HOST_ONLY, "a host[:port] (no scheme, no path)"),
        _text(v, "autodeploy_hub_url", _RE_HUB_URL, _HUB_URL_RULE),
        _integer(v, "autodeploy_wait_timeout", 1, 86400, " (seconds)"),
    ]
    return [problem for problem in problems if problem]


class FilterModule:
    def filters(self) -> dict:
        return {"autodeploy_input_problems": autodeploy_input_problems}
