"""What the integration tests share: a sandbox of their own per test, and skips for what they need.

- ``sandbox``: a ``SandboxCLI`` (sandbox_cli.py) up on random loopback ports in the test's
  tmp_path, stopped after the test (with its S3 server, if the test started one); a module whose
  tests want more of it subclasses ``SandboxCLI`` and overrides the ``sandbox_class`` fixture
  to return its subclass;
- ``registry_playbook``: a playbook that runs the registry role alone (``sandbox.play(path, **vars)``);
- marks: ``needs_docker_registry`` (the sandbox runs Debian's docker-registry for every hub) and
  ``needs_s3_server`` (``knlab-sandbox s3 up`` runs versitygw, built with Go unless
  ``$KNLAB_VERSITYGW`` names it) skip a test when this machine lacks them; a module sets them with
  ``pytestmark = [pytest.mark.needs_docker_registry, ...]``.

Test modules import the helpers from sandbox_cli.py, not from here: pytest imports every conftest.py
under the one name ``conftest``, so ``from conftest import ...`` may find another directory's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_cli import REGISTRY_PLAY, SandboxCLI

NEEDS = {
    "needs_docker_registry": (
        lambda: bool(os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry")),
        "the sandbox's hub needs docker-registry (apt-get install docker-registry)",
    ),
    "needs_s3_server": (
        lambda: bool(os.environ.get("KNLAB_VERSITYGW") or shutil.which("go")),
        "the S3 server is built from cluster/go/versitygw: it needs Go (or $KNLAB_VERSITYGW)",
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    for name, (_found, reason) in NEEDS.items():
        config.addinivalue_line("markers", f"{name}: skip unless this machine has it ({reason})")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = {name: reason for name, (found, reason) in NEEDS.items() if not found()}
    for item in items:
        for name, reason in missing.items():
            if item.get_closest_marker(name):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def sandbox_class() -> type[SandboxCLI]:
    """The class the ``sandbox`` fixture makes; a module overrides it with its ``SandboxCLI`` subclass."""
    return SandboxCLI


@pytest.fixture
def sandbox(tmp_path: Path, sandbox_class: type[SandboxCLI]) -> Iterator[SandboxCLI]:
    with sandbox_class(tmp_path / "sandbox") as sandbox:
        yield sandbox


@pytest.fixture
def registry_playbook(tmp_path: Path) -> Path:
    playbook = tmp_path / "hub.yml"
    playbook.write_text(REGISTRY_PLAY)
    return playbook
