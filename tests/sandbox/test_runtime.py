"""The runtime: the hub as a real registry, Python app images pulled from it and run, honest failures."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest
from image_push import Pusher, layer
from knlab_sandbox.gateway import Gateway
from knlab_sandbox.runtime import Runtime, RuntimeFailure
from knlab_sandbox.settings import Settings

HUB = "hub.default.svc.cluster.local"
HUB_HOSTS = [HUB, "hub.default.127.0.0.1.sslip.io"]
HUB_SPEC = {"containers": [{"image": "docker.io/library/registry:2", "ports": [{"containerPort": 5000}]}]}

SHOW_FILE = b"""
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Show(BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[1], "rb") as source:
            body = source.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Show).serve_forever()
"""


@pytest.fixture
async def sandbox(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", gateway_port=0)
    gateway = Gateway(0)
    await gateway.start()
    exits: list[tuple[str, RuntimeFailure]] = []
    runtime = Runtime(settings, gateway, on_exit=lambda key, failure: exits.append((key, failure)), ready_timeout=20)
    try:
        yield settings, gateway, runtime, exits
    finally:
        await runtime.stop_all()
        await gateway.stop()


async def _start_hub(settings, gateway, runtime, spec=HUB_SPEC):
    endpoint = await runtime.start(
        "default/hub-00001", "default", spec, {"PORT": "5000"}, settings.log_path("default", "hub", "registry")
    )
    gateway.set_route(HUB_HOSTS, endpoint)
    return endpoint


def _url(gateway: Gateway) -> str:
    return f"http://{gateway.address[0]}:{gateway.address[1]}"


async def _get(gateway: Gateway, host: str, path: str = "/") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(_url(gateway) + path, headers={"Host": host}) as r:
        return r.status, await r.text()


def _app_spec(image: str, **container) -> dict:
    return {"containers": [{"image": image, "ports": [{"containerPort": 8080}], **container}]}


async def test_hub_runs_and_a_python_image_pushed_to_it_serves_through_the_gateway(sandbox):
    settings, gateway, runtime, exits = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        pushed = await Pusher(session, _url(gateway), host=HUB).hello_app("demo/hello", "v1")

    log_path = settings.log_path("default", "hello-00001-deployment-x", "user-container")
    env = {"PORT": "8080", "K_SERVICE": "hello", "K_REVISION": "hello-00001"}
    endpoint = await runtime.start("default/hello-00001", "default", _app_spec(f"{HUB}/demo/hello:v1"), env, log_path)
    assert endpoint.port != 8080
    assert runtime.image_digest("default/hello-00001") == pushed.digest
    gateway.set_route(["hello.default.svc.cluster.local"], endpoint)

    status, text = await _get(gateway, "hello.default.svc.cluster.local")
    assert status == 200
    assert text.startswith("Hello Sandbox from ")
    cwd = text.removeprefix("Hello Sandbox from ").strip()
    assert cwd.endswith("/rootfs/app") and cwd.startswith(str(settings.run_dir))
    assert f"listening on {endpoint.port}" in log_path.read_text()

    await runtime.stop("default/hello-00001")
    assert not os.path.exists(cwd), "the container filesystem goes with the pod"
    assert (await _get(gateway, "hello.default.svc.cluster.local"))[0] == 502
    assert exits == []


async def test_command_args_and_volumes_follow_kubernetes(sandbox, tmp_path):
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image(
            "demo/show",
            "v1",
            [layer({"app/show.py": SHOW_FILE, "app/data.txt": b"from the image\n"})],
            config={"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["exit 1"], "WorkingDir": "/app"},
        )
    config_files = tmp_path / "cm"
    config_files.mkdir()
    (config_files / "greeting").write_text("from a configMap\n")
    spec = {
        "containers": [
            {
                "image": f"{HUB}:80/demo/show:v1",
                # command replaces the Entrypoint and drops Cmd, as a kubelet does.
                "command": ["python3", "/app/show.py"],
                "args": ["/config/greeting"],
                "volumeMounts": [{"name": "greeting", "mountPath": "/config", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "greeting", "configMap": {"name": "greeting"}}],
    }
    endpoint = await runtime.start(
        "default/show-00001",
        "default",
        spec,
        {"PORT": "8080"},
        tmp_path / "show.log",
        volume_sources={"greeting": config_files},
    )
    gateway.set_route(["show.default.svc.cluster.local"], endpoint)
    assert await _get(gateway, "show.default.svc.cluster.local") == (200, "from a configMap\n")

    spec["containers"][0]["args"] = ["/app/data.txt"]
    endpoint = await runtime.start(
        "default/show-00001", "default", spec, {}, tmp_path / "show.log", volume_sources={"greeting": config_files}
    )
    gateway.set_route(["show.default.svc.cluster.local"], endpoint)
    assert await _get(gateway, "show.default.svc.cluster.local") == (200, "from the image\n")

    with pytest.raises(RuntimeFailure) as failure:
        await runtime.start("default/show-00002", "default", spec, {}, tmp_path / "show2.log")
    assert failure.value.reason == "CreateContainerConfigError"


async def test_an_image_that_is_not_python_fails_clearly(sandbox, tmp_path):
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image(
            "demo/shell", "v1", [layer({"run.sh": b"echo hi\n"})], config={"Cmd": ["/bin/sh", "/run.sh"]}
        )
    with pytest.raises(RuntimeFailure) as failure:
        await runtime.start("default/shell-00001", "default", _app_spec(f"{HUB}/demo/shell:v1"), {}, tmp_path / "l")
    assert failure.value.reason == "UnsupportedImage"
    assert "'/bin/sh /run.sh'" in failure.value.message
    assert "can run only Python images" in failure.value.message
    assert [path.name.split("-")[0] for path in (settings.run_dir / "pods").iterdir()] == ["default_hub"]


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (f"{HUB}/demo/nothing:v1", "404 MANIFEST_UNKNOWN"),
        ("docker.io/library/python:3.12-slim", "no registry answers for 'docker.io'"),
        ("other.default.svc.cluster.local/demo/hello:v1", "no registry answers for 'other.default.svc.cluster.local'"),
    ],
)
async def test_an_image_no_sandbox_registry_has_is_container_missing(sandbox, tmp_path, image, why):
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    with pytest.raises(RuntimeFailure) as failure:
        await runtime.start("default/x-00001", "default", _app_spec(image), {}, tmp_path / "l")
    assert failure.value.reason == "ContainerMissing"
    assert failure.value.message.startswith(f'Unable to fetch image "{image}": failed to resolve image to digest: ')
    assert why in failure.value.message


async def test_a_process_that_exits_reports_its_exit_code_and_log(sandbox, tmp_path):
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    crash = b"import sys\nprint('cannot start: no database', flush=True)\nsys.exit(3)\n"
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image(
            "demo/crash", "v1", [layer({"crash.py": crash})], config={"Cmd": ["/crash.py"]}
        )
    with pytest.raises(RuntimeFailure) as failure:
        await runtime.start("default/crash-00001", "default", _app_spec(f"{HUB}/demo/crash:v1"), {}, tmp_path / "l")
    assert failure.value.reason == "ExitCode3"
    assert failure.value.message == "Container failed with: cannot start: no database"


async def test_a_crash_after_start_is_reported(sandbox, tmp_path):
    settings, gateway, runtime, exits = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).hello_app("demo/hello", "v1")
    await runtime.start("default/hello-00001", "default", _app_spec(f"{HUB}/demo/hello:v1"), {}, tmp_path / "l")
    pod = runtime._pods["default/hello-00001"]
    os.kill(pod.child.pid, signal.SIGKILL)
    await asyncio.wait_for(pod.watcher, timeout=10)
    assert [(key, failure.reason) for key, failure in exits] == [("default/hello-00001", "ExitCode137")]
    assert runtime.endpoint("default/hello-00001") is None


async def _push_marker(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image("demo/marker", "v1", [layer({"m": b"1"})])


async def test_the_hub_keeps_its_images_on_a_pvc_and_loses_them_without(sandbox):
    settings, gateway, runtime, _ = sandbox
    with_pvc = {
        "containers": [
            {**HUB_SPEC["containers"][0], "volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry"}]}
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "hub-data"}}],
    }
    await _start_hub(settings, gateway, runtime, with_pvc)
    await _push_marker(gateway)
    await runtime.stop("default/hub-00001")
    await _start_hub(settings, gateway, runtime, with_pvc)
    assert (await _get(gateway, HUB, "/v2/demo/marker/tags/list"))[0] == 200
    assert (settings.volume_dir("default", "hub-data") / "docker" / "registry" / "v2" / "repositories").is_dir()

    await _start_hub(settings, gateway, runtime)  # same key: replaces the hub, now without a volume
    await _push_marker(gateway)
    assert (await _get(gateway, HUB, "/v2/demo/marker/tags/list"))[0] == 200
    await runtime.stop("default/hub-00001")
    await _start_hub(settings, gateway, runtime)
    status, body = await _get(gateway, HUB, "/v2/demo/marker/tags/list")
    assert status == 404 and "NAME_UNKNOWN" in body


async def test_orphans_of_a_killed_server_are_stopped(sandbox):
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).hello_app("demo/hello", "v1")
    await runtime.start("default/hello-00001", "default", _app_spec(f"{HUB}/demo/hello:v1"), {}, settings.run_dir / "l")
    pids = {runtime._pods[key].child.pid for key in ("default/hub-00001", "default/hello-00001")}
    # A new server (or `knlab-sandbox down`) finds the records the old one left.
    assert set(Runtime(settings, gateway).stop_orphans()) == pids
    assert not list((settings.run_dir / "pids").glob("*.json"))
    assert not list((settings.run_dir / "pods").iterdir())


async def test_a_process_that_never_listens_is_stopped_on_deadline_or_cancel(sandbox, tmp_path):
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image(
            "demo/sleepy",
            "v1",
            [layer({"sleepy.py": b"import time\ntime.sleep(600)\n"})],
            config={"Cmd": ["/sleepy.py"]},
        )
    spec = _app_spec(f"{HUB}/demo/sleepy:v1")
    impatient = Runtime(settings, gateway, ready_timeout=0.5)
    with pytest.raises(RuntimeFailure) as failure:
        await impatient.start("default/sleepy-00001", "default", spec, {}, tmp_path / "l")
    assert failure.value.reason == "ProgressDeadlineExceeded"
    assert failure.value.message.startswith("Initial scale was never achieved")

    # The caller's own deadline (Knative's progress deadline) cancels the start: nothing may survive it.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(runtime.start("default/sleepy-00002", "default", spec, {}, tmp_path / "l"), 0.5)
    records = [path.name for path in (settings.run_dir / "pids").glob("*.json")]
    assert len(records) == 1 and records[0].startswith("default_hub")
    assert [path.name.split("-")[0] for path in (settings.run_dir / "pods").iterdir()] == ["default_hub"]


BIND_FILE = b"""
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Bound(BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.server.server_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer((os.environ.get("HOST", ""), int(os.environ["PORT"])), Bound).serve_forever()
"""


async def test_an_app_that_binds_host_listens_on_loopback_only(sandbox, tmp_path):
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image(
            "demo/bind", "v1", [layer({"app/bind.py": BIND_FILE})], config={"Cmd": ["python3", "/app/bind.py"]}
        )
    # Even a container that asks for every interface gets loopback: PORT and HOST are the runtime's.
    spec = _app_spec(f"{HUB}/demo/bind:v1", env=[{"name": "HOST", "value": "0.0.0.0"}])
    endpoint = await runtime.start("default/bind-00001", "default", spec, {"PORT": "8080"}, tmp_path / "bind.log")
    gateway.set_route(["bind.default.svc.cluster.local"], endpoint)

    assert await _get(gateway, "bind.default.svc.cluster.local") == (200, "127.0.0.1")


async def test_resolve_names_the_tag_digest_without_starting_anything(sandbox):
    # Knative's controller resolves the tag before any pod exists; a digest and the hub are not resolved.
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        pushed = await Pusher(session, _url(gateway), host=HUB).hello_app("demo/hello", "v1")
    assert await runtime.resolve(f"{HUB}/demo/hello:v1") == pushed.digest
    assert await runtime.resolve(f"{HUB}/demo/hello@{pushed.digest}") is None
    assert await runtime.resolve("docker.io/library/registry:2") is None
    assert runtime.endpoint("default/hello-00001") is None
    with pytest.raises(RuntimeFailure) as failure:
        await runtime.resolve(f"{HUB}/demo/nothing:v1")
    assert failure.value.reason == "ContainerMissing"
    assert failure.value.message.startswith(f'Unable to fetch image "{HUB}/demo/nothing:v1": failed to resolve')


ENV_FILE = b"""
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Env(BaseHTTPRequestHandler):
    def do_GET(self):
        body = repr({name: os.environ.get(name) for name in ("TOKEN", "GREETING")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Env).serve_forever()
"""


async def test_an_optional_env_reference_left_unresolved_is_unset_and_a_required_one_fails(sandbox, tmp_path):
    # kubelet leaves a variable unset when its optional Secret (or key) is missing; the controller
    # resolves what exists and passes it on, so whatever is not passed on is missing.
    settings, gateway, runtime, _ = sandbox
    await _start_hub(settings, gateway, runtime)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image(
            "demo/env", "v1", [layer({"app/env.py": ENV_FILE})], config={"Cmd": ["python3", "/app/env.py"]}
        )
    optional = {"valueFrom": {"secretKeyRef": {"name": "absent", "key": "token", "optional": True}}}
    env = [{"name": "TOKEN", **optional}, {"name": "GREETING", "value": "hi"}]
    spec = _app_spec(f"{HUB}:80/demo/env:v1", env=env)
    endpoint = await runtime.start("default/env-00001", "default", spec, {"PORT": "8080"}, tmp_path / "env.log")
    gateway.set_route(["env.default.svc.cluster.local"], endpoint)
    assert await _get(gateway, "env.default.svc.cluster.local") == (200, "{'TOKEN': None, 'GREETING': 'hi'}")

    resolved = {"PORT": "8080", "TOKEN": "s3cret"}
    endpoint = await runtime.start("default/env-00002", "default", spec, resolved, tmp_path / "env2.log")
    gateway.set_route(["env.default.svc.cluster.local"], endpoint)
    assert await _get(gateway, "env.default.svc.cluster.local") == (200, "{'TOKEN': 's3cret', 'GREETING': 'hi'}")

    required = {"valueFrom": {"secretKeyRef": {"name": "absent", "key": "token"}}}
    spec = _app_spec(f"{HUB}:80/demo/env:v1", env=[{"name": "TOKEN", **required}])
    with pytest.raises(RuntimeFailure) as failure:
        await runtime.start("default/env-00003", "default", spec, {"PORT": "8080"}, tmp_path / "env3.log")
    assert failure.value.reason == "CreateContainerConfigError"
