"""Scaled revisions on a real sandbox: a Python app with min-scale 2 runs two processes in two pods,
the gateway spreads requests over both, and a process killed with SIGKILL restarts in its pod while
the other serves (autoscaler.py, sandbox/README.md "Replicas and autoscaling")."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from image_push import Pusher
from knlab_sandbox.settings import Settings
from test_knative import HUB_MANIFEST, kubectl

APP_MANIFEST = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "2"
        autoscaling.knative.dev/max-scale: "2"
    spec:
      containers:
      - image: hub.default.svc.cluster.local/demo/hello:v1
"""
HOST = "hello.default.svc.cluster.local"


@pytest.fixture
async def server(tmp_path):
    from knlab_sandbox.server import Server

    state = tmp_path / "sandbox"
    server = Server(Settings(state_dir=state, api_port=0, gateway_port=0))
    info = await server.start()
    try:
        yield info, state
    finally:
        await server.stop()


async def pods(kubeconfig: Path) -> list[dict]:
    code, output = await kubectl(
        kubeconfig, "get", "pods", "-l", "serving.knative.dev/revision=hello-00001", "-o", "json"
    )
    assert code == 0, output
    return json.loads(output)["items"]


def restart_count(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses", []))


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


async def test_two_app_instances_share_the_requests_and_a_killed_one_comes_back(server):
    info, state = server
    kubeconfig = Path(info["kubeconfig"])
    code, output = await kubectl(kubeconfig, "apply", "-f", "-", stdin=HUB_MANIFEST)
    assert code == 0, output
    code, output = await kubectl(kubeconfig, "wait", "ksvc/hub", "--for=condition=Ready", "--timeout=60s")
    assert code == 0, output
    async with aiohttp.ClientSession() as session:
        await Pusher(session, info["gateway"], host="hub.default.svc.cluster.local").hello_app("demo/hello", "v1")
    code, output = await kubectl(kubeconfig, "apply", "-f", "-", stdin=APP_MANIFEST)
    assert code == 0, output
    code, output = await kubectl(kubeconfig, "wait", "ksvc/hello", "--for=condition=Ready", "--timeout=60s")
    assert code == 0, output
    async with asyncio.timeout(30):
        while not (len(found := await pods(kubeconfig)) == 2 and all(ready(p) for p in found)):
            await asyncio.sleep(0.2)
    names = sorted(p["metadata"]["name"] for p in found)
    assert all(name.startswith("hello-00001-deployment-") for name in names)

    async def call(times: int) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(times):
                async with session.get(info["gateway"] + "/", headers={"Host": HOST}) as response:
                    assert (response.status, (await response.text()).startswith("Hello Sandbox")) == (200, True)

    await call(10)
    for name in names:  # each pod's own log shows requests it served
        code, logs = await kubectl(kubeconfig, "logs", name)
        assert code == 0 and '"GET / HTTP/1.1" 200' in logs, (name, logs)

    records = [json.loads(p.read_text()) for p in (state / "run" / "pids").glob("*.json")]
    app = sorted((r for r in records if r["key"].startswith("default/hello-00001")), key=lambda r: r["key"])
    assert len(app) == 2
    os.kill(int(app[-1]["pid"]), signal.SIGKILL)
    await call(10)  # the other instance serves meanwhile (a refused GET is tried on it)
    async with asyncio.timeout(30):
        while True:
            found = await pods(kubeconfig)
            if sum(restart_count(p) for p in found) == 1 and all(ready(p) for p in found):
                break
            await asyncio.sleep(0.2)
    assert sorted(p["metadata"]["name"] for p in found) == names
    code, output = await kubectl(kubeconfig, "get", "revision", "hello-00001", "-o", "json")
    revision = json.loads(output)
    assert revision["status"]["actualReplicas"] == 2
    assert [c["status"] for c in revision["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    await call(4)
