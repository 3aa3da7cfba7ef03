"""The registry role never drops the hub's images silently (issue 9 item 5), on a real sandbox.

One sandbox, prepared as an admin would (playbooks/sandbox-prepare.yml: the PVC feature flags),
runs the registry role with a claim; then:

1. the same settings again: passes, changes nothing;
2. persistence off, and another claim: each run stops with a message naming the claim that holds
   the images and registry_allow_storage_change, and sends not one write (request log) - the hub
   keeps its claim;
3. persistence off with registry_allow_storage_change=true: the hub runs without the claim.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_cli import ROOT, SandboxCLI, recap_changed

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

pytestmark = pytest.mark.needs_docker_registry


def hub_claims(sandbox: SandboxCLI) -> list[str]:
    volumes = sandbox.get("ksvc", "hub")["spec"]["template"]["spec"].get("volumes") or []
    return [v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v]


def test_the_hub_keeps_its_images_unless_the_user_says_otherwise(sandbox: SandboxCLI, registry_playbook: Path) -> None:
    code, output = sandbox.play(ROOT / "playbooks" / "sandbox-prepare.yml")
    assert code == 0, output[-3000:]
    code, output = sandbox.play(registry_playbook, registry_persistence=True)
    assert code == 0, output[-3000:]
    assert hub_claims(sandbox) == ["hub-data"]

    code, output = sandbox.play(registry_playbook, registry_persistence=True)
    assert code == 0, output[-3000:]
    assert recap_changed(output) == 0

    for settings, moved_to in (
        ({"registry_persistence": False}, "into its pod only"),
        ({"registry_persistence": True, "registry_pvc_name": "other-data"}, "to PersistentVolumeClaim other-data"),
    ):
        seen = len(sandbox.request_log())
        code, output = sandbox.play(registry_playbook, **settings)
        assert code != 0, output[-3000:]
        message = " ".join(output.split())
        assert "keeps its images on PersistentVolumeClaim hub-data" in message
        assert moved_to in message
        assert "Nothing was changed" in message and "registry_allow_storage_change=true" in message
        writes = [r for r in sandbox.request_log()[seen:] if r["method"] in WRITE_METHODS]
        assert writes == [], writes
        assert hub_claims(sandbox) == ["hub-data"]

    code, output = sandbox.play(registry_playbook, registry_persistence=False, registry_allow_storage_change=True)
    assert code == 0, output[-3000:]
    assert recap_changed(output) >= 1
    assert hub_claims(sandbox) == []
