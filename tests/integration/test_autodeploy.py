"""Push to the hub -> a new Revision (issue 10 item 1), on a real sandbox.

What runs for real: the sandbox (API server, Knative Serving, gateway), the hub started by the
registry role with ``registry_notifications_secret`` (the sandbox runs Debian's docker-registry
for it), the hub's own notifications, a Knative Service ``hello`` whose Revisions the sandbox runs
and serves, and the receiver (roles/autodeploy/files/receiver/receiver.py).

``test_the_receiver_as_a_pod_rolls_out_a_push_from_outside_the_demo``: playbooks/demo.yml and
playbooks/autodeploy.yml as ``make autodeploy-demo`` runs them; the receiver is built by the
sandbox's kaniko and run by knative_service with its ServiceAccount token, the hub's notifications
reach it at ``autodeploy.default.svc.cluster.local`` through the gateway's proxy.

The other tests run the receiver as a process on this machine, to stop and start it at will: it
gets a service-account directory with the sandbox's admin token, CA and the namespace,
KUBERNETES_SERVICE_HOST/PORT of the sandbox API, and the hub through the gateway
(``AUTODEPLOY_HUB_HOST_HEADER``); the hub's endpoint Secret is written by the test, with the
receiver's loopback URL.

Pushes are made by the test pusher over the registry API (tests/sandbox/image_push.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import autodeploy_push
import pytest
import yaml
from sandbox_cli import ROOT, SandboxCLI, run_play, sandbox_env

RECEIVER = ROOT / "roles" / "autodeploy" / "files" / "receiver" / "receiver.py"
sys.path.insert(0, str(ROOT / "tests" / "sandbox"))
from image_push import Pusher  # noqa: E402

sys.path.insert(0, str(ROOT / ".build" / "collections"))
from ansible_collections.knlab.serverless.plugins.filter.autodeploy_settings import (  # noqa: E402
    autodeploy_settings,
)

TOKEN = "integration-event-token-0123456789"
PULL_HOST = "hub.default.svc.cluster.local"
EVENTS_V1 = "application/vnd.docker.distribution.events.v1+json"
PLAY = """
- name: The hub, reading its notification endpoint from a Secret
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: knlab.serverless.registry
      vars:
        registry_notifications_secret: hub-notifications
"""
APP_PLAY = """
- name: The app, from the hub
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run hello from hub:latest
      knlab.serverless.knative_service:
        name: hello
        namespace: default
        image: "hub.default.svc.cluster.local/hello:latest"
        min_scale: 1
        wait_timeout: 120
"""

pytestmark = pytest.mark.needs_docker_registry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sandbox(SandboxCLI):
    """A sandbox whose app is the Knative Service ``hello`` in ``default``, with the hub beside it."""

    def play_text(self, text: str, **extra: object) -> tuple[int, str]:
        """``play`` of a playbook given as text (written next to the state dir)."""
        playbook = self.state_dir.parent / f"play-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yml"
        playbook.write_text(text)
        return self.play(playbook, **extra)

    def playbook(self, name: str, **env: str) -> tuple[int, str]:
        """A playbook of playbooks/ as `make demo` runs it: this sandbox's kubeconfig, its gateway as the ingress."""
        run_env = sandbox_env(self.kubeconfig, DEMO_INGRESS_ADDRESS=self.gateway, **env)
        return run_play([str(ROOT / "playbooks" / name)], run_env, timeout=400)

    def revisions(self) -> list[str]:
        found = json.loads(
            self.kubectl("get", "revisions", "-n", "default", "-l", "serving.knative.dev/service=hello", "-o", "json")
        )
        return sorted(item["metadata"]["name"] for item in found["items"])

    def hello_image(self) -> str:
        return self.get("ksvc", "hello")["spec"]["template"]["spec"]["containers"][0]["image"]

    def wait_ready(self, name: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        service: dict = {}
        while time.monotonic() < deadline:
            service = self.get("ksvc", name)
            status = service.get("status") or {}
            ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
            if (
                ready
                and ready[0].get("status") == "True"
                and status.get("observedGeneration") == service["metadata"]["generation"]
                and status.get("latestReadyRevisionName") == status.get("latestCreatedRevisionName")
            ):
                return service
            time.sleep(0.5)
        raise AssertionError(f"ksvc {name} not Ready: {json.dumps(service.get('status'))[:2000]}")

    def pods(self, service: str) -> list[dict]:
        found = json.loads(
            self.kubectl("get", "pods", "-n", "default", "-l", f"serving.knative.dev/service={service}", "-o", "json")
        )
        return found["items"]

    def pod_logs(self, service: str) -> str:
        """`kubectl logs` of every pod the Service has now (its user container)."""
        names = [pod["metadata"]["name"] for pod in self.pods(service)]
        assert names, f"no pods of {service}"
        return "".join(self.kubectl("logs", "-n", "default", name, "-c", "user-container") for name in names)

    def set_hello_image(self, image: str) -> None:
        """The image of hello, set by hand (as `kubectl edit` would)."""
        patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
        self.kubectl("patch", "ksvc", "hello", "-n", "default", "--type", "json", "-p", json.dumps(patch))

    def answer(self, name: str) -> str:
        service = self.get("ksvc", name)
        host = service["status"]["url"].split("://", 1)[1]
        request = urllib.request.Request(self.gateway + "/", headers={"Host": host})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()


@pytest.fixture
def sandbox_class() -> type[Sandbox]:
    return Sandbox  # for conftest.py's sandbox fixture


def post_events(base_url: str, body: dict, headers: dict[str, str], timeout: float) -> int:
    """POST an event envelope (``body``) to ``base_url``/events with ``headers``; the HTTP status, an error's too."""
    request = urllib.request.Request(
        base_url + "/events", data=json.dumps(body).encode(), headers={"Content-Type": EVENTS_V1, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class Receiver:
    """receiver.py as a local process."""

    def __init__(self, sandbox: Sandbox, directory: Path, hub_host: str):
        self.port = free_port()
        self.log = directory / "receiver.log"
        sa_dir = directory / "serviceaccount"
        sa_dir.mkdir(exist_ok=True)
        kubeconfig = yaml.safe_load(sandbox.kubeconfig.read_text())
        (sa_dir / "token").write_text(kubeconfig["users"][0]["user"]["token"])
        (sa_dir / "ca.crt").write_bytes(
            base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
        )
        (sa_dir / "namespace").write_text("default")
        api_host, api_port = kubeconfig["clusters"][0]["cluster"]["server"].removeprefix("https://").rsplit(":", 1)
        self.argv = [sys.executable, str(RECEIVER), "--service-account-dir", str(sa_dir)]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PORT": str(self.port),
            "AUTODEPLOY_LISTEN_ADDRESS": "127.0.0.1",
            "AUTODEPLOY_TOKEN": TOKEN,
            "AUTODEPLOY_BINDINGS": json.dumps([{"repository": "hello", "tag": "latest", "service": "hello"}]),
            "AUTODEPLOY_HUB_URL": sandbox.gateway,
            "AUTODEPLOY_HUB_HOST_HEADER": hub_host,
            "AUTODEPLOY_PULL_HOST": PULL_HOST,
            "AUTODEPLOY_RESYNC_SECONDS": "3600",
            "KUBERNETES_SERVICE_HOST": api_host,
            "KUBERNETES_SERVICE_PORT": api_port,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"receiver did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def post(self, body: dict, token: str | None) -> int:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return post_events(self.url, body, headers, timeout=10)

    def status(self) -> dict:
        request = urllib.request.Request(self.url + "/status", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def push(sandbox: Sandbox, hub_host: str, repository: str, target: str) -> str:
    async def run() -> str:
        async with aiohttp.ClientSession() as session:
            image = await Pusher(session, sandbox.gateway, hub_host).hello_app(repository, "latest", target=target)
            return image.digest

    return asyncio.run(run())


def wait_for(predicate: Any, what: str, receiver: Receiver, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; receiver log:\n{receiver.log_text()[-4000:]}")


def manifest_event(digest: str, repository: str = "hello") -> dict:
    return {
        "events": [
            {
                "id": "dup-1",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "repository": repository,
                    "tag": "latest",
                    "url": f"http://{PULL_HOST}/v2/{repository}/manifests/{digest}",
                },
            }
        ]
    }


def endpoint_secret(receiver: Receiver) -> dict:
    """The hub's endpoint Secret as the autodeploy role writes it, with the local receiver's URL."""
    settings = {
        "name": "autodeploy",
        "namespace": "default",
        "bindings": [{"repository": "hello", "service": "hello"}],
        "timeout": "2s",
        "threshold": 3,
        "backoff": "1s",
    }
    written = autodeploy_settings(settings, TOKEN)
    endpoints = written["endpoints"].replace(written["events_url"], receiver.url + "/events")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hub-notifications", "namespace": "default"},
        "data": {"endpoints": base64.b64encode(endpoints.encode()).decode()},
    }


def test_a_push_to_the_hub_rolls_out_one_new_revision(sandbox: Sandbox, tmp_path: Path) -> None:
    receiver_port_holder = tmp_path / "receiver"
    receiver_port_holder.mkdir()
    # 1. The hub's endpoint, as the autodeploy role writes it, but with the receiver's loopback URL
    #    (the sandbox's hub is a local process; it cannot resolve cluster-local names).
    #    Written before the hub exists, so that its first revision reads it (a hub without the
    #    Secret runs without notifications: test_a_hub_whose_endpoint_secret_is_missing_runs_without_events).
    receiver = Receiver(sandbox, receiver_port_holder, hub_host="")
    sandbox.kubectl("apply", "-f", "-", stdin=json.dumps(endpoint_secret(receiver)))

    # 2. The hub, by the registry role with the new option; a second run changes nothing.
    code, output = sandbox.play_text(PLAY)
    assert code == 0, output[-3000:]
    code, output = sandbox.play_text(PLAY)
    assert code == 0, output[-3000:]
    assert "changed=0" in output, output[-2000:]
    hub = sandbox.get("ksvc", "hub")
    env = hub["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "REGISTRY_NOTIFICATIONS_ENDPOINTS",
        "valueFrom": {"secretKeyRef": {"name": "hub-notifications", "key": "endpoints", "optional": True}},
    } in env
    # With notifications the hub runs at warn: at info distribution logs the endpoint with its headers.
    assert {"name": "REGISTRY_LOG_LEVEL", "value": "warn"} in env
    hub_host = hub["status"]["url"].split("://", 1)[1]
    receiver.env["AUTODEPLOY_HUB_HOST_HEADER"] = hub_host

    # 3. hello:latest v1 and the app running it by tag.
    first = push(sandbox, hub_host, "hello", "One")
    code, output = sandbox.play_text(APP_PLAY)
    assert code == 0, output[-3000:]
    sandbox.wait_ready("hello")
    assert len(sandbox.revisions()) == 1

    try:
        # 4. Start: the resync pins the tag's digest - one new Revision.
        receiver.start()
        wait_for(lambda: sandbox.hello_image() == f"{PULL_HOST}/hello@{first}", "the start's resync", receiver)
        sandbox.wait_ready("hello")
        assert len(sandbox.revisions()) == 2
        assert "One" in sandbox.answer("hello")

        # 5. A push: the hub's own notification rolls it out - one new Revision serving it.
        second = push(sandbox, hub_host, "hello", "Two")
        wait_for(lambda: sandbox.hello_image() == f"{PULL_HOST}/hello@{second}", "the push's roll-out", receiver)
        sandbox.wait_ready("hello")
        assert len(sandbox.revisions()) == 3
        assert "Two" in sandbox.answer("hello")
        assert "push event" in receiver.status()["hello:latest->hello"]["reason"]
        # The hub sent that event with the token, and its log (kubectl logs) does not show it; the
        # access log of the push is still there (so the log was read, and it is not empty).
        hub_log = sandbox.pod_logs("hub")
        assert '"PUT /v2/hello/manifests/latest HTTP/1.1" 201' in hub_log, hub_log[-3000:]
        assert TOKEN not in hub_log
        assert "configuring endpoint" not in hub_log

        # 6. Another repository: nothing. A duplicate of the last event: nothing.
        push(sandbox, hub_host, "other", "Other")
        assert receiver.post(manifest_event(second), TOKEN) == 200
        time.sleep(3)
        assert sandbox.hello_image() == f"{PULL_HOST}/hello@{second}"
        assert len(sandbox.revisions()) == 3
        assert "no binding for this repository and tag" in receiver.log_text()
        assert receiver.status()["hello:latest->hello"]["decision"] == "already deployed"

        # 7. The wrong token (and none): 401 and nothing changes, for an event that would roll
        #    hello out: it names the bound hello:latest, whose digest (second) is not what hello
        #    runs, because hello was set to the first digest by hand (the resync is an hour away,
        #    so nothing else moves it back). The same event with the token then rolls it out.
        sandbox.set_hello_image(f"{PULL_HOST}/hello@{first}")
        sandbox.wait_ready("hello")
        assert len(sandbox.revisions()) == 4
        assert "One" in sandbox.answer("hello")
        assert receiver.post(manifest_event(second), "wrong") == 401
        assert receiver.post(manifest_event(second), "") == 401
        assert receiver.post(manifest_event(second), None) == 401
        time.sleep(4)
        assert sandbox.hello_image() == f"{PULL_HOST}/hello@{first}"
        assert len(sandbox.revisions()) == 4
        assert receiver.log_text().count("event refused: missing or wrong Authorization header") == 3
        assert receiver.post(manifest_event(second), TOKEN) == 200
        wait_for(lambda: sandbox.hello_image() == f"{PULL_HOST}/hello@{second}", "the event with the token", receiver)
        sandbox.wait_ready("hello")
        assert len(sandbox.revisions()) == 5
        assert "Two" in sandbox.answer("hello")

        # 8. Receiver down, two pushes, up again: the Service ends on the newest digest (one
        #    Revision). The hub still holds the events here and redelivers them, so this passes by
        #    either path; test_pushes_made_while_the_receiver_is_down_survive_a_hub_restart shows
        #    the receiver's resync at start alone.
        receiver.stop()
        push(sandbox, hub_host, "hello", "Three")
        fourth = push(sandbox, hub_host, "hello", "Four")
        time.sleep(1)
        assert len(sandbox.revisions()) == 5
        receiver.start()
        wait_for(lambda: sandbox.hello_image() == f"{PULL_HOST}/hello@{fourth}", "the catch-up resync", receiver)
        sandbox.wait_ready("hello")
        assert len(sandbox.revisions()) == 6
        assert "Four" in sandbox.answer("hello")

        # 9. Roll back: pushing the first image again rolls its digest out again.
        again = push(sandbox, hub_host, "hello", "One")
        assert again == first
        wait_for(lambda: sandbox.hello_image() == f"{PULL_HOST}/hello@{first}", "the roll back", receiver)
        sandbox.wait_ready("hello")
        assert len(sandbox.revisions()) == 7
        assert "One" in sandbox.answer("hello")
        assert TOKEN not in receiver.log_text()
        assert TOKEN not in sandbox.pod_logs("hub")
    finally:
        receiver.stop()


PERSISTENT_PLAY = """
- name: The hub on a claim (its images survive a restart), reading its notification endpoint
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: knlab.serverless.registry
      vars:
        registry_persistence: true
        registry_notifications_secret: hub-notifications
"""
FEATURE_FLAGS = {
    "data": {
        "kubernetes.podspec-persistent-volume-claim": "enabled",
        "kubernetes.podspec-persistent-volume-write": "enabled",
    }
}


def test_pushes_made_while_the_receiver_is_down_survive_a_hub_restart(sandbox: Sandbox, tmp_path: Path) -> None:
    """Receiver down, two pushes, the hub restarted (its queued events gone, its images kept on the
    claim), the receiver up: the Service ends on the newest digest by the receiver's resync at start.

    Without the hub's restart the hub would deliver the queued events itself once the receiver is
    back; here nothing but that resync can roll hello out (the periodic one is an hour away).
    """
    receiver = Receiver(sandbox, tmp_path, hub_host="")
    sandbox.kubectl("apply", "-f", "-", stdin=json.dumps(endpoint_secret(receiver)))
    sandbox.kubectl("patch", "configmap", "config-features", "-n", "knative-serving", "--type", "merge",
                    "-p", json.dumps(FEATURE_FLAGS))  # fmt: skip
    code, output = sandbox.play_text(PERSISTENT_PLAY)
    assert code == 0, output[-3000:]
    hub_host = sandbox.wait_ready("hub")["status"]["url"].split("://", 1)[1]
    receiver.env["AUTODEPLOY_HUB_HOST_HEADER"] = hub_host
    first = push(sandbox, hub_host, "hello", "One")
    # hello already runs the tag's digest: the receiver's first start changes nothing.
    pinned = APP_PLAY.replace("hub.default.svc.cluster.local/hello:latest", f"{PULL_HOST}/hello@{first}")
    code, output = sandbox.play_text(pinned)
    assert code == 0, output[-3000:]
    sandbox.wait_ready("hello")
    revisions = sandbox.revisions()
    assert len(revisions) == 1
    try:
        receiver.start()
        wait_for(lambda: "hello:latest->hello" in receiver.status(), "the receiver's first look", receiver)
        assert receiver.status()["hello:latest->hello"]["decision"] == "already deployed"

        # Down: two pushes; the hub cannot deliver their events and keeps them in memory.
        receiver.stop()
        second = push(sandbox, hub_host, "hello", "Two")
        third = push(sandbox, hub_host, "hello", "Three")
        assert len({first, second, third}) == 3
        deadline = time.monotonic() + 20
        while "retryingsink: error writing events" not in sandbox.pod_logs("hub"):
            assert time.monotonic() < deadline, sandbox.pod_logs("hub")[-3000:]
            time.sleep(0.3)

        # The hub restarted: its pod deleted, a new one in its place (the events are gone with the
        # old process), the images still there (the claim).
        (old_pod,) = [pod["metadata"]["name"] for pod in sandbox.pods("hub")]
        sandbox.kubectl("delete", "pod", old_pod, "-n", "default")
        deadline = time.monotonic() + 60
        while True:
            pods = sandbox.pods("hub")
            names = [pod["metadata"]["name"] for pod in pods]
            ready = [
                c.get("status") == "True"
                for pod in pods
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready"
            ]
            if names and old_pod not in names and all(ready) and len(ready) == len(names):
                break
            assert time.monotonic() < deadline, json.dumps(pods)[-3000:]
            time.sleep(0.3)
        assert autodeploy_push.tag_digest(sandbox.gateway, hub_host, "hello", "latest") == third
        assert sandbox.hello_image() == f"{PULL_HOST}/hello@{first}"
        assert sandbox.revisions() == revisions

        # Up again: the resync at start rolls out the newest digest, one Revision for both pushes.
        # No event came: the new hub never had them.
        log_before = len(receiver.log_text())
        receiver.start()
        wait_for(lambda: sandbox.hello_image() == f"{PULL_HOST}/hello@{third}", "the start's resync", receiver)
        sandbox.wait_ready("hello")
        assert len(sandbox.revisions()) == len(revisions) + 1
        assert "Three" in sandbox.answer("hello")
        status = receiver.status()["hello:latest->hello"]
        assert (status["decision"], status["digest"]) == ("applied", third)
        assert status["reason"].startswith("resync: ")
        time.sleep(3)
        since = receiver.log_text()[log_before:]
        assert "push event" not in since, since
        assert len(sandbox.revisions()) == len(revisions) + 1
    finally:
        receiver.stop()


ROLE_PLAY = """
- name: The receiver's role
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: knlab.serverless.autodeploy
      vars:
        autodeploy_bindings: [{repository: hello, service: hello}]
"""


def test_the_role_names_the_registry_option_when_the_hub_does_not_read_its_secret(
    sandbox: Sandbox, registry_playbook: Path
) -> None:
    """Before the first write: no hub, then a hub without registry_notifications_secret, then bad input."""
    code, output = sandbox.play_text(ROLE_PLAY)
    assert code != 0
    message = " ".join(output.split())
    assert "autodeploy: the hub default/hub does not exist" in message
    assert "registry_notifications_secret: hub-notifications" in message

    code, output = sandbox.play(registry_playbook)  # the hub without notifications
    assert code == 0, output[-3000:]
    code, output = sandbox.play_text(ROLE_PLAY)
    assert code != 0
    message = " ".join(output.split())
    assert "does not read REGISTRY_NOTIFICATIONS_ENDPOINTS from the Secret hub-notifications" in message
    assert "run the registry role first with registry_notifications_secret: hub-notifications" in message

    code, output = sandbox.play_text(ROLE_PLAY, autodeploy_bindings=[{"repository": "Hello", "service": "hello"}])
    assert code != 0
    assert "autodeploy_bindings[0].repository must be a repository name" in output
    # Nothing was written: no Secret, no ServiceAccount of the role's.
    assert "autodeploy" not in sandbox.kubectl("get", "secrets,serviceaccounts", "-n", "default", "-o", "name")


def receiver_pod_log(sandbox: Sandbox, revision: str) -> str:
    logs = sorted((sandbox.state_dir / "logs" / "default").glob(f"{revision}-deployment-*/user-container.log"))
    return "".join(path.read_text() for path in logs)


def api_as(sandbox: Sandbox, token: str, method: str, path: str, body: Any = None) -> tuple[int, dict]:
    """A request to the sandbox API with a bearer token, verified against the sandbox CA."""
    context = ssl.create_default_context(cafile=sandbox.info["ca"])
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
    request = urllib.request.Request(sandbox.info["api"] + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


KSVC_PATH = "/apis/serving.knative.dev/v1/namespaces/default/services/"


def test_the_receiver_as_a_pod_rolls_out_a_push_from_outside_the_demo(sandbox: Sandbox) -> None:
    """playbooks/demo.yml + autodeploy.yml; the receiver built by kaniko (the sandbox's), run by knative_service."""
    code, output = sandbox.playbook("sandbox-prepare.yml")
    assert code == 0, output[-3000:]
    code, output = sandbox.playbook("demo.yml")
    assert code == 0, output[-3000:]
    # Resync once an hour: within this test only the hub's notifications can roll anything out.
    code, output = sandbox.playbook("autodeploy.yml", AUTODEPLOY_RESYNC_SECONDS="3600")
    assert code == 0, output[-3000:]
    code, output = sandbox.playbook("autodeploy.yml", AUTODEPLOY_RESYNC_SECONDS="3600")
    assert code == 0, output[-3000:]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", output), output[-2000:]

    receiver = sandbox.wait_ready("autodeploy")
    pod_spec = receiver["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "autodeploy"
    assert pod_spec["containers"][0]["image"].startswith(f"{PULL_HOST}/autodeploy@sha256:")
    receiver_revision = receiver["status"]["latestReadyRevisionName"]
    demo_answer = sandbox.answer("hello")
    demo_image = sandbox.hello_image()

    # A push from outside the demo: exactly one new Revision, Ready, serving the pushed app.
    rollout = autodeploy_push.push_and_wait(str(sandbox.kubeconfig), sandbox.gateway, timeout=60)
    assert rollout.answer != demo_answer
    assert sandbox.hello_image() == f"{PULL_HOST}/hello@{rollout.digest}" != demo_image
    assert len(rollout.revisions_after) == len(rollout.revisions_before) + 1
    # The pushed image is the demo's build plus one layer (so it would run on a cluster as well).
    hub_host = sandbox.get("ksvc", "hub")["status"]["url"].split("://", 1)[1]
    accept = ", ".join(autodeploy_push.MANIFEST_TYPES)

    def layers(digest: str) -> list[dict]:
        body = autodeploy_push.fetch(sandbox.gateway, hub_host, f"/v2/hello/manifests/{digest}", accept)[0]
        return json.loads(body)["layers"]

    assert layers(rollout.digest)[:-1] == layers(demo_image.rsplit("@", 1)[1])
    assert f"applied: push event: {demo_image} -> {PULL_HOST}/hello@{rollout.digest}" in receiver_pod_log(
        sandbox, receiver_revision
    )

    # A push to another repository: delivered to the receiver, ignored, nothing rolls out.
    push(sandbox, hub_host, "other", "Other")
    deadline = time.monotonic() + 20
    while "push other:latest" not in receiver_pod_log(sandbox, receiver_revision):
        assert time.monotonic() < deadline, receiver_pod_log(sandbox, receiver_revision)[-3000:]
        time.sleep(0.2)
    assert "event ignored: push other:latest" in receiver_pod_log(sandbox, receiver_revision)
    time.sleep(2)
    assert sandbox.revisions() == rollout.revisions_after
    assert sandbox.hello_image() == f"{PULL_HOST}/hello@{rollout.digest}"
    assert sandbox.answer("hello").strip() == rollout.answer

    # The receiver's ServiceAccount: get and patch the bound Service, nothing else.
    tokens = list(
        (sandbox.state_dir / "run" / "volumes" / "default" / receiver_revision).glob("kube-api-access-*/token")
    )
    assert len(tokens) == 1, tokens
    token = tokens[0].read_text().strip()
    assert api_as(sandbox, token, "GET", KSVC_PATH + "hello")[0] == 200
    code, answer = api_as(sandbox, token, "PATCH", KSVC_PATH + "hub", {"metadata": {"labels": {"x": "y"}}})
    assert code == 403, answer
    assert answer["message"] == (
        'services.serving.knative.dev "hub" is forbidden: User "system:serviceaccount:default:autodeploy" '
        'cannot patch resource "services" in API group "serving.knative.dev" in the namespace "default"'
    )
    assert "x" not in (sandbox.get("ksvc", "hub")["metadata"].get("labels") or {})
    assert api_as(sandbox, token, "GET", KSVC_PATH + "hub")[0] == 403
    for name, allowed in (("hello", True), ("hub", False), ("autodeploy", False)):
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "patch",
                    "group": "serving.knative.dev",
                    "resource": "services",
                    "name": name,
                }
            },
        }
        code, answer = api_as(sandbox, token, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
        assert code == 201, answer
        assert answer["status"]["allowed"] is allowed, (name, answer)

    # The demo run again keeps what autodeploy.yml gave the hub (it reads the hub first): the hub
    # is not rolled, it still reads its endpoint, and a push still arrives as an event (the resync
    # is an hour away). Before the fix the demo rolled the hub to a revision without notifications.
    hub_before = sandbox.get("ksvc", "hub")
    code, output = sandbox.playbook("demo.yml")
    assert code == 0, output[-3000:]
    hub_after = sandbox.get("ksvc", "hub")
    assert hub_after["metadata"]["generation"] == hub_before["metadata"]["generation"]
    assert hub_after["spec"]["template"] == hub_before["spec"]["template"]
    again = autodeploy_push.push_and_wait(str(sandbox.kubeconfig), sandbox.gateway, timeout=60)
    assert sandbox.hello_image() == f"{PULL_HOST}/hello@{again.digest}"


RECEIVER_HOST = "autodeploy.default.svc.cluster.local"
TOKEN_ANNOTATION = "serverless.knlab.io/token-digest"


def post_to_pod(sandbox: Sandbox, body: dict, token: str) -> int:
    """POST an event envelope to the receiver pod's /events through the gateway, by its cluster-local host."""
    return post_events(sandbox.gateway, body, {"Host": RECEIVER_HOST, "Authorization": f"Bearer {token}"}, timeout=20)


def event_token(sandbox: Sandbox) -> str:
    return base64.b64decode(sandbox.get("secret", "autodeploy-token")["data"]["token"]).decode()


def test_a_rotated_token_rolls_the_receiver(sandbox: Sandbox) -> None:
    """The token Secret changed and the role run again: the receiver rolls to a revision with the new
    token (a digest of it on its template), the hub to one that sends it; a re-run changes nothing."""
    for name in ("sandbox-prepare.yml", "demo.yml"):
        code, output = sandbox.playbook(name)
        assert code == 0, output[-3000:]
    code, output = sandbox.playbook("autodeploy.yml", AUTODEPLOY_RESYNC_SECONDS="3600")
    assert code == 0, output[-3000:]
    receiver = sandbox.wait_ready("autodeploy")
    old_token = event_token(sandbox)
    old_revision = receiver["status"]["latestReadyRevisionName"]
    old_digest = receiver["spec"]["template"]["metadata"]["annotations"][TOKEN_ANNOTATION]
    assert old_digest.startswith("sha256:") and old_token not in old_digest
    hub_revision = sandbox.wait_ready("hub")["status"]["latestReadyRevisionName"]
    current = sandbox.hello_image().rsplit("@", 1)[1]
    assert post_to_pod(sandbox, manifest_event(current), old_token) == 200

    # Rotate: a new token in the Secret, the role again.
    new_token = secrets.token_hex(32)
    patch = {"data": {"token": base64.b64encode(new_token.encode()).decode()}}
    sandbox.kubectl("patch", "secret", "autodeploy-token", "-n", "default", "--type", "merge", "-p", json.dumps(patch))
    code, output = sandbox.playbook("autodeploy.yml", AUTODEPLOY_RESYNC_SECONDS="3600")
    assert code == 0, output[-3000:]
    assert old_token not in output and new_token not in output
    assert event_token(sandbox) == new_token  # the role kept the token it found
    receiver = sandbox.wait_ready("autodeploy")
    new_revision = receiver["status"]["latestReadyRevisionName"]
    assert new_revision != old_revision
    new_digest = receiver["spec"]["template"]["metadata"]["annotations"][TOKEN_ANNOTATION]
    assert new_digest != old_digest and new_token not in new_digest
    assert sandbox.wait_ready("hub")["status"]["latestReadyRevisionName"] != hub_revision

    # The new token is accepted, the old one refused.
    assert post_to_pod(sandbox, manifest_event(current), new_token) == 200
    assert post_to_pod(sandbox, manifest_event(current), old_token) == 401

    # The hub sends the new token: a real push rolls out one new Revision serving it.
    rollout = autodeploy_push.push_and_wait(str(sandbox.kubeconfig), sandbox.gateway, timeout=60)
    assert sandbox.hello_image() == f"{PULL_HOST}/hello@{rollout.digest}"
    assert len(rollout.revisions_after) == len(rollout.revisions_before) + 1
    assert f"applied: push event: {PULL_HOST}/hello@{current} -> {PULL_HOST}/hello@{rollout.digest}" in (
        receiver_pod_log(sandbox, new_revision)
    )
    hub_log = sandbox.pod_logs("hub")
    assert old_token not in hub_log and new_token not in hub_log

    # Nothing changed since: nothing to do.
    code, output = sandbox.playbook("autodeploy.yml", AUTODEPLOY_RESYNC_SECONDS="3600")
    assert code == 0, output[-3000:]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", output), output[-2000:]
    assert sandbox.get("ksvc", "autodeploy")["status"]["latestReadyRevisionName"] == new_revision


def test_a_hub_whose_endpoint_secret_is_missing_runs_without_events(sandbox: Sandbox) -> None:
    """The optional secretKeyRef to a missing Secret leaves REGISTRY_NOTIFICATIONS_ENDPOINTS unset (kubelet's way).

    At info, as chosen here (registry_log_level), the hub would log an endpoint it configured; with
    notifications the role's own choice is warn, which would hide that line whatever happens.
    """
    code, output = sandbox.play_text(PLAY, registry_log_level="info")
    assert code == 0, output[-3000:]
    hub = sandbox.wait_ready("hub")
    assert {"name": "REGISTRY_LOG_LEVEL", "value": "info"} in hub["spec"]["template"]["spec"]["containers"][0]["env"]
    hub_host = hub["status"]["url"].split("://", 1)[1]
    assert push(sandbox, hub_host, "hello", "One").startswith("sha256:")
    logs = sorted((sandbox.state_dir / "logs" / "default").glob("hub-00001-deployment-*/user-container.log"))
    assert logs
    text = "".join(path.read_text() for path in logs)
    assert "level=info" in text
    assert "configuring endpoint" not in text
