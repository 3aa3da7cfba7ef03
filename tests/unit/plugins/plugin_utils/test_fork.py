"""Modules run in a fork of the controller (plugin_utils/_fork.py): the module's own answer, its own
exit handlers only, and its temp files gone when it ends."""

from __future__ import annotations

import ast
import atexit
import base64
import json
import sys
import tempfile
import warnings
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


def test_same_python_is_this_very_path(tmp_path: Path) -> None:
    assert same_python(sys.executable)
    assert not same_python("/nonexistent/python3")
    other = tmp_path / "python3"  # another environment's python may be a symlink to the same binary
    other.symlink_to(Path(sys.executable).resolve())
    assert not same_python(str(other))


def test_module_warnings_go_into_the_result_even_when_forked_from_the_controller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ansible.module_utils import _internal

    monkeypatch.setattr(_internal, "is_controller", True)  # as in Ansible's worker
    done = run_in_fork(
        MODULES + "kube_objects",
        _params(kubeconfig="/nonexistent", validate_certs=True, verify_ssl=True, read=[]),
        PROFILE,
    )
    warned = json.dumps(json.loads(done["stdout"]).get("warnings", []))
    assert "Both option validate_certs and its alias verify_ssl are set" in warned


def test_the_module_runs_in_the_directory_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    args = _params(registry_url="http://127.0.0.1:1", repository="demo/hello", ca_path="ca.pem")
    elsewhere = json.loads(run_in_fork(MODULES + "registry_image_info", args, PROFILE, cwd="/")["stdout"])
    assert elsewhere["msg"] == "ca_path 'ca.pem' is not a readable file"
    there = json.loads(run_in_fork(MODULES + "registry_image_info", args, PROFILE, cwd=str(tmp_path))["stdout"])
    assert "is not a readable file" not in there["msg"], there


def test_the_module_imported_in_the_controller_runs_without_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    import importlib

    importlib.import_module(MODULES + "registry_image_info")  # as the action plugin does
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inherited by the child: runpy's RuntimeWarning would fail the module
        done = run_in_fork(MODULES + "registry_image_info", _params(registry_url="x", repository="demo/hello"), PROFILE)
    result = json.loads(done["stdout"])
    assert "registry_url" in result["msg"], result
