"""registry_image_info run as Ansible runs it (arguments in, JSON out) against a real docker-registry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.knlab.serverless.plugins.module_utils import _registry
from ansible_collections.knlab.serverless.plugins.modules import registry_image_info
from ansible_collections.knlab.serverless.tests.unit.registry_server import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    PushedImage,
    RegistryServer,
    free_port,
    start_registry,
)

USER, PASSWORD = "builder", "s3cret-Pa55"


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[tuple[RegistryServer, dict[str, PushedImage]]]:
    with start_registry(tmp_path_factory.mktemp("hub"), auth=(USER, PASSWORD), realm="knlab-hub") as server:
        images = {
            "v1": server.push_image("demo/hello", "v1"),
            "v2": server.push_image("demo/hello", "v2", oci=True, files={"app.py": b"print('v2')\n"}),
        }
        yield server, images


def run_module(capsys, check_mode: bool = False, **args) -> dict:
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        registry_image_info.main()
    out = capsys.readouterr().out
    return json.loads(out)


def hub_args(server: RegistryServer, **extra) -> dict:
    return {"registry_url": server.url, "username": USER, "password": PASSWORD, **extra}


def test_lists_tags(hub, capsys):
    server = hub[0]
    result = run_module(capsys, **hub_args(server, repository="demo/hello"))
    assert result["changed"] is False
    assert result["exists"] is True
    assert result["tags"] == ["v1", "v2"]
    assert result["digest"] is None
    assert result["repository"] == "demo/hello"
    assert result["tag"] is None


def test_digest_of_a_tag(hub, capsys):
    server, images = hub
    result = run_module(capsys, **hub_args(server, repository="demo/hello", tag="v2"))
    assert result["exists"] is True
    assert result["digest"] == images["v2"].digest
    assert result["media_type"] == OCI_MANIFEST
    assert result["tag"] == "v2"


def test_digest_given_instead_of_a_tag(hub, capsys):
    server, images = hub
    result = run_module(capsys, **hub_args(server, repository="demo/hello", tag=images["v1"].digest))
    assert result["exists"] is True
    assert result["digest"] == images["v1"].digest
    assert result["media_type"] == DOCKER_MANIFEST


def test_check_mode_gives_the_same_answer(hub, capsys):
    server = hub[0]
    normal = run_module(capsys, **hub_args(server, repository="demo/hello", tag="v1"))
    checked = run_module(capsys, check_mode=True, **hub_args(server, repository="demo/hello", tag="v1"))
    assert checked == normal


def test_unknown_repository_is_not_an_error(hub, capsys):
    server = hub[0]
    result = run_module(capsys, **hub_args(server, repository="demo/never-pushed", tag="v1"))
    assert "failed" not in result
    assert result["exists"] is False
    assert result["tags"] == []
    assert result["digest"] is None


def test_unknown_tag_is_not_an_error(hub, capsys):
    server = hub[0]
    result = run_module(capsys, **hub_args(server, repository="demo/hello", tag="v404"))
    assert "failed" not in result
    assert result["exists"] is False
    assert result["tags"] == ["v1", "v2"]
    assert result["media_type"] is None


def test_authentication_required_without_credentials(hub, capsys):
    server = hub[0]
    result = run_module(capsys, registry_url=server.url, repository="demo/hello")
    assert result["failed"] is True
    assert result["msg"] == (
        f"registry {server.url} requires authentication (HTTP 401 on GET /v2/,"
        ' challenge: Basic realm="knlab-hub"): set username and password'
    )


def test_wrong_password_fails_and_is_not_echoed(hub, capsys):
    server = hub[0]
    result = run_module(capsys, registry_url=server.url, repository="demo/hello", username=USER, password="guess")
    assert result["failed"] is True
    assert f"rejected the credentials of user '{USER}'" in result["msg"]
    assert "guess" not in json.dumps(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"repository": "Demo/Hello"},
            "repository 'Demo/Hello' is not a valid repository name: repository names are lowercase",
        ),
        ({"repository": "demo/hello:v1"}, "put the tag or digest in the tag option"),
        ({"repository": "demo/hello", "tag": "-v1"}, "tag '-v1' is not a valid tag"),
        ({"repository": "demo/hello", "tag": "sha256:1234"}, "tag 'sha256:1234' is not a valid digest"),
        ({"repository": "demo/hello", "timeout": 0}, "timeout must be greater than 0, got 0"),
        ({"repository": "demo/hello", "registry_url": "127.0.0.1:5000"}, "must start with http:// or https://"),
        ({"repository": "demo/hello", "host_header": "a b"}, "host_header 'a b' is not a host name"),
        ({"repository": "demo/hello", "username": "x"}, "parameters are required together: username, password"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_any_request(monkeypatch, capsys, args, message):
    def no_requests(*args, **kwargs):
        raise AssertionError("a request was sent for invalid arguments")

    monkeypatch.setattr(_registry.Request, "open", no_requests)
    result = run_module(capsys, **{"registry_url": "http://127.0.0.1:5000", **args})
    assert result["failed"] is True
    assert message in result["msg"]
    assert "\n" not in result["msg"]
    assert "exception" not in result


def test_connection_refused(capsys):
    port = free_port()
    result = run_module(capsys, registry_url=f"http://127.0.0.1:{port}", repository="demo/hello")
    assert result["failed"] is True
    assert result["msg"] == (
        f"cannot connect to 127.0.0.1:{port}: connection refused (is the registry running and registry_url right?)"
    )
    assert "exception" not in result


def test_documentation_matches_the_argument_spec():
    import yaml

    documented = yaml.safe_load(registry_image_info.DOCUMENTATION)["options"]
    spec = registry_image_info.ARGUMENT_SPEC
    assert set(documented) == set(spec)
    for name, option in spec.items():
        assert documented[name]["type"] == option["type"], name
        assert documented[name].get("default") == option.get("default"), name
        assert documented[name].get("required", False) == option.get("required", False), name
