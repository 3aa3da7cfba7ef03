"""The fault campaign's machinery: the waits, the faults, and the rule that judges each wait.

Shared with tests/cluster through its conftest (the `Cluster` helper, loaded here under the name
``cluster_helpers`` so that it never clashes with this directory's own conftest).

The judging rule (docs/RELIABILITY.md, "Faults on the real cluster"), applied to every wait once the
cluster has settled (every component runs, /readyz answers, the Knative and Tekton Deployments are
Available):

- correct: the module reported success and the object is in that state (the TaskRun Succeeded, the
  Service's Revision that the module named is Ready, the Service is gone), or the module reported the
  object's own failure and the object really failed (TaskRun Succeeded=False, Service Ready=False);
- clear error: the module failed without a traceback, with a one-line message that names the fault:
  the connection (refused, reset, closed, unreachable, timed out, EOF), the server's answer
  (500/502/503/504, "unavailable", a webhook that could not be called) or its own timeout with the last
  state it saw;
- wrong: anything else. Success for an object not in that state, a failure for an object that did
  not fail without such a message, a traceback, no result at all, or a run that outlived the module's
  own timeout by HANG_MARGIN seconds.

For a push to the hub (the fault "hub's pod killed in the middle of a push"), the wait is the push
and the check that follows it with registry_image_info once the hub is back: correct when an
acknowledged push (201 for its manifest) is there with the acknowledged digest, clear error when the
push was not acknowledged and its error names the connection, or the registry answered it with an
error code (404 BLOB_UPLOAD_UNKNOWN: the upload session died with the pod), wrong when an
acknowledged image is missing or has another digest, or when registry_image_info fails or lies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("cluster_helpers", _HERE.parent / "cluster" / "conftest.py")
cluster_helpers = importlib.util.module_from_spec(_spec)
sys.modules["cluster_helpers"] = cluster_helpers
_spec.loader.exec_module(cluster_helpers)

Cluster = cluster_helpers.Cluster
CLI = cluster_helpers.CLI
BIN = cluster_helpers.BIN
ROOT = cluster_helpers.ROOT
STATE = cluster_helpers.STATE

from knlab_cluster.settings import API_PORT, NODE_IP, Paths  # noqa: E402

__all__ = ["BIN", "CLI", "NODE_IP", "ROOT", "STATE", "Cluster"]

# One pair of namespaces per run: an earlier run's may still be terminating.
NAMESPACE = f"knlab-faults-{os.getpid()}"
HANG_MARGIN = 90.0
WAIT_TIMEOUT = 240  # the modules' own timeout for every wait of the campaign
HUB_NAMESPACE = f"knlab-faults-hub-{os.getpid()}"
PROXY_PORT = 16443

FAULT_WORDS = re.compile(
    r"refused|reset|closed|unreachable|timed out|timeout|EOF|connection|disconnect|broken pipe|"
    r"\b50[0234]\b|unavailable|failed calling webhook|no endpoints|cannot reach|not deleted in time",
    re.IGNORECASE,
)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|MODULE FAILURE")


def lines_of(text: str) -> int:
    return len(text.strip().splitlines())


# --- running a module ----------------------------------------------------------------------------
@dataclass
class ModuleRun:
    result: dict | None
    output: str
    started: float
    ended: float
    hung: bool = False


def run_module(module: str, args: dict, kubeconfig: str | None = None, timeout: float = WAIT_TIMEOUT) -> ModuleRun:
    """One collection module run by `ansible` inside the namespace, as Cluster.module does, but
    keeping its raw output (for the secrets grep), its timing, and never raising."""
    argv = cluster_helpers.module_argv(module, args, kubeconfig)
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + HANG_MARGIN, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else ""
        return ModuleRun(None, out, started, time.monotonic(), hung=True)
    ended = time.monotonic()
    output = done.stdout + done.stderr
    result = None
    start = done.stdout.find("{")
    if start >= 0:
        try:
            report = json.loads(done.stdout[start:])
            result = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            result = None
    return ModuleRun(result, output, started, ended)


# --- outcomes ------------------------------------------------------------------------------------
CORRECT, CLEAR, WRONG = "correct", "clear error", "wrong"


@dataclass
class Outcome:
    fault: str
    wait: str
    name: str
    verdict: str
    why: str
    during: bool  # the fault was injected while this wait ran
    traceback: bool = False
    hung: bool = False
    object_failed: bool = False  # the object itself failed (its own failure, reported as such)


def module_failure(run: ModuleRun) -> tuple[str | None, str]:
    """(None, "") when the run is judged by its object; else (WRONG or CLEAR, why) from the failure."""
    if run.hung:
        return WRONG, f"no answer {HANG_MARGIN:.0f} s past the module's own timeout"
    if run.result is None:
        return WRONG, f"no result: {run.output[-300:]!r}"
    # The module's own output only: a failing step's log (in the result) may say anything.
    # ansible-core 2.19 puts "exception": "(traceback unavailable)" in every fail_json result: only
    # a real one (the text of a Python traceback, or Ansible's MODULE FAILURE) counts.
    own = " ".join(str(run.result.get(key) or "") for key in ("msg", "module_stdout", "module_stderr", "exception"))
    if TRACEBACK.search(own):
        return WRONG, f"traceback: {str(run.result.get('msg'))[:300]!r}"
    return None, ""


def fault_named(msg: str) -> bool:
    return lines_of(msg) == 1 and bool(FAULT_WORDS.search(msg))


def judge_failure(msg: str, really_failed: bool, own_failure_words: re.Pattern) -> tuple[str, str, bool]:
    """A failed wait: its object's own failure, a clear error naming the fault, or wrong."""
    if really_failed and own_failure_words.search(msg):
        return CORRECT, "the object's own failure, reported", True
    if fault_named(msg):
        return CLEAR, msg[:200], False
    return WRONG, f"failure without naming the fault: {msg[:300]!r}", False


# --- the waits ------------------------------------------------------------------------------------
@dataclass
class Wait:
    kind: str  # build | rollout | delete | push
    name: str
    delay: float  # seconds after the batch starts (deletes: relative to the injection)
    exit_code: int = 0  # builds: the step's exit code
    sleep: int = 0  # builds: the step's sleep
    run: ModuleRun | None = None
    extra: dict = field(default_factory=dict)


def taskrun_manifest(name: str, image: str, sleep: int, exit_code: int) -> dict:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"knlab-faults": "1"}},
        "spec": {
            "taskSpec": {
                "steps": [{"name": "work", "image": image, "command": ["sh", "-c", f"sleep {sleep}; exit {exit_code}"]}]
            }
        },
    }


def service_args(name: str, image: str) -> dict:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "image": image,
        "command": ["python3", "-m", "http.server", "8080"],
        "port": 8080,
        "wait_timeout": WAIT_TIMEOUT,
    }


def service_manifest(name: str, image: str) -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"knlab-faults": "1"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": image,
                            "command": ["python3", "-m", "http.server", "8080"],
                            "ports": [{"containerPort": 8080}],
                        }
                    ]
                }
            }
        },
    }


def apply(cluster: Cluster, manifests: list[dict]) -> None:
    if manifests:
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests), timeout=180)


def get(cluster: Cluster, resource: str, name: str) -> dict | None:
    out = cluster.kubectl("get", resource, name, "-n", NAMESPACE, "-o", "json", "--ignore-not-found", check=False)
    return json.loads(out) if out.strip() else None


def condition(obj: dict | None, kind: str) -> str | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status")
    return None


OWN_BUILD_FAILURE = re.compile(r"exit code|StepFailed|Failed|failed", re.IGNORECASE)
OWN_ROLLOUT_FAILURE = re.compile(r"is not ready", re.IGNORECASE)


def judge_wait(cluster: Cluster, fault: str, wait: Wait, injected: float) -> Outcome:
    run = wait.run
    assert run is not None
    during = run.started <= injected <= run.ended
    verdict, why = module_failure(run)
    base = {"fault": fault, "wait": wait.kind, "name": wait.name, "during": during}
    if verdict is not None:
        return Outcome(**base, verdict=verdict, why=why, traceback=why.startswith("traceback"), hung=run.hung)
    result = run.result or {}
    failed = bool(result.get("failed"))
    msg = str(result.get("msg") or "")
    if wait.kind == "build":
        obj = cluster.wait(
            lambda: (o := get(cluster, "taskrun", wait.name)) and condition(o, "Succeeded") in {"True", "False"} and o,
            f"TaskRun {wait.name} to finish",
            timeout=WAIT_TIMEOUT,
        )
        state = condition(obj, "Succeeded")
        if not failed:
            ok = state == "True"
            return Outcome(**base, verdict=CORRECT if ok else WRONG, why=f"success reported, Succeeded={state}")
        v, why, own = judge_failure(msg, state == "False", OWN_BUILD_FAILURE)
        if state == "True" and own:  # a failure message for a run that succeeded is never "its own"
            v, why, own = (
                (CLEAR, msg[:200], False)
                if fault_named(msg)
                else (WRONG, f"failed, but it succeeded: {msg[:300]!r}", False)
            )
        return Outcome(**base, verdict=v, why=why, object_failed=own)
    if wait.kind == "rollout":
        if not failed:
            revision = result.get("latest_ready_revision")
            rev = (
                cluster.wait(
                    lambda: (
                        (r := get(cluster, "revision", revision or "-"))
                        and condition(r, "Ready") in {"True", "False"}
                        and r
                    ),
                    f"Revision {revision}",
                    timeout=120,
                )
                if revision
                else None
            )
            ok = rev is not None and condition(rev, "Ready") == "True"
            return Outcome(
                **base,
                verdict=CORRECT if ok else WRONG,
                why=f"Ready reported, revision {revision} Ready={condition(rev, 'Ready')}",
            )
        ksvc = get(cluster, "ksvc", wait.name)
        v, why, own = judge_failure(msg, condition(ksvc, "Ready") == "False", OWN_ROLLOUT_FAILURE)
        return Outcome(**base, verdict=v, why=why, object_failed=own)
    if wait.kind == "delete":
        gone = get(cluster, "ksvc", wait.name) is None
        if not failed:
            return Outcome(**base, verdict=CORRECT if gone else WRONG, why=f"gone reported, gone={gone}")
        v, why, _ = judge_failure(msg, False, re.compile("(?!)"))
        return Outcome(**base, verdict=v, why=why)
    raise AssertionError(wait.kind)


# --- the faults -----------------------------------------------------------------------------------
def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )


def restart(component: str) -> str:
    done = cli("restart", component)
    assert done.returncode == 0, f"knlab-cluster restart {component} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


CONTROLLERS = (
    ("knative-serving", "app=controller"),
    ("knative-serving", "app=webhook"),
    ("tekton-pipelines", "app=tekton-pipelines-controller"),
)


def kill_controllers(cluster: Cluster) -> str:
    """The pods are deleted at once, without a grace period: their Deployments bring them back."""
    for namespace, selector in CONTROLLERS:
        cluster.kubectl(
            "delete",
            "pod",
            "-n",
            namespace,
            "-l",
            selector,
            "--grace-period=0",
            "--force",
            "--wait=false",
            check=False,
            timeout=120,
        )
    return "killed " + ", ".join(f"{ns}/{sel}" for ns, sel in CONTROLLERS)


def settle(cluster: Cluster, timeout: float = 300) -> None:
    """Every component runs, the API server is ready, the stack's Deployments are Available."""
    deadline = time.monotonic() + timeout
    while True:
        status = cli("status", timeout=60).stdout
        if "stopped" not in status and cluster.exec("kubectl", "get", "--raw", "/readyz", check=False).strip() == "ok":
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster did not settle in {timeout:.0f} s:\n{status}")
        time.sleep(2)
    for namespace in ("knative-serving", "tekton-pipelines", "kube-system"):
        cluster.kubectl(
            "wait",
            "deployment",
            "--all",
            "-n",
            namespace,
            "--for=condition=Available",
            "--timeout=240s",
            check=False,
            timeout=260,
        )


# --- the TCP proxy (the "watch connection cut" fault) ----------------------------------------------
PROXY_SOURCE = r"""
import os, signal, socket, sys, threading
listen_port, target_port, pidfile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pairs, lock = [], threading.RLock()
def cut(*_):
    # shutdown, not close: a close from this thread would neither wake the threads blocked in recv
    # nor end the connections (they hold the sockets), and the client would see a silent connection.
    with lock:
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        pairs.clear()
signal.signal(signal.SIGUSR1, cut)
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    a.close()
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)
open(pidfile, "w").write(str(os.getpid()))
while True:
    try:
        client, _ = server.accept()
    except InterruptedError:
        continue
    try:
        upstream = socket.create_connection(("127.0.0.1", target_port))
    except OSError:
        client.close()
        continue
    with lock:
        pairs.append((client, upstream))
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
"""


class Proxy:
    """A TCP proxy inside the namespace between the modules and the API server; `cut` resets every
    connection it carries (each side gets an RST), as a dropped NAT entry or a load balancer would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pidfile = directory / "proxy.pid"
        self.script = directory / "proxy.py"
        self.script.write_text(PROXY_SOURCE)
        self.kubeconfig = directory / "proxy.kubeconfig"
        config = yaml.safe_load(Paths.from_env().inner_kubeconfig.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{PROXY_PORT}"
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)
        self.proc = subprocess.Popen(
            [CLI, "exec", "--", sys.executable, str(self.script), str(PROXY_PORT), str(API_PORT), str(self.pidfile)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not self.pidfile.exists():
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.1)
        self.pid = int(self.pidfile.read_text())

    def cut(self) -> str:
        os.kill(self.pid, signal.SIGUSR1)
        return "cut every proxied connection"

    def close(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.kubeconfig.unlink(missing_ok=True)


# --- the hub (the "hub's pod killed in the middle of a push" fault) --------------------------------
def hub_url(cluster: Cluster) -> str:
    port = cluster.json("get", "service", "hub-nodeport", "-n", HUB_NAMESPACE)["spec"]["ports"][0]["nodePort"]
    return f"http://{NODE_IP}:{port}"


def hub_manifests(image: str) -> list[dict]:
    """The hub as the demo runs it with registry_persistence (a Knative Service, one replica, its
    storage on a PersistentVolumeClaim) and a NodePort in front of its pods."""
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "hub-data", "namespace": HUB_NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "hub", "namespace": HUB_NAMESPACE},
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            "autoscaling.knative.dev/min-scale": "1",
                            "autoscaling.knative.dev/max-scale": "1",
                        }
                    },
                    "spec": {
                        "containers": [
                            {
                                "image": image,
                                "ports": [{"containerPort": 5000}],
                                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry"}],
                            }
                        ],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "hub-data"}}],
                    },
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hub-nodeport", "namespace": HUB_NAMESPACE},
            "spec": {
                "type": "NodePort",
                "selector": {"serving.knative.dev/service": "hub"},
                "ports": [{"port": 5000, "targetPort": 5000}],  # the API server picks the NodePort
            },
        },
    ]


PUSHER_SOURCE = r"""
import hashlib, json, os, sys, time, urllib.error, urllib.request
base, repository, tag = sys.argv[1:4]
size, chunks, pause = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
def call(method, url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=20) as answer:
        return answer.status, dict(answer.headers), answer.read()
def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = call("POST", f"{base}/v2/{repository}/blobs/uploads/")
    location = headers["Location"]
    if location.startswith("/"):
        location = base + location
    step = max(1, len(data) // chunks)
    offset = 0
    while offset < len(data):
        part = data[offset:offset + step]
        status, headers, _ = call("PATCH", location, part, {"Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(part) - 1}"})
        location = headers["Location"]
        if location.startswith("/"):
            location = base + location
        offset += len(part)
        time.sleep(pause)
    separator = "&" if "?" in location else "?"
    call("PUT", f"{location}{separator}digest={digest}", b"", {"Content-Type": "application/octet-stream"})
    return digest, len(data)
try:
    layer = os.urandom(size)
    layer_digest, layer_size = blob(layer)
    rootfs = {"type": "layers", "diff_ids": [layer_digest]}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": rootfs}).encode()
    config_digest, config_size = blob(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }).encode()
    status, headers, _ = call("PUT", f"{base}/v2/{repository}/manifests/{tag}", manifest,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    expected = "sha256:" + hashlib.sha256(manifest).hexdigest()
    digest = headers.get("Docker-Content-Digest")
    print(json.dumps({"acknowledged": status == 201, "status": status, "digest": digest, "expected": expected}))
except urllib.error.HTTPError as error:
    # The registry answered: its error code says why (BLOB_UPLOAD_UNKNOWN: the upload session lived
    # in the pod that was killed).
    body = error.read().decode(errors="replace")
    codes = ",".join(e.get("code", "?") for e in (json.loads(body or "{}").get("errors") or []) if isinstance(e, dict))
    print(json.dumps({"acknowledged": False, "answered": error.code, "error": f"HTTP {error.code} {codes}"}))
except Exception as error:
    print(json.dumps({"acknowledged": False, "error": f"{type(error).__name__}: {error}".replace("\n", " ")}))
"""
