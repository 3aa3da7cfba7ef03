"""Issue 3's "Done when", as a user would check it: the sandbox CLI, the machine's kubectl, plain HTTP.

No part of the collection is in the loop. Every sandbox here is started with ``knlab-sandbox up``
(a daemon, temp state dir, random ports) and stopped with ``knlab-sandbox down``; the manifests and
the app are in ``data/walkthrough/``.

1. The original demo, kubectl only: ConfigMap from files, the hub Knative Service, a kaniko
   Task + TaskRun pushing to the hub, ``kubectl get taskrun -w`` to Succeeded=True, the app from the
   hub image, ``kubectl wait``, ``kubectl get ksvc``, an HTTP GET through the gateway, deletes.
2. kill -9 of the server and ``up`` again: every object is kept (names and uids), resourceVersions
   keep growing, the PVC-backed hub still serves its image and the hub without a PVC lost it.
3. kubectl needs the token and the kubeconfig's CA.
4. With 429/500/503 answers, dropped watches and early compaction, ``kubectl wait`` and the
   kubernetes client's watch both see the condition the Tekton controller sets after a delay.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
import yaml
from conftest import KUBECTL, Sandbox
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

DATA = Path(__file__).parent / "data" / "walkthrough"
HUB = "hub.default.svc.cluster.local"
KEPT_HUB = "hub-kept.default.svc.cluster.local"
# Upper bounds for waits on the sandbox, not performance expectations.
WAIT = 60
FLAGS = "kubernetes.podspec-persistent-volume-claim", "kubernetes.podspec-persistent-volume-write"
# Every kind the sandbox serves.
KINDS = (
    "namespaces,configmaps,secrets,serviceaccounts,pods,services,events,persistentvolumeclaims,"
    "services.serving.knative.dev,configurations,revisions,routes,tasks,taskruns"
)


def cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "knlab_sandbox", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def up(state_dir: Path, *flags: str) -> Sandbox:
    """``knlab-sandbox up`` on random ports; a Sandbox handle (kubectl, requests) for what it started."""
    result = cli(state_dir, "up", "--api-port", "0", "--gateway-port", "0", *flags)
    assert result.returncode == 0, result.stderr
    sandbox = Sandbox(state_dir)
    sandbox.info = json.loads((state_dir / "server.json").read_text())
    return sandbox


@pytest.fixture
def cli_sandbox(tmp_path: Path) -> Iterator[Path]:
    """A state dir for sandboxes started by the CLI; ``down`` at the end stops whatever runs there."""
    state_dir = tmp_path / "state"
    yield state_dir
    down = cli(state_dir, "down")
    assert down.returncode == 0, down.stderr


def gateway_get(sandbox: Sandbox, host: str, path: str) -> tuple[int, str]:
    """GET through the sandbox's gateway with the given Host header, as Knative's ingress is reached."""
    gateway_host, port = sandbox.gateway
    connection = http.client.HTTPConnection(gateway_host, port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def apply(sandbox: Sandbox, manifest: str) -> str:
    return sandbox.kubectl("apply", "-f", "-", input=manifest).stdout


def taskrun_manifest(name: str, image: str) -> str:
    return (
        (DATA / "taskrun.yaml")
        .read_text()
        .replace("name: build-hello", f"name: {name}")
        .replace(f"{HUB}/demo/hello:latest", image)
    )


def watch_taskrun_until_done(sandbox: Sandbox, name: str) -> list[list[str]]:
    """``kubectl get taskrun -w`` until the row of ``name`` says True or False in SUCCEEDED; the rows seen.

    The list form, as in the demo: kubectl lists, then watches from the list's resourceVersion, so
    every change after its list is shown. ``kubectl get taskrun NAME -w`` would race: it GETs the
    object, then watches from resourceVersion 0 and hides that watch's first (synthetic ADDED) event
    as a repeat of what it printed, so a change made between its GET and its watch never shows.
    A sandbox build finishes within milliseconds, so under load it did finish in that gap.
    """
    argv = [KUBECTL, "--kubeconfig", str(sandbox.kubeconfig), "get", "taskrun", "-w"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    rows: list[list[str]] = []
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            row = line.split()
            rows.append(row)
            if row[:1] == [name] and row[1:2] in (["True"], ["False"]):
                return rows
    finally:
        process.kill()
        process.wait(timeout=10)
    pytest.fail(f"kubectl get taskrun -w never showed the end; it printed {rows}\n{taskrun_state(sandbox, name)}")


def taskrun_state(sandbox: Sandbox, name: str) -> str:
    """The TaskRun and its pod as stored, and every step's log: what a stuck run was doing."""
    parts = []
    for kind in ("taskrun", "pod"):
        shown = sandbox.kubectl("get", kind, "-o", "yaml", check=False, timeout=20)
        parts.append(f"--- kubectl get {kind} -o yaml ---\n{shown.stdout}{shown.stderr}")
    logs = sandbox.kubectl("logs", f"{name}-pod", "--all-containers", "--prefix", check=False, timeout=20)
    parts.append(f"--- kubectl logs {name}-pod --all-containers ---\n{logs.stdout}{logs.stderr}")
    return "\n".join(parts)


def test_the_original_demo_with_kubectl_only(cli_sandbox: Path) -> None:
    sb = up(cli_sandbox)
    created = sb.kubectl(
        "create", "configmap", "hello-src", f"--from-file={DATA / 'app.py'}", f"--from-file={DATA / 'Dockerfile'}"
    )
    assert created.stdout.strip() == "configmap/hello-src created"
    assert "RUN" not in (DATA / "Dockerfile").read_text().split()  # the sandbox cannot run one (honestly)

    assert apply(sb, (DATA / "hub.yaml").read_text()).strip() == "service.serving.knative.dev/hub created"
    # As on a cluster: a push to a hub whose route is not ready yet fails (no such host).
    sb.kubectl("wait", "--for=condition=Ready", "ksvc/hub", f"--timeout={WAIT}s", timeout=WAIT + 10)
    applied = apply(sb, (DATA / "task.yaml").read_text() + (DATA / "taskrun.yaml").read_text())
    assert applied.split("\n")[:2] == ["task.tekton.dev/kaniko-build created", "taskrun.tekton.dev/build-hello created"]

    rows = watch_taskrun_until_done(sb, "build-hello")
    assert rows[0] == ["NAME", "SUCCEEDED", "REASON", "STARTTIME", "COMPLETIONTIME"]
    assert rows[-1][1:3] == ["True", "Succeeded"], rows
    digest = sb.kubectl(
        "get", "taskrun", "build-hello", "-o", 'jsonpath={.status.results[?(@.name=="IMAGE_DIGEST")].value}'
    ).stdout
    assert digest.startswith("sha256:") and len(digest) == 71
    build_log = sb.kubectl("logs", "build-hello-pod", "-c", "step-build-and-push").stdout
    assert f"Pushed {HUB}/demo/hello@{digest}" in build_log

    app = (DATA / "app.yaml").read_text().replace("IMAGE", f"{HUB}/demo/hello@{digest}")
    assert apply(sb, app).strip() == "service.serving.knative.dev/hello created"
    waited = sb.kubectl(
        "wait", "--for=condition=Ready", "ksvc/hello", "ksvc/hub", f"--timeout={WAIT}s", timeout=WAIT + 10
    )
    assert waited.stdout.split("\n")[:2] == [
        "service.serving.knative.dev/hello condition met",
        "service.serving.knative.dev/hub condition met",
    ]
    table = [row.split() for row in sb.kubectl("get", "ksvc").stdout.splitlines()]
    assert table[0] == ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    rows_by_name = {row[0]: row for row in table[1:]}
    assert rows_by_name["hello"] == [
        "hello",
        "http://hello.default.127.0.0.1.sslip.io",
        "hello-00001",
        "hello-00001",
        "True",
    ]
    assert rows_by_name["hub"][4] == "True"

    url = sb.kubectl("get", "ksvc", "hello", "-o", "jsonpath={.status.url}").stdout
    assert gateway_get(sb, url.removeprefix("http://"), "/") == (200, "Hello Knative!\n")
    assert gateway_get(sb, HUB, "/v2/demo/hello/tags/list") == (200, '{"name":"demo/hello","tags":["latest"]}\n')

    deleted = sb.kubectl("delete", "ksvc/hello", "ksvc/hub", "taskrun/build-hello", "task/kaniko-build", "cm/hello-src")
    assert deleted.stdout.splitlines() == [
        'service.serving.knative.dev "hello" deleted',
        'service.serving.knative.dev "hub" deleted',
        'taskrun.tekton.dev "build-hello" deleted',
        'task.tekton.dev "kaniko-build" deleted',
        'configmap "hello-src" deleted',
    ]
    left = sb.kubectl("get", "ksvc,configurations,revisions,routes,taskruns,tasks,pods,configmaps", "-o", "name")
    assert left.stdout == ""
    assert gateway_get(sb, url.removeprefix("http://"), "/")[0] == 404
    assert not list((cli_sandbox / "run" / "pids").iterdir())  # no process of the demo is left running


def objects(sandbox: Sandbox) -> dict[tuple[str, str, str], tuple[str, int]]:
    """(kind, namespace, name) -> (uid, resourceVersion) of everything stored."""
    listing = json.loads(sandbox.kubectl("get", KINDS, "-A", "-o", "json").stdout)
    return {
        (item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"]): (
            item["metadata"]["uid"],
            int(item["metadata"]["resourceVersion"]),
        )
        for item in listing["items"]
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


def test_kill_9_keeps_every_object_and_only_the_pvc_hub_keeps_its_images(cli_sandbox: Path) -> None:
    sb = up(cli_sandbox)
    sb.kubectl(
        "patch", "configmap", "config-features", "-n", "knative-serving", "--type=merge",
        "-p", json.dumps({"data": dict.fromkeys(FLAGS, "enabled")}),
    )  # fmt: skip
    apply(sb, (DATA / "hub.yaml").read_text() + (DATA / "hub-with-pvc.yaml").read_text())
    sb.kubectl("wait", "--for=condition=Ready", "ksvc/hub", "ksvc/hub-kept", f"--timeout={WAIT}s", timeout=WAIT + 10)
    sb.kubectl(
        "create", "configmap", "hello-src", f"--from-file={DATA / 'app.py'}", f"--from-file={DATA / 'Dockerfile'}"
    )
    apply(sb, (DATA / "task.yaml").read_text())
    apply(
        sb,
        taskrun_manifest("push-scratch", f"{HUB}/demo/hello:v1")
        + taskrun_manifest("push-kept", f"{KEPT_HUB}/demo/hello:v1"),
    )
    sb.kubectl("wait", "--for=condition=Succeeded", "taskrun/push-scratch", "taskrun/push-kept", f"--timeout={WAIT}s")
    for host in (HUB, KEPT_HUB):
        assert gateway_get(sb, host, "/v2/demo/hello/tags/list") == (200, '{"name":"demo/hello","tags":["v1"]}\n')
    before = objects(sb)
    assert ("PersistentVolumeClaim", "default", "hub-data") in before

    pid = sb.info["pid"]
    os.kill(pid, signal.SIGKILL)  # the server only: its registries are orphaned, as after a crash
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli(cli_sandbox, "status").returncode == 3

    sb = up(cli_sandbox)
    assert sb.info["pid"] != pid
    # The hubs' pods are restarted in place, as kubelet does after a node restart: wait for the
    # restart to show, then for the pods to be Ready again (the Services stayed Ready throughout).
    hub_pods = ("pods", "-l", "serving.knative.dev/service in (hub,hub-kept)")
    restarted = "jsonpath={.status.containerStatuses[0].restartCount}=1"
    sb.kubectl("wait", f"--for={restarted}", *hub_pods, f"--timeout={WAIT}s", timeout=WAIT + 10)
    sb.kubectl("wait", "--for=condition=Ready", *hub_pods, f"--timeout={WAIT}s", timeout=WAIT + 10)
    after = objects(sb)
    for key, (uid, version) in before.items():
        assert key in after, f"{key} is gone after the restart"
        assert after[key][0] == uid, f"{key} has a new uid after the restart"
        assert after[key][1] >= version
    newest = max(version for _, version in after.values())
    sb.kubectl("create", "configmap", "after-restart")
    written = int(sb.kubectl("get", "configmap", "after-restart", "-o", "jsonpath={.metadata.resourceVersion}").stdout)
    assert written > newest

    assert gateway_get(sb, KEPT_HUB, "/v2/demo/hello/tags/list") == (200, '{"name":"demo/hello","tags":["v1"]}\n')
    status, body = gateway_get(sb, HUB, "/v2/demo/hello/tags/list")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"


def kubeconfig_variant(sandbox: Sandbox, path: Path, *, user: dict | None = None, cluster: dict | None = None) -> Path:
    config = yaml.safe_load(sandbox.kubeconfig.read_text())
    if user is not None:
        config["users"][0]["user"] = user
    if cluster is not None:
        config["clusters"][0]["cluster"] = cluster
    path.write_text(yaml.safe_dump(config))
    return path


def kubectl_with(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "cache"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_kubectl_needs_the_token_and_the_ca(sandbox: Sandbox, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from knlab_sandbox.certs import make_ca

    cluster = yaml.safe_load(sandbox.kubeconfig.read_text())["clusters"][0]["cluster"]
    assert kubectl_with(sandbox.kubeconfig, "get", "namespace", "default", "-o", "name").stdout == "namespace/default\n"

    # With no credentials at all kubectl asks for a username instead of calling; basic auth is no token.
    for user in ({"username": "admin", "password": "admin"}, {"token": "not-the-token"}):
        refused = kubectl_with(kubeconfig_variant(sandbox, tmp_path / "no-token", user=user), "get", "namespaces")
        assert refused.returncode != 0
        # (the wording in parentheses depends on kubectl's discovery cache, as against a real cluster)
        assert "error: You must be logged in to the server (" in refused.stderr

    no_ca = kubeconfig_variant(sandbox, tmp_path / "no-ca", cluster={"server": cluster["server"]})
    refused = kubectl_with(no_ca, "get", "namespaces")
    assert refused.returncode != 0 and "certificate signed by unknown authority" in refused.stderr

    _, other_ca = make_ca("someone-else")
    other = tmp_path / "other-ca.crt"
    other.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    refused = kubectl_with(no_ca, "--insecure-skip-tls-verify=false", f"--certificate-authority={other}", "get", "ns")
    assert refused.returncode != 0 and "certificate signed by unknown authority" in refused.stderr
    wrong_ca = kubeconfig_variant(sandbox, tmp_path / "wrong-ca", cluster={**cluster, "certificate-authority-data": ""})
    refused = kubectl_with(
        wrong_ca, "--insecure-skip-tls-verify=false", f"--certificate-authority={other}", "get", "ns"
    )
    assert refused.returncode != 0 and "certificate signed by unknown authority" in refused.stderr


# --- faults -------------------------------------------------------------------------------------

FAULTS = (
    "--fault-seed", "11",
    "--fault-error-rate", "0.25",
    "--fault-error-codes", "429,500,503",
    "--fault-retry-after", "0",
    "--fault-drop-watch-after", "1",
    "--fault-history-limit", "3",
    "--step-delay", "2.5",
)  # fmt: skip
SLOW_TASK = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: context}
data: {Dockerfile: "FROM scratch\\nENV GREETING=hello\\n"}
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: slow}
spec:
  workspaces: [{name: source}]
  steps:
    - name: build
      image: gcr.io/kaniko-project/executor:v1.24.0
      args: [--no-push, "--context=dir://$(workspaces.source.path)"]
---
apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: slow}
spec:
  taskRef: {name: slow}
  workspaces: [{name: source, configMap: {name: context}}]
"""


def succeeded(obj: dict) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == "Succeeded"), "")


def watch_until_succeeded(api: client.CustomObjectsApi) -> tuple[str, int]:
    """Follow TaskRun ``slow`` with list + watch, resuming after drops and relisting after 410."""
    args = ("tekton.dev", "v1", "default", "taskruns")
    version, relists, state = None, 0, ""
    deadline = time.monotonic() + WAIT
    while state not in ("True", "False") and time.monotonic() < deadline:
        try:
            if version is None:
                listing = api.list_namespaced_custom_object(*args, field_selector="metadata.name=slow")
                state = succeeded(listing["items"][0]) if listing["items"] else ""
                version, relists = listing["metadata"]["resourceVersion"], relists + 1
                continue
            stream = watch.Watch().stream(
                api.list_namespaced_custom_object,
                *args,
                resource_version=version,
                field_selector="metadata.name=slow",
                timeout_seconds=10,
            )
            for event in stream:
                if event["type"] == "ERROR":  # the watch answered 410 Expired in the stream
                    version = None
                    break
                version = event["object"]["metadata"]["resourceVersion"]
                state = succeeded(event["object"])
                if state in ("True", "False"):
                    break
        except ApiException as error:
            if error.status == 410:
                version = None
            elif error.status not in (429, 500, 503):
                raise
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError):
            pass  # the stream was cut: resume from the last version seen
    return state, relists


def test_kubectl_wait_and_client_watch_reach_the_end_under_faults(start_sandbox) -> None:
    sb = start_sandbox(*FAULTS)
    for _ in range(30):  # kubectl apply does not retry an injected 500 by itself
        if sb.kubectl("apply", "-f", "-", input=SLOW_TASK, check=False).returncode == 0:
            break
    waiter = subprocess.Popen(
        [
            KUBECTL,
            "--kubeconfig",
            str(sb.kubeconfig),
            "wait",
            "--for=condition=Succeeded",
            "taskrun/slow",
            f"--timeout={WAIT}s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state, relists = watch_until_succeeded(client.CustomObjectsApi(sb.api_client()))
        out, err = waiter.communicate(timeout=WAIT + 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            waiter.kill()
    assert state == "True" and relists >= 1
    assert waiter.returncode == 0, err
    assert out.strip() == "taskrun.tekton.dev/slow condition met"
    requests = [json.loads(line) for line in (sb.state_dir / "requests.log").read_text().splitlines()]
    assert {entry["status"] for entry in requests if entry.get("injected")} & {429, 500, 503}
    client_watches = [
        entry
        for entry in requests
        if entry["user_agent"].startswith("OpenAPI-Generator") and "watch" in str(entry.get("query"))
    ]
    assert len(client_watches) >= 2  # the client's stream was cut at least once and it went on
