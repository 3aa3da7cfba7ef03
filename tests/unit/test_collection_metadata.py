"""The collection's metadata agrees with its contents and with what CI installs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from ansible.module_utils.compat.version import LooseVersion
from ansible.release import __version__ as ansible_core_version

ROOT = Path(__file__).resolve().parents[2]


def _load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def _satisfies(version: str, spec: str) -> bool:
    """Evaluate a galaxy-style range such as '>=5.0.0,<7.0.0'."""
    ops = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: a == b,
    }
    for raw_clause in spec.split(","):
        clause = raw_clause.strip()
        for op in (">=", "<=", "==", ">", "<"):
            if clause.startswith(op):
                if not ops[op](LooseVersion(version), LooseVersion(clause[len(op) :])):
                    return False
                break
        else:
            raise ValueError(f"unsupported clause {clause!r}")
    return True


def test_action_group_lists_exactly_the_kubernetes_modules():
    """Group defaults are passed to every member, so only modules taking the auth options belong."""
    kube_modules = sorted(
        p.stem
        for p in (ROOT / "plugins" / "modules").glob("*.py")
        if "kubernetes.core.k8s_auth_options" in p.read_text()
    )
    assert kube_modules, "no module extends kubernetes.core.k8s_auth_options"
    assert sorted(_load("meta/runtime.yml")["action_groups"]["serverless"]) == kube_modules


def test_requires_ansible_accepts_the_installed_core():
    spec = _load("meta/runtime.yml")["requires_ansible"]
    assert spec.count(".") >= 2, "requires_ansible needs a full X.Y.Z version"
    assert _satisfies(ansible_core_version, spec)


def test_kubernetes_core_dependency_is_a_range_that_holds_the_installed_version():
    import ansible_collections.kubernetes.core as kcore

    spec = _load("galaxy.yml")["dependencies"]["kubernetes.core"]
    assert "<" in spec, "kubernetes.core must be pinned to a range with an upper bound"
    manifest = Path(next(iter(kcore.__path__))) / "MANIFEST.json"
    installed = json.loads(manifest.read_text())["collection_info"]["version"]
    assert _satisfies(installed, spec)


def test_requirements_yml_matches_galaxy_dependency():
    galaxy = _load("galaxy.yml")["dependencies"]
    wanted = {c["name"]: c["version"] for c in _load("requirements.yml")["collections"]}
    assert wanted == galaxy
