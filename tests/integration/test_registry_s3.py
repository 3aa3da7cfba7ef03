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
import sys
from pathlib import Path

import aiohttp
import pytest
from sandbox_cli import REGISTRY_ABSENT_PLAY, ROOT, SandboxCLI, recap_changed, s3_secret_manifest

sys.path.insert(0, str(ROOT / "tests" / "sandbox"))
from image_push import Pusher, layer

pytestmark = [pytest.mark.needs_docker_registry, pytest.mark.needs_s3_server]


def hub(sandbox: SandboxCLI) -> dict:
    return sandbox.get("ksvc", "hub")


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


def test_the_hub_keeps_its_images_in_the_bucket_across_revisions(sandbox: SandboxCLI, registry_playbook: Path) -> None:
    s3 = json.loads(sandbox.cli("s3", "up", "--port", "0", timeout=600))
    sandbox.kubectl("create", "-f", "-", stdin=s3_secret_manifest("hub-s3", "default", s3))
    settings = {
        "registry_storage": "s3",
        "registry_s3_endpoint": s3["endpoint"],
        "registry_s3_bucket": s3["bucket"],
        "registry_s3_credentials_secret": "hub-s3",
        "registry_s3_root_directory": "/knlab",
    }
    code, output = sandbox.play(registry_playbook, **settings)
    assert code == 0, output[-3000:]

    # 1. The storage by env; the keys and the HTTP secret only by reference, and shown nowhere.
    spec = hub(sandbox)["spec"]["template"]
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
        assert secret not in json.dumps(hub(sandbox))

    # 2. Again: nothing changes, the HTTP secret stays.
    code, output = sandbox.play(registry_playbook, **settings)
    assert code == 0, output[-3000:]
    assert recap_changed(output) == 0
    again = json.loads(sandbox.kubectl("get", "secret", "hub-http-secret", "-o", "json"))
    assert again["data"]["secret"] == http_secret["data"]["secret"]

    # 3. A push lands in the bucket, as files under the root directory.
    host = hub(sandbox)["status"]["url"].split("://", 1)[1]
    gateway = sandbox.info["gateway"]
    pushed = asyncio.run(push(gateway, host))
    blobs = Path(s3["bucket_dir"]) / "knlab" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    stored = {path.parent.name for path in blobs.glob("*/*/data")}
    assert {digest.split(":", 1)[1] for digest in pushed.blob_digests} <= stored

    # 4. More replicas and a target: a new revision, a new process with an empty filesystem.
    revision = hub(sandbox)["status"]["latestReadyRevisionName"]
    code, output = sandbox.play(
        registry_playbook,
        **settings,
        registry_max_scale=3,
        registry_autoscaling_target=10,
        registry_autoscaling_metric="concurrency",
    )
    assert code == 0, output[-3000:]
    scaled = hub(sandbox)
    assert scaled["status"]["latestReadyRevisionName"] != revision
    annotations = scaled["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/max-scale"] == "3"
    assert annotations["autoscaling.knative.dev/target"] == "10"
    assert annotations["autoscaling.knative.dev/metric"] == "concurrency"
    asyncio.run(pull(gateway, host, pushed))

    # 5. Gone: the hub and the role's Secret; the user's Secret and the images stay.
    absent = registry_playbook.with_name("absent.yml")
    absent.write_text(REGISTRY_ABSENT_PLAY)
    code, output = sandbox.play(absent)
    assert code == 0, output[-3000:]
    assert recap_changed(output) >= 2
    secrets = sandbox.kubectl("get", "secrets", "-o", "name").split()
    assert "secret/hub-s3" in secrets and "secret/hub-http-secret" not in secrets
    assert {digest.split(":", 1)[1] for digest in pushed.blob_digests} <= {
        p.parent.name for p in blobs.glob("*/*/data")
    }


def test_bad_s3_settings_are_refused_before_any_request(sandbox: SandboxCLI, registry_playbook: Path) -> None:
    for settings, message in (
        (
            {"registry_storage": "s3", "registry_s3_bucket": "hub", "registry_persistence": True},
            "registry_storage=s3 and registry_persistence=true cannot be combined",
        ),
        ({"registry_max_scale": 2}, "registry_max_scale must be 1 unless registry_storage=s3, got 2"),
        ({"registry_storage": "s3"}, "registry_s3_bucket must be set with registry_storage=s3"),
    ):
        seen = (sandbox.state_dir / "requests.log").read_text().count("\n")
        code, output = sandbox.play(registry_playbook, **settings)
        assert code != 0
        assert message in " ".join(output.split())
        assert "Traceback" not in output
        assert (sandbox.state_dir / "requests.log").read_text().count("\n") == seen


def test_a_default_hub_is_the_hub_it_always_was(sandbox: SandboxCLI, registry_playbook: Path) -> None:
    """The new options unset: no Secret, one replica, the same env and annotations as before them,
    so an existing hub gets no new revision."""
    code, output = sandbox.play(registry_playbook)
    assert code == 0, output[-3000:]
    template = hub(sandbox)["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "1",
    }
    assert template["spec"]["containers"][0]["env"] == [{"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"}]
    assert not template["spec"].get("volumes")
    assert "hub-http-secret" not in sandbox.kubectl("get", "secrets", "-o", "name")
