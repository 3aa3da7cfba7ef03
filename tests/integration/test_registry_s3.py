"""The hub on S3 (registry_storage: s3), on a real sandbox with a real S3 server beside it.

`knlab-sandbox s3 up` runs versitygw (built from cluster/go/versitygw into the build cache the first
time, ~3 min); the role runs the sandbox's docker-registry 2.8.2 with REGISTRY_STORAGE=s3 and the
keys from a Secret. Then:

1. the Service carries the storage env, the keys and the HTTP secret only as secretKeyRefs, and no
   key is in the play's output; the role made the HTTP secret's Secret;
2. a second run changes nothing (and keeps the HTTP secret);
3. an image pushed through the gateway lands in the bucket's directory as files;
4. a run with more replicas and an autoscaling target makes a new revision (a new hub process
   with an empty filesystem), which serves the same image, byte for byte;
5. the `absent` entry point removes the hub and the HTTP secret's Secret, not the user's key
   Secret, and the images stay in the bucket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "sandbox"))
from image_push import Pusher, layer  # noqa: E402

PLAY = """
- name: The hub on S3
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: knlab.serverless.registry
"""
ABSENT_PLAY = """
- name: No hub
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Remove the hub
      ansible.builtin.include_role:
        name: knlab.serverless.registry
        tasks_from: absent
"""

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry")),
        reason="the sandbox's hub needs docker-registry (apt-get install docker-registry)",
    ),
    pytest.mark.skipif(
        not (os.environ.get("KNLAB_VERSITYGW") or shutil.which("go")),
        reason="the S3 server is built from cluster/go/versitygw: it needs Go (or $KNLAB_VERSITYGW)",
    ),
]


class Sandbox:
    def __init__(self, state_dir: Path, playbook: Path):
        self.state_dir = state_dir
        self.playbook = playbook
        self.info: dict = {}

    def cli(self, *args: str, timeout: float = 60) -> str:
        argv = [str(BIN / "knlab-sandbox"), *args, "--state-dir", str(self.state_dir)]
        done = subprocess.run(
            argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        argv = ["kubectl", "--kubeconfig", self.info["kubeconfig"], *args]
        return subprocess.run(argv, check=True, input=stdin, capture_output=True, text=True, timeout=60).stdout

    def run(self, playbook: Path | None = None, **extra: object) -> tuple[int, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "K8S_AUTH_"))}
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            K8S_AUTH_KUBECONFIG=self.info["kubeconfig"],
        )
        argv = [str(BIN / "ansible-playbook"), str(playbook or self.playbook), "-e", json.dumps(extra)]
        done = subprocess.run(
            argv, check=False, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240
        )
        return done.returncode, done.stdout + done.stderr

    def hub(self) -> dict:
        return json.loads(self.kubectl("get", "ksvc", "hub", "-o", "json"))


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    playbook = tmp_path / "hub.yml"
    playbook.write_text(PLAY)
    sandbox = Sandbox(tmp_path / "sandbox", playbook)
    sandbox.cli("up", "--api-port", "0", "--gateway-port", "0")
    sandbox.info = json.loads((sandbox.state_dir / "server.json").read_text())
    try:
        yield sandbox
    finally:
        sandbox.cli("down")  # stops the S3 server too


def recap_changed(output: str) -> int:
    line = next(line for line in output.splitlines() if line.startswith("localhost"))
    return int(line.split("changed=")[1].split()[0])


async def push(gateway: str, host: str) -> tuple:
    async with aiohttp.ClientSession() as session:
        return await Pusher(session, gateway, host).image("demo/s3", "v1", [layer({"s3.txt": b"kept in a bucket\n"})])


async def pull(gateway: str, host: str, pushed) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Host": host, "Accept": pushed.media_type}
        async with session.get(f"{gateway}/v2/demo/s3/manifests/v1", headers=headers) as response:
            assert response.status == 200, await response.text()
            assert await response.read() == pushed.manifest
        for digest in pushed.blob_digests:
            async with session.get(f"{gateway}/v2/demo/s3/blobs/{digest}", headers={"Host": host}) as response:
                assert response.status == 200, await response.text()
                assert "sha256:" + hashlib.sha256(await response.read()).hexdigest() == digest


def test_the_hub_keeps_its_images_in_the_bucket_across_revisions(sandbox: Sandbox) -> None:
    s3 = json.loads(sandbox.cli("s3", "up", "--port", "0", timeout=600))
    sandbox.kubectl(
        "create",
        "secret",
        "generic",
        "hub-s3",
        f"--from-literal=access_key={s3['access_key']}",
        f"--from-literal=secret_key={s3['secret_key']}",
    )
    settings = {
        "registry_storage": "s3",
        "registry_s3_endpoint": s3["endpoint"],
        "registry_s3_bucket": s3["bucket"],
        "registry_s3_credentials_secret": "hub-s3",
        "registry_s3_root_directory": "/knlab",
    }
    code, output = sandbox.run(**settings)
    assert code == 0, output[-3000:]

    # 1. The storage by env; the keys and the HTTP secret only by reference, and shown nowhere.
    spec = sandbox.hub()["spec"]["template"]
    env = {item["name"]: item for item in spec["spec"]["containers"][0]["env"]}
    assert env["REGISTRY_STORAGE"]["value"] == "s3"
    assert env["REGISTRY_STORAGE_S3_REGIONENDPOINT"]["value"] == s3["endpoint"]
    assert env["REGISTRY_STORAGE_S3_SECURE"]["value"] == "false"
    assert env["REGISTRY_STORAGE_REDIRECT_DISABLE"]["value"] == "true"
    assert env["REGISTRY_STORAGE_S3_SECRETKEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "hub-s3", "key": "secret_key"}
    }
    assert env["REGISTRY_HTTP_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": "hub-http-secret", "key": "secret"}}
    assert "volumes" not in spec["spec"] or not spec["spec"]["volumes"]
    http_secret = json.loads(sandbox.kubectl("get", "secret", "hub-http-secret", "-o", "json"))
    shared = base64.b64decode(http_secret["data"]["secret"]).decode()
    assert len(shared) == 48
    for secret in (s3["secret_key"], shared):
        assert secret not in output
        assert secret not in json.dumps(sandbox.hub())

    # 2. Again: nothing changes, the HTTP secret stays.
    code, output = sandbox.run(**settings)
    assert code == 0, output[-3000:]
    assert recap_changed(output) == 0
    again = json.loads(sandbox.kubectl("get", "secret", "hub-http-secret", "-o", "json"))
    assert again["data"]["secret"] == http_secret["data"]["secret"]

    # 3. A push lands in the bucket, as files under the root directory.
    host = sandbox.hub()["status"]["url"].split("://", 1)[1]
    gateway = sandbox.info["gateway"]
    pushed = asyncio.run(push(gateway, host))
    blobs = Path(s3["bucket_dir"]) / "knlab" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    stored = {path.parent.name for path in blobs.glob("*/*/data")}
    assert {digest.split(":", 1)[1] for digest in pushed.blob_digests} <= stored

    # 4. More replicas and a target: a new revision, a new process with an empty filesystem.
    revision = sandbox.hub()["status"]["latestReadyRevisionName"]
    code, output = sandbox.run(
        **settings, registry_max_scale=3, registry_autoscaling_target=10, registry_autoscaling_metric="concurrency"
    )
    assert code == 0, output[-3000:]
    hub = sandbox.hub()
    assert hub["status"]["latestReadyRevisionName"] != revision
    annotations = hub["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/max-scale"] == "3"
    assert annotations["autoscaling.knative.dev/target"] == "10"
    assert annotations["autoscaling.knative.dev/metric"] == "concurrency"
    asyncio.run(pull(gateway, host, pushed))

    # 5. Gone: the hub and the role's Secret; the user's Secret and the images stay.
    absent = sandbox.playbook.with_name("absent.yml")
    absent.write_text(ABSENT_PLAY)
    code, output = sandbox.run(absent)
    assert code == 0, output[-3000:]
    assert recap_changed(output) >= 2
    secrets = sandbox.kubectl("get", "secrets", "-o", "name").split()
    assert "secret/hub-s3" in secrets and "secret/hub-http-secret" not in secrets
    assert {digest.split(":", 1)[1] for digest in pushed.blob_digests} <= {
        p.parent.name for p in blobs.glob("*/*/data")
    }


def test_bad_s3_settings_are_refused_before_any_request(sandbox: Sandbox) -> None:
    for settings, message in (
        (
            {"registry_storage": "s3", "registry_s3_bucket": "hub", "registry_persistence": True},
            "registry_storage=s3 and registry_persistence=true cannot be combined",
        ),
        ({"registry_max_scale": 2}, "registry_max_scale must be 1 unless registry_storage=s3, got 2"),
        ({"registry_storage": "s3"}, "registry_s3_bucket must be set with registry_storage=s3"),
    ):
        seen = (sandbox.state_dir / "requests.log").read_text().count("\n")
        code, output = sandbox.run(**settings)
        assert code != 0
        assert message in " ".join(output.split())
        assert "Traceback" not in output
        assert (sandbox.state_dir / "requests.log").read_text().count("\n") == seen


def test_a_default_hub_is_the_hub_it_always_was(sandbox: Sandbox) -> None:
    """The new options unset: no Secret, one replica, the same env and annotations as before them,
    so an existing hub gets no new revision."""
    code, output = sandbox.run()
    assert code == 0, output[-3000:]
    template = sandbox.hub()["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "1",
    }
    assert template["spec"]["containers"][0]["env"] == [{"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"}]
    assert not template["spec"].get("volumes")
    assert "hub-http-secret" not in sandbox.kubectl("get", "secrets", "-o", "name")
