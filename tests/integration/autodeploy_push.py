"""Push a new image to the hub from outside the demo and wait for the Revision it rolls out.

Used by ``make autodeploy-demo`` (after playbooks/demo.yml and playbooks/autodeploy.yml) and by
tests/integration/test_autodeploy_pod.py. It pushes ``<repository>:<tag>`` over the registry API
(tests/sandbox/image_push.py) through the ingress (the gateway on the sandbox), with an app whose
answer carries a fresh nonce, then waits until:

- a Revision of the Service that was not there before the push is Ready, with the image
  ``<pull host>/<repository>@<pushed digest>``, and the Service is Ready on it (latest created =
  latest ready, observed generation current);
- the Service answers through the ingress with the nonce (the new image serves);
- exactly one Revision was added for the push (one on the tag's previous digest may come too: the
  receiver's periodic resync catching up after the demo ran again and set its own build).

The last line printed sums it up, for example
``autodeploy-demo (sandbox): pushed hello:latest sha256:... -> revision hello-00003 Ready serving it in
2.4 s (push to Ready)``. When the Revision does not come in time the exit status is 1 and the last
line says what was seen instead.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT / "tests" / "sandbox", ROOT / ".build" / "collections"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

APP = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

ANSWER = {answer!r}


class Pushed(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (ANSWER + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Pushed).serve_forever()
"""


class RolloutError(Exception):
    """The pushed image was not rolled out as expected."""


@dataclass
class Rollout:
    repository: str
    tag: str
    digest: str
    revision: str
    seconds: float
    answer: str
    revisions_before: list[str]
    revisions_after: list[str]


def custom_objects(kubeconfig: str) -> Any:
    from kubernetes import client, config  # pylint: disable=import-outside-toplevel

    return client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))


def revisions(api: Any, namespace: str, service: str) -> dict[str, dict]:
    found = api.list_namespaced_custom_object(
        "serving.knative.dev", "v1", namespace, "revisions", label_selector=f"serving.knative.dev/service={service}"
    )
    return {item["metadata"]["name"]: item for item in found["items"]}


def ready(obj: dict) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def host_of(api: Any, namespace: str, name: str) -> str:
    service = api.get_namespaced_custom_object("serving.knative.dev", "v1", namespace, "services", name)
    url = (service.get("status") or {}).get("url") or ""
    if "://" not in url:
        raise RolloutError(f"the Knative Service {namespace}/{name} has no URL yet")
    return url.split("://", 1)[1]


def call(gateway: str, host: str, timeout: float = 10) -> str:
    request = urllib.request.Request(gateway.rstrip("/") + "/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode(errors="replace").strip()
    except (OSError, urllib.error.HTTPError) as exc:
        return f"<no answer: {exc}>"


MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


def tag_digest(gateway: str, hub_host: str, repository: str, tag: str) -> str:
    """The tag's digest in the hub now ('' when the tag is not there)."""
    request = urllib.request.Request(
        f"{gateway.rstrip('/')}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Host": hub_host, "Accept": ", ".join(MANIFEST_TYPES)},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return ""
        raise RolloutError(f"the hub answered HEAD of {repository}:{tag} with {exc.code}") from None


def fetch(gateway: str, hub_host: str, path: str, accept: str = "") -> tuple[bytes, str]:
    headers = {"Host": hub_host}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(gateway.rstrip("/") + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raise RolloutError(f"the hub answered GET {path} with {exc.code}") from None


def push_image(gateway: str, hub_host: str, repository: str, tag: str, answer: str) -> str:
    """Push ``repository:tag``: the tag's current image plus one layer with an app answering ``answer``.

    Derived from what the tag holds (the demo's build: a base image with python3), so the pushed
    image runs wherever that one runs, on the sandbox as on a cluster.
    """
    import aiohttp  # pylint: disable=import-outside-toplevel
    from image_push import Pusher, layer  # pylint: disable=import-outside-toplevel

    body, content_type = fetch(gateway, hub_host, f"/v2/{repository}/manifests/{tag}", ", ".join(MANIFEST_TYPES))
    manifest = json.loads(body)
    if not manifest.get("layers") or "config" not in manifest:
        raise RolloutError(
            f"{repository}:{tag} in the hub is not a single image manifest ({manifest.get('mediaType')}): "
            "run playbooks/demo.yml first"
        )
    config = json.loads(fetch(gateway, hub_host, f"/v2/{repository}/blobs/{manifest['config']['digest']}")[0])
    blob, diff_id = layer(
        {"autodeploy-demo/app.py": APP.format(answer=answer).encode()}, directories=("autodeploy-demo",)
    )
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
    runtime = config.setdefault("config", {})
    runtime.pop("Entrypoint", None)
    runtime["Cmd"] = ["python3", "/autodeploy-demo/app.py"]
    if isinstance(config.get("history"), list):
        config["history"].append({"created_by": "tests/integration/autodeploy_push.py"})
    config_blob = json.dumps(config, sort_keys=True).encode()
    layer_type = manifest["layers"][-1]["mediaType"]
    manifest["config"] = {**manifest["config"], "size": len(config_blob), "digest": sha256_hex(config_blob)}
    manifest["layers"].append({"mediaType": layer_type, "size": len(blob), "digest": sha256_hex(blob)})
    media_type = manifest.get("mediaType") or content_type.split(";")[0]

    async def run() -> str:
        async with aiohttp.ClientSession() as session:
            pusher = Pusher(session, gateway.rstrip("/"), hub_host)
            await pusher.blob(repository, blob)
            await pusher.blob(repository, config_blob)
            return await pusher.manifest(repository, tag, json.dumps(manifest).encode(), media_type)

    return asyncio.run(run())


def sha256_hex(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_and_wait(
    kubeconfig: str,
    gateway: str,
    *,
    namespace: str = "default",
    service: str = "hello",
    repository: str = "hello",
    tag: str = "latest",
    hub: str = "hub",
    timeout: float = 120,
) -> Rollout:
    """Push a new image to ``repository:tag`` and wait for exactly one new Ready Revision serving it."""
    api = custom_objects(kubeconfig)
    hub_host = host_of(api, namespace, hub)
    app_host = host_of(api, namespace, service)
    before = sorted(revisions(api, namespace, service))
    # When the app does not run the tag's digest yet (the demo ran again: its app role set its own
    # build), the receiver's periodic resync may roll that digest out while this waits: a Revision
    # on the tag's previous digest is that catch-up, not the push's.
    previous = tag_digest(gateway, hub_host, repository, tag)
    answer = f"pushed from outside the demo, nonce {uuid.uuid4().hex}"
    digest = push_image(gateway, hub_host, repository, tag, answer)
    pushed_at = time.monotonic()
    deadline = pushed_at + timeout
    seen = "nothing yet"
    while time.monotonic() < deadline:
        current = revisions(api, namespace, service)
        new = {name: obj for name, obj in current.items() if name not in before}
        serving = [
            name
            for name, obj in new.items()
            if ready(obj) and obj["spec"]["containers"][0]["image"].endswith(f"/{repository}@{digest}")
        ]
        ksvc = api.get_namespaced_custom_object("serving.knative.dev", "v1", namespace, "services", service)
        status = ksvc.get("status") or {}
        if (
            serving
            and ready(ksvc)
            and status.get("observedGeneration") == ksvc["metadata"]["generation"]
            and status.get("latestReadyRevisionName") == serving[0]
            and status.get("latestCreatedRevisionName") == serving[0]
        ):
            seconds = time.monotonic() - pushed_at
            got = call(gateway, app_host)
            if got != answer:
                raise RolloutError(f"revision {serving[0]} is Ready but {service} answers {got!r}, not the pushed app")
            after = revisions(api, namespace, service)
            for name, obj in after.items():
                image = obj["spec"]["containers"][0]["image"]
                if name in before or name == serving[0] or (previous and image.endswith(f"/{repository}@{previous}")):
                    continue
                raise RolloutError(
                    f"expected exactly one new Revision of {service} for the push, also found {name} ({image});"
                    f" before: {before}"
                )
            return Rollout(repository, tag, digest, serving[0], seconds, got, before, sorted(after))
        image = ksvc["spec"]["template"]["spec"]["containers"][0]["image"]
        latest = status.get("latestReadyRevisionName")
        seen = f"image {image}, new revisions {sorted(new) or 'none'}, latest ready {latest}"
        time.sleep(0.2)
    raise RolloutError(
        f"no new Revision of {namespace}/{service} Ready serving {repository}@{digest} within {timeout:g} s of the push"
        f" (saw: {seen}); is the receiver running? kubectl logs -l serving.knative.dev/service=autodeploy"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("K8S_AUTH_KUBECONFIG") or os.environ.get("KUBECONFIG"),
        help="default: $K8S_AUTH_KUBECONFIG, else $KUBECONFIG",
    )
    parser.add_argument("--gateway", required=True, help="the ingress address, e.g. http://127.0.0.1:18080")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--service", default="hello")
    parser.add_argument("--repository", default="hello")
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--hub", default="hub", help="the hub's Knative Service")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--label", default="sandbox", help="where it runs, for the summary line")
    args = parser.parse_args(argv)
    prefix = f"autodeploy-demo ({args.label})"
    if not args.kubeconfig:
        print(f"{prefix}: FAILED: --kubeconfig is required (or K8S_AUTH_KUBECONFIG or KUBECONFIG)", file=sys.stderr)
        return 2
    try:
        rollout = push_and_wait(
            args.kubeconfig,
            args.gateway,
            namespace=args.namespace,
            service=args.service,
            repository=args.repository,
            tag=args.tag,
            hub=args.hub,
            timeout=args.timeout,
        )
    except RolloutError as exc:
        print(f"{prefix}: FAILED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # pylint: disable=broad-exception-caught
        print(f"{prefix}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"answer: {rollout.answer}")
    print(json.dumps({"revisions_before": rollout.revisions_before, "revisions_after": rollout.revisions_after}))
    print(
        f"{prefix}: pushed {rollout.repository}:{rollout.tag} {rollout.digest} -> revision {rollout.revision}"
        f" Ready serving it in {rollout.seconds:.1f} s (push to Ready)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
