"""Push -> a new Revision on the real cluster (issue 10): the receiver built by kaniko, run by Knative.

After playbooks/demo.yml and playbooks/autodeploy.yml (the receiver's resync set to an hour, so
that only the hub's notifications can roll anything out until the receiver restarts), pushes are
made from outside the demo with the cluster's `crane` (a new config blob on hello:latest's image):

- a push of hello:latest rolls out exactly one new Revision with `<pull host>/hello@<digest>`;
- the hub runs at log level warn, and `kubectl logs` of its pods does not show the token;
- a push to another repository and the same event sent again change nothing;
- an event with a wrong (or empty) token is refused (401) and changes nothing, although it names
  hello:latest while hello runs another digest (set by hand): the same event with the token then
  rolls hello to the tag's digest;
- the receiver deleted, two pushes, the hub's pod deleted (its queued events go with it, its images
  stay on the claim), the receiver back (playbooks/autodeploy.yml): the Service ends on the newest
  digest, through the resync the receiver does at its start (nothing else could roll it).

The events are sent from the node (the cluster's namespace) to the receiver's cluster-local address
through the internal ingress, with its host in the Host header.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import NAMESPACE, Cluster

pytestmark = pytest.mark.timeout(1500)

RESYNC = {"AUTODEPLOY_RESYNC_SECONDS": "3600"}


def revisions(cluster: Cluster) -> list[str]:
    return cluster.names("revisions", selector="serving.knative.dev/service=hello")


def image(cluster: Cluster) -> str:
    return cluster.json("get", "ksvc", "hello")["spec"]["template"]["spec"]["containers"][0]["image"]


def push(cluster: Cluster, repository: str = "hello") -> str:
    """A new image at <hub>/<repository>:latest (hello:latest's, one new env var); its digest."""
    pull_host = cluster.env["DEMO_REGISTRY_PULL_HOST"]
    crane = cluster.build["binaries"]["crane"]
    marker = f"AUTODEPLOY_TEST={uuid.uuid4().hex}"
    out = cluster.exec(
        crane, "mutate", "--insecure", f"{pull_host}/hello:latest", "--env", marker, "-t",
        f"{pull_host}/{repository}:latest", timeout=120,
    )  # fmt: skip
    return out.strip().rsplit("@", 1)[-1]


def serving(cluster: Cluster, digest: str, timeout: float = 90) -> str:
    """Wait until hello's Ready Revision runs <pull host>/hello@digest; that Revision's name."""
    want = f"{cluster.env['DEMO_REGISTRY_PULL_HOST']}/hello@{digest}"

    def ready():
        svc = cluster.json("get", "ksvc", "hello")
        status = svc.get("status") or {}
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        current = status.get("observedGeneration") == svc["metadata"]["generation"]
        if ok and current and svc["spec"]["template"]["spec"]["containers"][0]["image"] == want:
            return status.get("latestReadyRevisionName")
        return None

    return cluster.wait(ready, f"hello Ready on {want}", timeout=timeout, interval=0.5)


def post_event(cluster: Cluster, body: dict, token: str) -> int:
    """POST an event envelope to the receiver's cluster-local /events; the HTTP status."""
    internal = cluster.json("get", "service", "-n", "traefik-system", "traefik-internal")["spec"]["clusterIP"]
    out = cluster.exec(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
        "-H", "Host: autodeploy.default.svc.cluster.local",
        "-H", "Content-Type: application/vnd.docker.distribution.events.v1+json",
        "-H", "@-", "--data-binary", json.dumps(body), f"http://{internal}/events",
        input=f"Authorization: Bearer {token}\n",
    )  # fmt: skip
    return int(out.strip())


def token(cluster: Cluster) -> str:
    data = cluster.json("get", "secret", "autodeploy-token")["data"]["token"]
    return base64.b64decode(data).decode()


def push_event(cluster: Cluster, digest: str, repository: str = "hello") -> dict:
    return {
        "events": [
            {
                "id": uuid.uuid4().hex,
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "repository": repository,
                    "tag": "latest",
                },
            }
        ]
    }


def receiver_log(cluster: Cluster) -> str:
    return cluster.kubectl("logs", "-l", "serving.knative.dev/service=autodeploy", "-c", "user-container", "--tail=200")


def hub_pods(cluster: Cluster) -> list[dict]:
    return cluster.json("get", "pods", "-l", "serving.knative.dev/service=hub")["items"]


def hub_log(cluster: Cluster) -> str:
    """`kubectl logs` of every pod of the hub (its user container)."""
    names = [pod["metadata"]["name"] for pod in hub_pods(cluster)]
    assert names
    return "".join(cluster.kubectl("logs", name, "-c", "user-container") for name in names)


def hub_digest(cluster: Cluster, repository: str = "hello") -> str:
    """The digest <hub>/<repository>:latest names now (crane, from the node)."""
    pull_host = cluster.env["DEMO_REGISTRY_PULL_HOST"]
    crane = cluster.build["binaries"]["crane"]
    return cluster.exec(crane, "digest", "--insecure", f"{pull_host}/{repository}:latest").strip()


def hub_settled(cluster: Cluster) -> bool:
    """Every pod of the hub runs its latest ready Revision. The pushes below go to the cluster's
    NodePort for the hub, which selects the pods of every Revision of it: while an old one's pod
    still runs (a minute or two after autodeploy.yml rolled the hub), a push can land there and its
    event would come from a hub that no longer notifies, or dies with it (the resync would catch it
    an hour later here)."""
    latest = (cluster.json("get", "ksvc", "hub").get("status") or {}).get("latestReadyRevisionName")
    pods = cluster.json("get", "pods", "-l", "serving.knative.dev/service=hub")["items"]
    return bool(pods) and all(
        pod["metadata"]["labels"].get("serving.knative.dev/revision") == latest
        and not pod["metadata"].get("deletionTimestamp")
        for pod in pods
    )


@pytest.fixture(scope="module")
def deployed(cluster: Cluster) -> Iterator[Cluster]:
    cluster.playbook("demo.yml")
    cluster.playbook("autodeploy.yml", env=RESYNC)
    again = cluster.playbook("autodeploy.yml", env=RESYNC)
    assert again.changed == 0, again.output[-3000:]
    cluster.wait(lambda: hub_settled(cluster), "the hub's older Revisions' pods to go", timeout=420, interval=3)
    yield cluster
    # The tests after this module start from the demo's clean slate: no receiver, no hub.
    cluster.playbook("autodeploy.yml", "-e", "autodeploy_state=absent")
    assert not cluster.kubectl("get", "ksvc", "autodeploy", "--ignore-not-found", "-o", "name").strip()
    cluster.playbook("cleanup.yml")


def test_a_push_rolls_out_exactly_one_revision(deployed: Cluster) -> None:
    before = revisions(deployed)
    digest = push(deployed)
    revision = serving(deployed, digest)
    after = revisions(deployed)
    assert revision not in before
    assert set(after) - set(before) == {revision}, (before, after)
    assert "applied: push event" in receiver_log(deployed)


def test_the_hub_does_not_log_the_token(deployed: Cluster) -> None:
    """distribution logs each endpoint with its headers at info when it starts: the hub runs at warn."""
    hub = deployed.json("get", "ksvc", "hub")
    env = hub["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "REGISTRY_LOG_LEVEL", "value": "warn"} in env
    log = hub_log(deployed)
    assert token(deployed) not in log
    assert "configuring endpoint" not in log


def test_other_repositories_and_duplicates_change_nothing(deployed: Cluster) -> None:
    current, before = image(deployed), revisions(deployed)
    push(deployed, repository="autodeploy-other")
    deployed.wait(
        lambda: "push autodeploy-other:latest" in receiver_log(deployed), "the receiver to see the push", timeout=60
    )
    digest = current.rsplit("@", 1)[-1]
    assert post_event(deployed, push_event(deployed, digest), token(deployed)) == 200  # a duplicate
    time.sleep(5)
    assert (image(deployed), revisions(deployed)) == (current, before)


def test_a_wrong_token_changes_nothing_where_the_right_one_rolls_out(deployed: Cluster) -> None:
    """The forged event names the bound hello:latest, whose digest hello does not run (set by hand to
    an older one; the resync is an hour away): refused, nothing moves; with the token, it rolls."""
    pull_host = deployed.env["DEMO_REGISTRY_PULL_HOST"]
    tag = hub_digest(deployed)
    assert image(deployed) == f"{pull_host}/hello@{tag}"
    older = next(
        found
        for found in (
            deployed.json("get", "revision", name)["spec"]["containers"][0]["image"].rsplit("@", 1)[-1]
            for name in revisions(deployed)
        )
        if found.startswith("sha256:") and found != tag
    )
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": f"{pull_host}/hello@{older}"}]
    deployed.kubectl("patch", "ksvc", "hello", "--type", "json", "-p", json.dumps(patch))
    serving(deployed, older)
    before = revisions(deployed)
    assert post_event(deployed, push_event(deployed, tag), "not-the-token") == 401
    assert post_event(deployed, push_event(deployed, tag), "") == 401
    time.sleep(8)
    assert (image(deployed), revisions(deployed)) == (f"{pull_host}/hello@{older}", before)
    assert "not-the-token" not in receiver_log(deployed)
    # The control: the same event with the token rolls hello to the tag's digest.
    assert post_event(deployed, push_event(deployed, tag), token(deployed)) == 200
    revision = serving(deployed, tag)
    assert set(revisions(deployed)) - set(before) == {revision}


def test_pushes_while_the_receiver_is_down_survive_a_hub_restart(deployed: Cluster) -> None:
    """Receiver down, two pushes, the hub's pod deleted (the events it holds for the receiver are
    gone; the images are on its claim), receiver back: only its resync at start can roll them out."""
    # The receiver down: its Service deleted, and its pods too. Deleting the Service alone is not
    # enough: its pod terminates gracefully (up to the revision's timeout) and went on taking the
    # hub's events for a while, rolling out the pushes below itself (seen on the cluster).
    deployed.kubectl("delete", "ksvc", "autodeploy", "-n", NAMESPACE, "--wait=true", timeout=180)
    selector = "serving.knative.dev/service=autodeploy"

    def receiver_gone() -> bool:
        if not deployed.names("pods", selector=selector):
            return True
        deployed.kubectl("delete", "pods", "-n", NAMESPACE, "-l", selector, "--grace-period=0", "--force")
        return False

    deployed.wait(receiver_gone, "the receiver's pods to go", timeout=180, interval=2)
    current, before = image(deployed), revisions(deployed)
    first, second = push(deployed), push(deployed)
    assert first != second
    time.sleep(3)
    assert image(deployed) == current  # nobody rolled anything out
    old_pods = {pod["metadata"]["name"] for pod in hub_pods(deployed)}
    deployed.kubectl("delete", "pod", "-n", NAMESPACE, *sorted(old_pods), "--wait=true", timeout=180)

    def ready(pod: dict) -> bool:
        conditions = (pod.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def restarted() -> bool:
        pods = hub_pods(deployed)
        names = {pod["metadata"]["name"] for pod in pods}
        return bool(pods) and not names & old_pods and all(ready(pod) for pod in pods)

    deployed.wait(restarted, "the hub's new pod Ready", timeout=300, interval=2)
    assert hub_digest(deployed) == second  # the images survived the restart
    deployed.playbook("autodeploy.yml", env=RESYNC)
    revision = serving(deployed, second)
    assert image(deployed).endswith(second)
    assert set(revisions(deployed)) - set(before) == {revision}  # one Revision for both pushes
    # The new receiver's own log (a pod of the deleted one may still be going): it rolled out by
    # its resync, and no event came (the hub that held them is gone).
    receiver = deployed.json("get", "ksvc", "autodeploy")["status"]["latestReadyRevisionName"]
    uid = deployed.json("get", "revision", receiver)["metadata"]["uid"]
    log = deployed.kubectl("logs", "-l", f"serving.knative.dev/revisionUID={uid}", "-c", "user-container", "--tail=200")
    assert f"applied: resync: {current} -> " in log, log[-3000:]
    assert "push event" not in log, log[-3000:]
