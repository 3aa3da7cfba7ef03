"""Wait latency: how long after an object became done does each waiter return?

For a Tekton TaskRun and a Knative Service, five waiters wait on the same object at the same time:

- `module`: this collection — `tekton_taskrun_wait`, or `knative_service` with the Service's exact
  spec (so it writes nothing and only waits, generation-aware) — run directly, as Ansible runs a
  local module but without ansible-playbook: `python -m <module> args.json`;
- `k8s_info`: `kubernetes.core.k8s_info` with `wait: true` and `wait_condition` at its default
  `wait_sleep` (5 s), run the same way;
- `kubectl`: `kubectl wait --for=condition=...`;
- `module_playbook`, `k8s_info_playbook`: the same two tasks through `ansible-playbook`.

Terminal moment: the sandbox appends to `<state-dir>/transitions.log` the wall-clock time at which
it committed the status write that made `Succeeded` (TaskRun) or `Ready` at the current generation
(Service) True — before any watcher can have seen it (sandbox/knlab_sandbox/transitions.py).

Return moment, taken in the calling process: for direct runs and kubectl, `time.time()` when the
result line (`{...}` / `condition met`) arrives on the pipe (a reader thread per process); for the
ansible-playbook runs, `time.time()` in the `knlab_bench_timing` callback when the task's result
reaches the controller. Excess wait = return moment - terminal moment.

Start-up is not measured: each object is first made so that it cannot become done by itself (a
TaskRun with `spec.status: TaskRunPending`; a Service whose app listens only once this script opens
a TCP "gate" port). The waiters are started, and the sandbox's request log must show each one's
first read of the object; then, after a random pause of 0.2-5.2 s (uniform, so that the terminal
moment falls at a random phase of k8s_info's 5 s polling, as it would in real use), the script
releases the object: it clears `spec.status` (the Tekton controller then really runs the kaniko
step, `--no-push`) or opens the gate (the app listens, the Knative controller marks the Revision,
Configuration, Route and Service Ready). The controllers write the terminal status; nothing is
written by the script at that moment.

    python benchmarks/wait_latency.py [--runs 20] [--kinds taskrun,ksvc]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    Api,
    LogTail,
    Sandbox,
    ansible_env,
    condition,
    processes,
    read_jsonl,
    save,
    summary,
    tool,
    wait_until,
)

NAMESPACE = "bench"
KANIKO = "gcr.io/kaniko-project/executor:v1.23.2"
HUB_HOST = f"hub.{NAMESPACE}.svc.cluster.local"
APP_REPOSITORY = f"{HUB_HOST}/bench/gated"
WAITERS = ("module", "k8s_info", "kubectl", "module_playbook", "k8s_info_playbook")
PAUSE = (0.2, 5.2)  # seconds between "all waiters are waiting" and the release
WAITER_TIMEOUT = 120  # what each waiter is told
ITERATION_TIMEOUT = 90.0  # for this script: everything in one iteration
TIME_LIMIT = 600.0  # the whole series, whatever --runs says

APP_SOURCE = '''\
"""Benchmark app: it listens on PORT only after the benchmark opens its gate port."""

import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

gate = ("127.0.0.1", int(os.environ["GATE_PORT"]))
deadline = time.monotonic() + 300
while True:
    try:
        socket.create_connection(gate, timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("the benchmark never opened the gate")
        time.sleep(0.005)


class Answer(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")


HTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Answer).serve_forever()
'''
DOCKERFILE = 'FROM scratch\nWORKDIR /app\nCOPY app.py /app/app.py\nCMD ["python3", "app.py"]\n'

TASKRUNS = f"/apis/tekton.dev/v1/namespaces/{NAMESPACE}/taskruns"
KSVCS = f"/apis/serving.knative.dev/v1/namespaces/{NAMESPACE}/services"


# --- set-up ---------------------------------------------------------------------------------------


def kaniko_taskrun(name: str, args: list[str], *, pending: bool) -> dict:
    """A TaskRun with an inline kaniko Task, its context the ConfigMap `bench-src` (one level down)."""
    spec: dict[str, Any] = {
        "taskSpec": {
            "workspaces": [{"name": "source"}],
            "results": [{"name": "IMAGE_DIGEST", "type": "string"}],
            "steps": [
                {
                    "name": "build",
                    "image": KANIKO,
                    "args": [
                        *args,
                        "--dockerfile=$(workspaces.source.path)/context/Dockerfile",
                        "--context=dir://$(workspaces.source.path)/context",
                        "--digest-file=$(results.IMAGE_DIGEST.path)",
                    ],
                }
            ],
        },
        "workspaces": [
            {
                "name": "source",
                "configMap": {
                    "name": "bench-src",
                    "items": [{"key": k, "path": f"context/{k}"} for k in ("Dockerfile", "app.py")],
                },
            }
        ],
    }
    if pending:
        spec["status"] = "TaskRunPending"
    return {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name}, "spec": spec}


def wait_condition(api: Api, path: str, kind: str, timeout: float) -> dict:
    def done() -> dict | None:
        obj = api.get(path)
        state = condition(obj, kind).get("status")
        if state == "False":
            raise RuntimeError(f"{path}: {kind}=False: {condition(obj, kind).get('message')}")
        return obj if state == "True" else None

    return wait_until(f"{path} {kind}", done, timeout, interval=0.1)


def set_up(api: Api, kinds: list[str]) -> str | None:
    """Namespace, build context; for Services also the hub and the gated app image (pinned by digest)."""
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    api.create(
        f"/api/v1/namespaces/{NAMESPACE}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench-src"},
         "data": {"Dockerfile": DOCKERFILE, "app.py": APP_SOURCE}},
    )  # fmt: skip
    if "ksvc" not in kinds:
        return None
    hub = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "hub"},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "1"}
                },
                "spec": {
                    "containers": [
                        {
                            "image": "docker.io/library/registry:2",
                            "ports": [{"containerPort": 5000}],
                            "env": [{"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"}],
                        }
                    ]
                },
            }
        },
    }
    api.create(KSVCS, hub)
    wait_condition(api, f"{KSVCS}/hub", "Ready", 60)
    args = [f"--insecure-registry={HUB_HOST}", f"--destination={APP_REPOSITORY}:latest"]
    api.create(TASKRUNS, kaniko_taskrun("build-app", args, pending=False))
    built = wait_condition(api, f"{TASKRUNS}/build-app", "Succeeded", 120)
    digest = next(r["value"] for r in built["status"]["results"] if r["name"] == "IMAGE_DIGEST").strip()
    return f"{APP_REPOSITORY}@{digest}"


# --- one object to wait for -----------------------------------------------------------------------


@dataclass
class Target:
    kind: str  # taskrun | ksvc
    name: str
    path: str
    condition: str
    api_version: str
    kind_name: str
    kubectl_ref: str
    module_vars: dict[str, Any]
    gate: socket.socket | None = None
    gate_port: int = 0

    @property
    def collection(self) -> str:
        return self.path.rsplit("/", 1)[0]


def make_taskrun(api: Api, index: int) -> Target:
    name = f"wait-tr-{index}"
    api.create(TASKRUNS, kaniko_taskrun(name, ["--no-push"], pending=True))
    # The controller marks it pending (Succeeded Unknown/Pending): it will not start by itself.
    wait_until(
        f"{name} pending",
        lambda: condition(api.get(f"{TASKRUNS}/{name}"), "Succeeded").get("reason") == "TaskRunPending",
        30,
    )
    return Target(
        "taskrun", name, f"{TASKRUNS}/{name}", "Succeeded", "tekton.dev/v1", "TaskRun",
        f"taskruns.tekton.dev/{name}", {"bench_kind": "taskrun"},
    )  # fmt: skip


def make_service(api: Api, index: int, image: str) -> Target:
    name = f"wait-ksvc-{index}"
    with socket.socket() as probe:  # a free port, opened (as the gate) only at the release
        probe.bind(("127.0.0.1", 0))
        gate_port = probe.getsockname()[1]
    env = {"GATE_PORT": str(gate_port)}
    body = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {"containers": [{"image": image, "env": [{"name": k, "value": v} for k, v in env.items()]}]}
            }
        },
    }
    api.create(KSVCS, body)

    def deploying() -> bool:
        obj = api.get(f"{KSVCS}/{name}") or {}
        observed = (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")
        return observed and condition(obj, "Ready").get("status") == "Unknown"

    wait_until(f"{name} observed and not ready", deploying, 30)
    return Target(
        "ksvc", name, f"{KSVCS}/{name}", "Ready", "serving.knative.dev/v1", "Service",
        f"services.serving.knative.dev/{name}",
        {"bench_kind": "ksvc", "bench_image": image, "bench_env": env}, gate_port=gate_port,
    )  # fmt: skip


def release(api: Api, target: Target) -> None:
    if target.kind == "taskrun":
        api.merge_patch(target.path, {"spec": {"status": None}})
    else:
        gate = socket.socket()
        gate.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        gate.bind(("127.0.0.1", target.gate_port))
        gate.listen(8)
        target.gate = gate


def clean_up(api: Api, target: Target) -> None:
    api.delete(target.path)
    if target.gate is not None:
        target.gate.close()


# --- the waiters ----------------------------------------------------------------------------------


class Waiter:
    """One waiting process; ``ended`` is the wall-clock moment its answer reached this script."""

    def __init__(self, name: str, process: subprocess.Popen, *, timing_file: Path | None = None):
        self.name = name
        self.process = process
        self.timing_file = timing_file  # ansible-playbook: the callback's record
        self.ended: float | None = None
        self.answer = ""
        self.thread: threading.Thread | None = None
        if timing_file is None:  # a direct run: the answer is the first result line on stdout
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:  # bounded: the process ends (or is killed) at the latest
            line = raw.decode(errors="replace").strip()
            if self.ended is None and (line.startswith("{") or "condition met" in line):
                self.ended = time.time()  # first, so parsing adds nothing
                self.answer = line
        self.process.stdout.close()

    def finish(self, timeout: float) -> None:
        self.process.wait(timeout=timeout)
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.timing_file is not None:
            results = [e for e in read_jsonl(self.timing_file) if e["status"] in ("ok", "failed")]
            entry = next((e for e in results if e["task"].startswith("Bench wait")), None)
            if entry is not None:
                self.ended = entry["time"] if entry["status"] == "ok" else None
                self.answer = json.dumps(entry)

    def outcome(self) -> tuple[bool, bool, str]:
        """(succeeded, changed, message)."""
        if self.ended is None:
            return False, False, f"{self.name}: no answer (exit code {self.process.returncode}) {self.answer[:300]}"
        if self.name == "kubectl":
            return self.process.returncode == 0, False, ""
        result = json.loads(self.answer)
        failed = result.get("failed") or result.get("status") == "failed"
        return not failed, bool(result.get("changed")), f"{self.name}: {result.get('msg', '')}" if failed else ""


def module_args(target: Target, sandbox: Sandbox, which: str) -> tuple[str, dict[str, Any]]:
    """The module and its arguments: the same for a direct run and for the playbooks."""
    common_args = {"kubeconfig": sandbox.kubeconfig, "namespace": NAMESPACE, "name": target.name}
    if which == "k8s_info":
        return "kubernetes.core.k8s_info", {
            **common_args,
            "api_version": target.api_version,
            "kind": target.kind_name,
            "wait": True,
            "wait_condition": {"type": target.condition, "status": "True"},
            "wait_timeout": WAITER_TIMEOUT,
        }
    if target.kind == "taskrun":
        return "knlab.serverless.tekton_taskrun_wait", {**common_args, "timeout": WAITER_TIMEOUT}
    return "knlab.serverless.knative_service", {
        **common_args,
        "image": target.module_vars["bench_image"],
        "env": target.module_vars["bench_env"],
        "wait": True,
        "wait_timeout": WAITER_TIMEOUT,
    }


def start_direct(target: Target, sandbox: Sandbox, which: str, work: Path) -> subprocess.Popen:
    """Run a module as Ansible runs a local one, minus ansible-playbook: python, the module, its args."""
    module, args = module_args(target, sandbox, which)
    args_file = work / f"{target.name}-{which}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    namespace, collection, name = module.split(".")
    argv = [tool("python"), "-m", f"ansible_collections.{namespace}.{collection}.plugins.modules.{name}"]
    env = ansible_env()
    env["PYTHONPATH"] = env["ANSIBLE_COLLECTIONS_PATH"]
    return subprocess.Popen(
        [*argv, str(args_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def start_playbook(target: Target, sandbox: Sandbox, which: str, work: Path) -> tuple[subprocess.Popen, Path]:
    playbook = "wait_k8s_info.yml" if which == "k8s_info" else "wait_module.yml"
    extra = {"bench_kubeconfig": sandbox.kubeconfig, "bench_namespace": NAMESPACE, "bench_name": target.name}
    if which == "k8s_info":
        extra.update(
            bench_api_version=target.api_version, bench_kind_name=target.kind_name, bench_condition=target.condition
        )
    else:
        extra.update(target.module_vars)
    timing_file = work / f"{target.name}-{which}-playbook.jsonl"
    argv = [tool("ansible-playbook"), str(BENCH_DIR / "playbooks" / playbook), "-i", "localhost,"]
    with (work / "ansible.log").open("ab") as log:
        process = subprocess.Popen(
            [*argv, "-e", json.dumps(extra)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ansible_env(KNLAB_BENCH_TIMING_FILE=str(timing_file)),
            start_new_session=True,
        )
    return process, timing_file


def start_kubectl(target: Target, sandbox: Sandbox, work: Path) -> subprocess.Popen:
    argv = [tool("kubectl"), "--kubeconfig", sandbox.kubeconfig, "--cache-dir", str(work / "kubectl-cache")]
    argv += ["-n", NAMESPACE, "wait", f"--for=condition={target.condition}", target.kubectl_ref]
    argv += [f"--timeout={WAITER_TIMEOUT}s"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


class Reads:
    """The waiters' reads of the object, from the sandbox's request log (by user agent and path).

    Both Python waiters first GET the object by name (the module once, then it watches; k8s_info
    twice: its existence check and its first condition check), kubectl lists it by name and then
    watches. Waiters are started one at a time, each once the previous one's reads are in the log.
    """

    def __init__(self, sandbox: Sandbox, target: Target):
        self.tail = LogTail(sandbox.request_log)
        self.target = target
        self.python = 0
        self.kubectl = 0

    def update(self) -> None:
        for entry in self.tail.new():
            if entry.get("method") != "GET" or "watch=" in entry.get("query", ""):
                continue
            agent = entry.get("user_agent", "")
            if agent.startswith("kubectl") and entry["path"] in (self.target.path, self.target.collection):
                self.kubectl += 1
            elif not agent.startswith("knlab-bench") and entry["path"] == self.target.path:
                self.python += 1

    def await_python(self, count: int, what: str) -> None:
        def enough() -> bool:
            self.update()
            return self.python >= count

        wait_until(what, enough, 60)


READS = {"module": 1, "k8s_info": 2}


def run_once(sandbox: Sandbox, api: Api, target: Target, rng: random.Random, work: Path) -> dict[str, Any]:
    reads = Reads(sandbox, target)
    waiters: dict[str, Waiter] = {}
    deadline = time.monotonic() + ITERATION_TIMEOUT
    with processes() as children:
        kubectl = start_kubectl(target, sandbox, work)
        children.append(kubectl)
        waiters["kubectl"] = Waiter("kubectl", kubectl)
        expected = 0
        for which in ("module", "k8s_info"):
            direct = start_direct(target, sandbox, which, work)
            children.append(direct)
            waiters[which] = Waiter(which, direct)
            expected += READS[which]
            reads.await_python(expected, f"the first read of {which}")
            process, timing_file = start_playbook(target, sandbox, which, work)
            children.append(process)
            waiters[f"{which}_playbook"] = Waiter(f"{which}_playbook", process, timing_file=timing_file)
            expected += READS[which]
            reads.await_python(expected, f"the first read of {which} (ansible-playbook)")

        def kubectl_read() -> bool:
            reads.update()
            return reads.kubectl >= 1

        wait_until("kubectl's first read", kubectl_read, 60)
        time.sleep(0.1)
        reads.update()
        extra_reads = reads.python - expected  # anything but 0 means a waiter was mistaken for another

        pause = rng.uniform(*PAUSE)
        time.sleep(pause)
        released = time.time()
        release(api, target)
        for waiter in waiters.values():
            waiter.finish(max(1.0, deadline - time.monotonic()))

    terminal = terminal_time(sandbox, target)
    record: dict[str, Any] = {
        "name": target.name, "pause": pause, "released": released, "terminal": terminal, "errors": [],
        "unexpected_reads_before_release": extra_reads,
    }  # fmt: skip
    if terminal is None:
        record["errors"].append("the sandbox recorded no terminal status")
    for name, waiter in waiters.items():
        succeeded, changed, message = waiter.outcome()
        if name.startswith("module"):
            record[f"{name}_changed"] = changed
            if changed:  # it should only have waited: keep what it said, to see what it changed
                record[f"{name}_answer"] = waiter.answer[:4000]
        if not succeeded:
            record["errors"].append(message)
        elif terminal is not None and waiter.ended is not None:
            record[name] = waiter.ended - terminal
    return record


def terminal_time(sandbox: Sandbox, target: Target) -> float | None:
    uid = (sandbox.client().get(target.path) or {}).get("metadata", {}).get("uid")
    for entry in read_jsonl(sandbox.transitions_log):
        same = (entry["kind"], entry["name"], entry["namespace"]) == (target.kind_name, target.name, NAMESPACE)
        if same and entry["status"] == "True" and (uid is None or entry["uid"] == uid):
            return entry["time"]
    return None


# --- the series -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kinds", default="taskrun,ksvc")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    rng = random.Random(args.seed)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="knlab-bench-wait-"))
    results: dict[str, Any] = {"runs": {}, "summary": {}, "pause": PAUSE}
    sandbox = Sandbox(work / "sandbox")
    try:
        sandbox.up()
        api = sandbox.client()
        image = set_up(api, kinds)
        for kind in kinds:
            records = []
            for index in range(args.runs):
                if time.monotonic() - started > TIME_LIMIT:
                    print(f"time limit reached: {kind} stopped after {index} runs")
                    break
                target = make_taskrun(api, index) if kind == "taskrun" else make_service(api, index, image or "")
                try:
                    record = run_once(sandbox, api, target, rng, work)
                finally:
                    clean_up(api, target)
                records.append(record)
                shown = "  ".join(f"{w} {record[w] * 1000:8.1f} ms" for w in WAITERS if w in record)
                print(f"{kind} {index + 1:2d}: {shown}  {'; '.join(record['errors'])}", flush=True)
            results["runs"][kind] = records
            results["summary"][kind] = {
                waiter: summary([r[waiter] for r in records if waiter in r]) for waiter in WAITERS
            }
            results["summary"][kind]["failed_runs"] = sum(1 for r in records if r["errors"])
            results["summary"][kind]["module_changed_runs"] = sum(
                1 for r in records if r.get("module_changed") or r.get("module_playbook_changed")
            )
            results["summary"][kind]["runs_with_unexpected_reads"] = sum(
                1 for r in records if r["unexpected_reads_before_release"]
            )
    finally:
        sandbox.down()
        with contextlib.suppress(OSError):
            for log in ("ansible.log", "kubectl.log"):
                shutil.copy(work / log, BENCH_DIR / "out" / f"wait_latency-{log}")
        shutil.rmtree(work, ignore_errors=True)
    path = save("wait_latency", results)
    for kind, stats in results["summary"].items():
        for waiter in WAITERS:
            s = stats[waiter]
            if s.get("n"):
                print(f"{kind} {waiter}: median {s['median'] * 1000:.1f} ms, p95 {s['p95'] * 1000:.1f} ms (n={s['n']})")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
