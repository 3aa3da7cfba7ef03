"""The original demo's steps with kubectl alone, no Ansible: a ConfigMap from the app's files, the
hub as a Knative Service, a kaniko TaskRun that pushes to it, the app as a Knative Service from
the pushed digest, and curl through the ingress. Shows the cluster itself does what the collection
relies on, independently of the collection."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, Cluster, hub_manifests
from knlab_cluster.settings import NODE_IP

NAMESPACE = "kubectl-demo"
HUB_NODE_PORT = 30501

pytestmark = pytest.mark.timeout(1500)


def test_the_original_demo_with_kubectl(cluster: Cluster) -> None:
    env = cluster.env
    registry = env["DEMO_REGISTRY_IMAGE"]
    kaniko = env["DEMO_BUILDER_IMAGE"]
    mirror_args = env["DEMO_BUILD_EXTRA_ARGS"].split()
    pull_host = f"{NODE_IP}:{HUB_NODE_PORT}"
    push_host = f"hub.{NAMESPACE}.svc.cluster.local"
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=300)
    try:
        cluster.kubectl("create", "namespace", NAMESPACE)
        source = ROOT / "playbooks" / "files" / "hello"
        cluster.kubectl(
            "create",
            "configmap",
            "hello-src",
            "-n",
            NAMESPACE,
            f"--from-file={source / 'Dockerfile'}",
            f"--from-file={source / 'app.py'}",
        )
        cluster.kubectl("apply", "-f", "-", input=hub_manifests(NAMESPACE, registry, HUB_NODE_PORT))
        cluster.kubectl("wait", "ksvc/hub", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=300s", timeout=320)
        # The node pulls the app from the hub's NodePort, which kube-proxy programs a moment later.
        cluster.wait(
            lambda: cluster.exec("curl", "-fsS", f"http://{pull_host}/v2/", check=False), "the hub's NodePort", 60
        )

        taskrun = {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": "build-hello", "namespace": NAMESPACE},
            "spec": {
                "workspaces": [
                    {
                        "name": "source",
                        "configMap": {
                            "name": "hello-src",
                            "items": [
                                {"key": "Dockerfile", "path": "context/Dockerfile"},
                                {"key": "app.py", "path": "context/app.py"},
                            ],
                        },
                    }
                ],
                "taskSpec": {
                    "workspaces": [{"name": "source"}],
                    "results": [{"name": "IMAGE_DIGEST"}],
                    "steps": [
                        {
                            "name": "build-and-push",
                            "image": kaniko,
                            "command": ["/kaniko/executor"],
                            "args": [
                                *mirror_args,
                                # Through ..data: the kubelet makes "context" a symlink into
                                # ..data, and with a symlink as the context's root the demo's
                                # COPY . copies the link (the TaskRun succeeds, the app cannot
                                # start: what this test showed before the path was changed).
                                "--dockerfile=$(workspaces.source.path)/..data/context/Dockerfile",
                                "--context=dir://$(workspaces.source.path)/..data/context",
                                f"--destination={push_host}/hello:v1",
                                f"--insecure-registry={push_host}",
                                "--digest-file=$(results.IMAGE_DIGEST.path)",
                            ],
                            "securityContext": {"runAsUser": 0},
                        }
                    ],
                },
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(taskrun))
        cluster.kubectl(
            "wait", "taskrun/build-hello", "-n", NAMESPACE, "--for=condition=Succeeded", "--timeout=600s", timeout=620
        )
        done = cluster.json("get", "taskrun", "build-hello", "-n", NAMESPACE)
        digest = next(r["value"] for r in done["status"]["results"] if r["name"] == "IMAGE_DIGEST")
        assert digest.startswith("sha256:")

        app = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "hello", "namespace": NAMESPACE},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"image": f"{pull_host}/hello@{digest}", "env": [{"name": "TARGET", "value": "kubectl"}]}
                        ]
                    }
                }
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(app))
        cluster.kubectl("wait", "ksvc/hello", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=300s", timeout=320)
        assert cluster.answer("hello", NAMESPACE) == "Hello kubectl!\n"
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=300, check=False)
