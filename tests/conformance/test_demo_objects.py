"""The demo's objects, as each target leaves them: playbooks/demo.yml, then what Knative and Tekton
report about the hub, the build and the app (conditions, reasons, names, step states, results,
URL, the answer). Values that differ by nature (timestamps, digests, the domain) are reduced to
their shape first."""

from __future__ import annotations

import re

from conftest import conditions
from targets import DIGEST, ROOT

NAMESPACE = "default"
TIMESTAMPS = {"startedAt", "finishedAt", "lastTransitionTime", "startTime", "completionTime"}


def _revision_shape(name: str, service: str) -> str:
    return re.sub(rf"^{re.escape(service)}-\d{{5}}$", f"{service}-NNNNN", name)


def _image_shape(image: str) -> str:
    """host/repo@sha256:<hex> -> "<host>/repo@<digest>" (the hosts differ by target)."""
    shape = DIGEST.sub("<digest>", image)
    return re.sub(r"^[^/]+/", "<host>/", shape) if "/" in shape else shape


def test_demo(target, observe) -> None:
    done = target.playbook(ROOT / "playbooks" / "demo.yml", timeout=1500)
    assert done.returncode == 0, f"demo.yml failed on {target.name}:\n{done.output[-4000:]}"
    domain = target.json("get", "configmap", "config-domain", "-n", "knative-serving").get("data", {})
    domain_names = [key for key in domain if not key.startswith("_")]

    answer = target.http_get(target.json("get", "ksvc", "hello", "-n", NAMESPACE)["status"]["url"])
    observe("answer", answer.strip().splitlines())

    for name in ("hub", "hello"):
        service = target.json("get", "ksvc", name, "-n", NAMESPACE)
        status = service["status"]
        observe(f"{name}.service.conditions", conditions(service))
        observe(f"{name}.service.latest_ready", _revision_shape(status["latestReadyRevisionName"], name))
        observe(
            f"{name}.service.url",
            re.sub(
                r"^(https?://[^.]+\.[^.]+)\.(.+)$",
                lambda m: m.group(1) + (".<domain>" if m.group(2) in domain_names else "." + m.group(2)),
                status["url"],
            ),
        )
        observe(
            f"{name}.service.traffic",
            [
                {**t, "revisionName": _revision_shape(t.get("revisionName", ""), name)}
                for t in status.get("traffic", [])
            ],
        )
        observe(f"{name}.service.status_keys", sorted(status))
        revision = target.json("get", "revision", status["latestReadyRevisionName"], "-n", NAMESPACE)
        observe(f"{name}.revision.conditions", conditions(revision))
        observe(
            f"{name}.revision.container_statuses",
            [
                {"name": c.get("name"), "imageDigest": _image_shape(c.get("imageDigest", "(none)"))}
                for c in revision["status"].get("containerStatuses", [])
            ],
        )
        route = target.json("get", "route", name, "-n", NAMESPACE)
        observe(f"{name}.route.conditions", conditions(route))
        configuration = target.json("get", "configuration", name, "-n", NAMESPACE)
        observe(f"{name}.configuration.conditions", conditions(configuration))

    image = target.json("get", "ksvc", "hello", "-n", NAMESPACE)["spec"]["template"]["spec"]["containers"][0]["image"]
    observe("hello.image", _image_shape(image))
    digest = image.rsplit("@", 1)[-1]
    runs = [
        run
        for run in target.json("get", "taskruns", "-n", NAMESPACE)["items"]
        if any(r.get("name") == "IMAGE_DIGEST" and r.get("value") == digest for r in run["status"].get("results", []))
    ]
    assert runs, f"no TaskRun on {target.name} has the app's digest {digest} as its IMAGE_DIGEST"
    run = runs[0]
    observe("build.taskrun.conditions", conditions(run))
    observe("build.taskrun.task", run["spec"].get("taskRef", {}).get("name"))
    observe(
        "build.taskrun.results",
        {
            r["name"]: _image_shape(r["value"]) if isinstance(r.get("value"), str) else r.get("value")
            for r in run["status"]["results"]
        },
    )
    observe(
        "build.taskrun.steps",
        [
            {
                "name": step.get("name"),
                "container": step.get("container"),
                "terminated": {
                    key: DIGEST.sub("<digest>", value) if isinstance(value, str) else value
                    for key, value in step.get("terminated", {}).items()
                    if key not in TIMESTAMPS | {"containerID"}
                },
                "keys": sorted(key for key in step if key not in {"imageID"}),
                "terminationReason": step.get("terminationReason"),
            }
            for step in run["status"].get("steps", [])
        ],
    )
    observe("build.taskrun.status_keys", sorted(run["status"]))

    # The image in the hub, read over the registry API through the ingress: kaniko keeps the base
    # image's manifest media type (issue 8 item 6).
    hub_host = target.json("get", "ksvc", "hub", "-n", NAMESPACE)["status"]["url"].split("://", 1)[1]
    info = target.module(
        "registry_image_info",
        registry_url=target.demo_env["DEMO_INGRESS_ADDRESS"],
        host_header=hub_host,
        repository="hello",
        tag=digest,
    )
    observe("hub.image.exists", info.get("exists"))
    observe("hub.image.media_type", info.get("media_type"))
    observe("build.taskrun.pod_name", run["status"].get("podName", "").startswith(run["metadata"]["name"] + "-pod"))
