"""A hub without a volume loses its images with its pod (the original demo's limitation, and what
registry_persistence: false still does); test_demo.py shows the hub on a PVC keeping them."""

from __future__ import annotations

import json

import pytest
from conftest import Cluster, hub_manifests
from knlab_cluster.settings import MIRROR, NODE_IP

NAMESPACE = "hub-ephemeral"
NODE_PORT = 30502

pytestmark = pytest.mark.timeout(1500)


def test_a_hub_without_a_volume_loses_its_images_with_its_pod(cluster: Cluster) -> None:
    host = f"{NODE_IP}:{NODE_PORT}"
    with cluster.fresh_namespace(NAMESPACE):
        cluster.kubectl(
            "apply", "-f", "-", input=hub_manifests(NAMESPACE, cluster.env["DEMO_REGISTRY_IMAGE"], NODE_PORT)
        )
        cluster.kubectl("wait", "ksvc/hub", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=300s", timeout=320)
        cluster.wait_for_hub(host)
        # Any image will do: the Python base image, from the mirror.
        source = f"{MIRROR}/knlab/python:3-debian12"
        cluster.exec(cluster.build["binaries"]["crane"], "copy", "--insecure", source, f"{host}/marker:v1", timeout=300)
        catalog = cluster.exec("curl", "-fsS", f"http://{host}/v2/_catalog")
        assert "marker" in json.loads(catalog)["repositories"]

        assert cluster.replace_hub_pods(NAMESPACE, host) == []
