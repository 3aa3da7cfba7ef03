"""Modules run in a fork of the controller (plugin_utils/_fork.py): the module's own answer, its own
exit handlers only, and its temp files gone when it ends."""

from __future__ import annotations

import ast
import atexit
import base64
import json
import sys
import tempfile
from pathlib import Path

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils import _kubeconfig
from ansible_collections.knlab.serverless.plugins.plugin_utils._fork import MODULES, PROFILE, run_in_fork, same_python

MODULES_DIR = Path(__file__).resolve().parents[4] / "plugins" / "modules"


def _params(**args: object) -> bytes:
    return json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()


def test_the_module_answers_with_its_own_json_and_exit_code() -> None:
    done = run_in_fork(
        MODULES + "registry_image_info",
        _params(registry_url="http://127.0.0.1:1", repository="Not/A Repository"),
        PROFILE,
    )
    assert done["rc"] == 1
    result = json.loads(done["stdout"])
    assert result["failed"] is True
    assert "repository" in result["msg"]
    assert done["stderr"] == ""


def test_started_is_called_once_the_child_runs() -> None:
    calls = []
    done = run_in_fork(
        MODULES + "registry_image_info",
        _params(registry_url="not a url", repository="demo/hello"),
        PROFILE,
        started=lambda: calls.append("started"),
    )
    assert calls == ["started"]
    assert json.loads(done["stdout"])["failed"] is True


def test_the_controllers_exit_handlers_stay_in_the_controller(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    def controller_cleanup() -> None:  # stands for Ansible removing its local temp dir
        marker.write_text("the child ran the controller's exit handler")

    atexit.register(controller_cleanup)
    try:
        run_in_fork(MODULES + "registry_image_info", _params(registry_url="x", repository="y"), PROFILE)
    finally:
        atexit.unregister(controller_cleanup)
    assert not marker.exists()


def test_the_modules_temp_files_go_and_the_controllers_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(_kubeconfig, "_TEMP_FILES", {})
    controllers = Path(_kubeconfig._temp_file(b"the controller's own certificate"))
    ca = b"-----BEGIN CERTIFICATE-----\nnot really one\n-----END CERTIFICATE-----\n"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://127.0.0.1:1",
                            "certificate-authority-data": base64.b64encode(ca).decode(),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    try:
        done = run_in_fork(
            MODULES + "kube_objects",
            _params(kubeconfig=str(kubeconfig), read=[{"api_version": "v1", "kind": "ConfigMap", "name": "a"}]),
            PROFILE,
        )
        result = json.loads(done["stdout"])
        assert result["failed"] is True, result  # nothing listens on port 1
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["kubeconfig", controllers.name])
        assert controllers.exists()
    finally:
        _kubeconfig.remove_temp_files()
    assert not controllers.exists()


def test_no_module_declares_metadata_so_ansible_uses_the_legacy_profile() -> None:
    """The fork encodes arguments with PROFILE; a module with METADATA could ask Ansible for another one."""
    assert PROFILE == "legacy"
    for module in sorted(MODULES_DIR.glob("*.py")):
        tree = ast.parse(module.read_text())
        names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if hasattr(t, "id")}
        assert "METADATA" not in names, module.name


def test_same_python() -> None:
    assert same_python(sys.executable)
    assert not same_python("/nonexistent/python3")
