# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: autodeploy_settings
short_description: The receiver's bindings and the hub's notification endpoint, as the autodeploy role writes them
version_added: 0.2.0
author:
  - knlab serverless developers (@knlab)
description:
  - Turns the checked variables of the M(knlab.serverless.autodeploy) role and the event token into
    what the role writes, byte for byte the same for the same input, so an unchanged run changes
    nothing.
  - RV(_value.bindings) is the list of bindings with C(tag) filled in (V(latest) when not given),
    RV(_value.bindings_json) the receiver's C(AUTODEPLOY_BINDINGS).
  - RV(_value.endpoints) is the value of C(REGISTRY_NOTIFICATIONS_ENDPOINTS), a YAML list with one
    endpoint (distribution 2.8 reads a list only in this form, not as indexed variables), and
    RV(_value.endpoints_digest) its SHA-256, the annotation that rolls the hub when it changes.
  - RV(_value.token_digest) is a SHA-256 of the token (with the receiver's namespace and name
    before it, so equal tokens of two receivers differ), the annotation that rolls the receiver
    when the token changes (the receiver reads its token only when it starts).
options:
  _input:
    description:
      - C(name), C(namespace) (the receiver's), C(bindings), C(timeout), C(threshold) and
        C(backoff) (the endpoint's delivery settings).
    type: dict
    required: true
  token:
    description: The token the hub sends as C(Authorization) header C(Bearer <token>).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Work out what to write
  ansible.builtin.set_fact:
    _settings: >-
      {{ {'name': 'autodeploy', 'namespace': 'default', 'bindings': [{'repository': 'hello', 'service': 'hello'}],
          'timeout': '2s', 'threshold': 5, 'backoff': '1s'} | knlab.serverless.autodeploy_settings(token) }}
  no_log: true
"""

RETURN = r"""
_value:
  description: What the role writes.
  type: dict
  contains:
    bindings:
      description: The bindings, each with repository, tag and service.
      type: list
      elements: dict
    bindings_json:
      description: The bindings as the receiver reads them (compact JSON).
      type: str
    events_url:
      description: The receiver's cluster-local events URL.
      type: str
    endpoints:
      description: The YAML list for C(REGISTRY_NOTIFICATIONS_ENDPOINTS). Holds the token.
      type: str
    endpoints_digest:
      description: C(sha256:) and the hex SHA-256 of RV(_value.endpoints).
      type: str
    token_digest:
      description:
        - C(sha256:) and the hex SHA-256 of C(autodeploy-token/<namespace>/<name>), a NUL byte and
          the token. Never the token itself; it changes exactly when the token (or the receiver)
          does.
      type: str
"""

# After the documentation, as ansible-test's validate-modules wants it.
import hashlib  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402


def _q(value: Any) -> str:
    # A JSON string is a YAML double-quoted scalar: nothing in it is read as YAML syntax.
    return json.dumps(str(value))


def autodeploy_settings(variables: dict, token: str) -> dict:
    bindings = [
        {"repository": str(item["repository"]), "tag": str(item.get("tag", "latest")), "service": str(item["service"])}
        for item in variables["bindings"]
    ]
    url = f"http://{variables['name']}.{variables['namespace']}.svc.cluster.local/events"
    lines = [
        f"- name: {_q(variables['name'])}",
        f"  url: {_q(url)}",
        "  headers:",
        "    Authorization:",
        f"      - {_q('Bearer ' + token)}",
        f"  timeout: {_q(variables['timeout'])}",
        f"  threshold: {int(variables['threshold'])}",
        f"  backoff: {_q(variables['backoff'])}",
        # Layer pushes and every pull are of no use to the receiver: the hub does not send them.
        "  ignoredmediatypes:",
        '    - "application/octet-stream"',
        "  ignore:",
        "    actions:",
        '      - "pull"',
    ]
    endpoints = "\n".join(lines) + "\n"
    # The receiver's namespace and name first: equal tokens of two receivers give two digests.
    salted_token = f"autodeploy-token/{variables['namespace']}/{variables['name']}\0{token}"
    return {
        "bindings": bindings,
        "bindings_json": json.dumps(bindings, separators=(",", ":"), sort_keys=True),
        "events_url": url,
        "endpoints": endpoints,
        "endpoints_digest": "sha256:" + hashlib.sha256(endpoints.encode()).hexdigest(),
        "token_digest": "sha256:" + hashlib.sha256(salted_token.encode()).hexdigest(),
    }


class FilterModule:
    def filters(self) -> dict:
        return {"autodeploy_settings": autodeploy_settings}
