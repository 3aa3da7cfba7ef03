"""A hub on S3 keeps its images when its pods go (compare test_hub.py, where a hub without a
volume loses them): the registry role with registry_storage: s3 against the cluster's own S3
server (versitygw on the node, `knlab-cluster s3`), two replicas allowed, and the cluster's
registry image (distribution v3)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import CLI, Cluster, hub_nodeport
from knlab_cluster.settings import MIRROR, NODE_IP

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from sandbox_cli import REGISTRY_PLAY, s3_secret_manifest

NAMESPACE = "hub-s3"
NODE_PORT = 30503

pytestmark = pytest.mark.timeout(1500)


def s3_endpoint() -> dict:
    done = subprocess.run([CLI, "s3"], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_a_hub_on_s3_keeps_its_images_when_its_pods_go(cluster: Cluster, tmp_path: Path) -> None:
    s3 = s3_endpoint()
    prefix = f"/test-{uuid.uuid4().hex[:8]}"
    host = f"{NODE_IP}:{NODE_PORT}"
    playbook = tmp_path / "hub-s3.yml"
    playbook.write_text(REGISTRY_PLAY)
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "registry_namespace": NAMESPACE,
                "registry_image": cluster.env["DEMO_REGISTRY_IMAGE"],
                "registry_storage": "s3",
                "registry_s3_endpoint": s3["endpoint"],
                "registry_s3_bucket": s3["bucket"],
                "registry_s3_region": s3["region"],
                "registry_s3_credentials_secret": "hub-s3",
                "registry_s3_root_directory": prefix,
                "registry_max_scale": 2,
            }
        )
    )
    try:
        with cluster.fresh_namespace(NAMESPACE):
            # The keys go through stdin, never a command line.
            cluster.kubectl("apply", "--server-side", "-f", "-", input=s3_secret_manifest("hub-s3", NAMESPACE, s3))
            run = cluster.playbook(str(playbook), "-e", f"@{settings}")
            assert s3["secret_key"] not in run.output
            again = cluster.playbook(str(playbook), "-e", f"@{settings}")
            assert again.changed == 0, again.output[-3000:]
            template = cluster.json("get", "ksvc", "hub", "-n", NAMESPACE)["spec"]["template"]
            assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "2"

            cluster.kubectl("apply", "-f", "-", input=json.dumps(hub_nodeport(NAMESPACE, NODE_PORT)))
            cluster.wait_for_hub(host)
            source = f"{MIRROR}/knlab/python:3-debian12"
            crane = cluster.build["binaries"]["crane"]
            cluster.exec(crane, "copy", "--insecure", source, f"{host}/marker:v1", timeout=300)
            pushed = cluster.exec(crane, "digest", "--insecure", f"{host}/marker:v1").strip()
            blobs = Path(s3["bucket_dir"]) / prefix.lstrip("/") / "docker" / "registry" / "v2" / "blobs"
            assert list(blobs.glob("sha256/*/*/data")), f"no blob under {blobs}"

            assert "marker" in cluster.replace_hub_pods(NAMESPACE, host)
            assert cluster.exec(crane, "digest", "--insecure", f"{host}/marker:v1").strip() == pushed
            # Every layer comes back whole (crane checks each blob's digest as it reads it).
            cluster.exec(crane, "validate", "--insecure", "--remote", f"{host}/marker:v1", timeout=300)
    finally:
        shutil.rmtree(Path(s3["bucket_dir"]) / prefix.lstrip("/"), ignore_errors=True)
