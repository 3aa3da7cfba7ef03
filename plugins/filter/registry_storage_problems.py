# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: registry_storage_problems
short_description: Whether a run of the knlab.serverless.registry role would move the hub off its images
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - Compares where the hub as it runs now keeps its images (the claim mounted at
    C(/var/lib/registry), or none for the pod's own filesystem, and the env that picks another
    storage driver or directory, C(REGISTRY_STORAGE) and C(REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY))
    with where this run would put them.
  - A hub that keeps its images on a claim (or in storage its env chose) loses them when a run
    moves it elsewhere, so that takes the user's word, C(registry_allow_storage_change). A hub
    without a claim keeps its images in its pod, which loses them anyway, so moving it onto a claim
    needs no word.
  - Returns the sentence that explains the refusal (without the C(registry:) prefix), or nothing.
options:
  _input:
    description:
      - C(registry_name), C(registry_namespace), C(registry_persistence), C(registry_pvc_name) and
        C(registry_allow_storage_change) (already checked by the role's input check);
        C(_registry_live_hub), the hub's Knative Service as it runs now (a list of none or one);
        C(_registry_env), the env this run gives the hub.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Refuse to move the hub off the storage that holds its images
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "registry: {{ problems | join('; ') }}"
  vars:
    problems: >-
      {{ {'registry_name': registry_name, 'registry_namespace': registry_namespace,
          'registry_persistence': registry_persistence, 'registry_pvc_name': registry_pvc_name,
          'registry_allow_storage_change': registry_allow_storage_change,
          '_registry_live_hub': _registry_live_hub, '_registry_env': _registry_env}
         | knlab.serverless.registry_storage_problems }}
"""

RETURN = r"""
_value:
  description: The reason this run would lose the hub's images, as one sentence; empty when it would not.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
from collections.abc import Mapping  # noqa: E402
from typing import Any  # noqa: E402

from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import to_bool  # noqa: E402

# The driver, and where each driver keeps the images (another bucket or prefix is other storage).
_STORAGE_ENV_NAMES = (
    "REGISTRY_STORAGE",
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
    "REGISTRY_STORAGE_S3_REGIONENDPOINT",
    "REGISTRY_STORAGE_S3_BUCKET",
    "REGISTRY_STORAGE_S3_ROOTDIRECTORY",
)
_STORAGE_PATH = "/var/lib/registry"
_NO_CLAIM = "into its pod only (no claim, registry_persistence is false)"


def _field(item: Any, name: str) -> Any:
    """``item.name`` of a part of a Kubernetes object; None when it is not there."""
    return item.get(name) if isinstance(item, Mapping) else None


def live_claim(container: Mapping, pod_spec: Mapping) -> str:
    """The claim mounted at /var/lib/registry in the running hub, '' for none."""
    mounts = [
        _field(mount, "name")
        for mount in _field(container, "volumeMounts") or []
        if _field(mount, "mountPath") == _STORAGE_PATH
    ]
    for volume in _field(pod_spec, "volumes") or []:
        if _field(volume, "name") in mounts:
            claim = _field(volume, "persistentVolumeClaim")
            return claim.get("claimName", "") if isinstance(claim, Mapping) else ""
    return ""


def live_storage_env(container: Mapping) -> dict[str, str]:
    """The storage env of the running hub, as text ('' for a variable without a value)."""
    found = {}
    for item in _field(container, "env") or []:
        if _field(item, "name") in _STORAGE_ENV_NAMES:
            found[item["name"]] = str(item["value"]) if "value" in item else ""
    return found


def _env_text(value: Any) -> str:
    # As knative_service sends it: booleans as true/false (str() would say True, and every re-run
    # would then see another storage than the running hub's).
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def storage_env(env: Mapping) -> dict[str, str]:
    """The storage env this run gives the hub, as text (a null value sets nothing)."""
    return {name: _env_text(value) for name, value in env.items() if name in _STORAGE_ENV_NAMES and value is not None}


def _where(claim: str, env: dict[str, str], on_claim: str, without_claim: str) -> str:
    where = f"{on_claim} {claim}" if claim else without_claim
    if env:
        where += " with " + ", ".join(f"{name}={value}" for name, value in env.items())
    return where


def registry_storage_problems(variables: dict) -> list[str]:
    """The refusal, as a one-item list, when this run would move the hub off the storage of its images."""
    v = variables
    hub = v["_registry_live_hub"]
    if to_bool(v["registry_allow_storage_change"]) or len(hub) == 0:
        return []
    pod_spec = _field(_field(_field(hub[0] or {}, "spec"), "template"), "spec") or {}
    container = (_field(pod_spec, "containers") or [{}])[0]
    was_claim, was_env = live_claim(container, pod_spec), live_storage_env(container)
    claim = v["registry_pvc_name"] if to_bool(v["registry_persistence"]) else ""
    env = storage_env(v["_registry_env"])
    if (was_claim == "" and len(was_env) == 0) or (was_claim == claim and was_env == env):
        return []
    if was_claim:
        keep = f"registry_persistence=true and registry_pvc_name={was_claim}"
    elif was_env.get("REGISTRY_STORAGE") == "s3":
        keep = "registry_storage=s3 with the same endpoint, bucket and root directory"
    else:
        keep = "the storage settings in registry_env"
    return [
        f"the hub {v['registry_namespace']}/{v['registry_name']} keeps its images"
        f" {_where(was_claim, was_env, 'on PersistentVolumeClaim', 'in its pod')}; this run would move it"
        f" {_where(claim, env, 'to PersistentVolumeClaim', _NO_CLAIM)},"
        " and the hub would start again without those images (apps pinned to them could no longer be pulled)."
        " Nothing was changed. Set registry_allow_storage_change=true to do it anyway (copy the images first if"
        f" you need them), or keep {keep}."
    ]


class FilterModule:
    def filters(self) -> dict:
        return {"registry_storage_problems": registry_storage_problems}
