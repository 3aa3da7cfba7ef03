# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: registry_feature_flag_problems
short_description: Whether Knative lets the knlab.serverless.registry role's hub use a claim
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - A hub that keeps its images on a PersistentVolumeClaim needs the Knative feature flags
    C(kubernetes.podspec-persistent-volume-claim) and C(kubernetes.podspec-persistent-volume-write)
    to be C(enabled) (in any case, as Knative reads them) in ConfigMap C(config-features).
  - Returns one sentence when the ConfigMap is missing or a flag is not enabled (it says how to
    enable them), or nothing.
options:
  _input:
    description:
      - C(registry_knative_namespace) (already checked by the role's input check) and
        C(_registry_features), the ConfigMap C(config-features) as read (a list of none or one).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Require the PVC feature flags to be enabled
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: >-
      {{ {'registry_knative_namespace': registry_knative_namespace, '_registry_features': _registry_features}
         | knlab.serverless.registry_feature_flag_problems }}
"""

RETURN = r"""
_value:
  description: What keeps the hub from using a claim, as one sentence; empty when nothing does.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
from collections.abc import Mapping  # noqa: E402

from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import match, to_json  # noqa: E402

_PVC_FLAGS = ("kubernetes.podspec-persistent-volume-claim", "kubernetes.podspec-persistent-volume-write")
# Knative reads flag values case-insensitively (Enabled is enabled).
_RE_ENABLED = r"(?i)enabled\Z"


def registry_feature_flag_problems(variables: dict) -> list[str]:
    """Why Knative would refuse the hub's claim, as a one-item list; empty when it would not."""
    namespace = variables["registry_knative_namespace"]
    features = variables["_registry_features"]
    if len(features) != 1:
        return [
            f"ConfigMap {namespace}/config-features was not found, so the Knative PVC feature flags cannot be"
            f" checked. Is Knative Serving installed in namespace {namespace} (registry_knative_namespace)? Set"
            " registry_check_feature_flags=false to skip this check."
        ]
    data = (features[0].get("data") if isinstance(features[0], Mapping) else None) or {}
    enabled = [key for key, value in data.items() if match(value, _RE_ENABLED)]
    off = [flag for flag in _PVC_FLAGS if flag not in enabled]
    if not off:
        return []
    one = len(off) == 1
    patch = to_json({"data": dict.fromkeys(off, "enabled")})
    return [
        "registry_persistence needs Knative to allow writable PersistentVolumeClaims, but"
        f' {" and ".join(off)} {"is" if one else "are"} not "enabled" in ConfigMap {namespace}/config-features.'
        f" Enable {'it' if one else 'them'} with: kubectl patch configmap config-features -n {namespace} --type"
        f" merge -p '{patch}' or run without persistence (registry_persistence=false)."
    ]


class FilterModule:
    def filters(self) -> dict:
        return {"registry_feature_flag_problems": registry_feature_flag_problems}
