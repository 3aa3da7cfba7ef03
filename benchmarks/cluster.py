"""The real cluster (knlab-cluster) in figures; `make bench-cluster` (root, a built cluster).

1. build: the first, uncached run of each build step (from `<cache>/timings.json`, which
   `knlab-cluster build` writes when a step really runs), and a no-op `knlab-cluster build`;
2. warm `knlab-cluster up` after `down` (binaries, images and etcd kept) until everything is Ready;
3. idle memory: RSS and PSS of every process of the cluster (its namespace, its cgroups, the
   loopback forwards) after a quiet minute;
4. the demo: its first run (a real kaniko build and two rollouts) against its re-run;
5. wait latency on the real API server: a TaskRun held with `spec.status: TaskRunPending` is
   released after a random pause while three waiters wait on it - this collection's
   `tekton_taskrun_wait` (run directly), `kubernetes.core.k8s_info` (wait: true, run directly) and
   `kubectl wait`. The terminal moment is the API server's own: the audit log's `stageTimestamp`
   of the status write that made `Succeeded` True (the audit policy logs those writes with their
   bodies). Excess wait = the moment the waiter's answer reached this script - that moment.

Everything goes to 127.0.0.1 (the cluster's loopback forwards) or inside the cluster's namespace.

    python benchmarks/cluster.py [--rounds 10] [--skip-up] [--skip-demo]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from common import REPO, load, machine, save, summary, tool
from report import CLUSTER_BEGIN, CLUSTER_END, replace_cluster_block
from wait_latency import NAMESPACE, PAUSE, Target, Waiter, start_direct, start_kubectl

STATE = Path(os.environ.get("KNLAB_CLUSTER_STATE", "/srv/knlab-cluster"))
CACHE = Path(os.environ.get("KNLAB_CLUSTER_CACHE", "/var/cache/knlab-cluster"))
CLI = tool("knlab-cluster")
KUBECONFIG = str(STATE / "kubeconfig")
STEP_IMAGE = "docker.io/library/busybox:latest"


def cli(*args: str, timeout: float = 1800) -> float:
    started = time.monotonic()
    subprocess.run([CLI, *args], check=True, timeout=timeout, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def kubectl(*args: str, input: str | None = None, tries: int = 3) -> str:
    """kubectl through the loopback forward; a refused request (a webhook still busy) is tried again."""
    for attempt in range(tries):
        argv = [tool("kubectl"), "--kubeconfig", KUBECONFIG, *args]
        done = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return done.stdout
        time.sleep(2 * (attempt + 1))
    raise SystemExit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")


# --- 1. build ------------------------------------------------------------------------------------
def build_figures() -> dict:
    timings = json.loads((CACHE / "timings.json").read_text()) if (CACHE / "timings.json").exists() else {}
    noop = cli("build")
    return {
        "first_build_steps": timings,
        "first_build_seconds": round(sum(t["seconds"] for t in timings.values()), 1),
        "noop_build_seconds": round(noop, 1),
    }


# --- 2. warm up ----------------------------------------------------------------------------------
def warm_up() -> dict:
    cli("down")
    seconds = cli("up")
    return {"warm_up_seconds": round(seconds, 1)}


# --- 3. idle memory ------------------------------------------------------------------------------
def _cluster_pids() -> set[int]:
    from knlab_cluster.node import _cgroup_pids, _netns_pids  # noqa: PLC0415 (the cluster's own view)

    pids = _netns_pids() | _cgroup_pids()
    for pid_file in (STATE / "pids").glob("*.pid"):
        pids.add(int(pid_file.read_text().split()[0]))
    return pids


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def idle_memory(settle: float) -> dict:
    time.sleep(settle)
    rss = pss = 0
    by_name: dict[str, int] = {}
    pids = _cluster_pids()
    for pid in pids:
        rss_kib = _kib(f"/proc/{pid}/status", "VmRSS")
        rss += rss_kib
        pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss")
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        by_name[name] = by_name.get(name, 0) + rss_kib
    top = dict(sorted(by_name.items(), key=lambda kv: -kv[1])[:15])
    return {
        "processes": len(pids),
        "rss_mib": round(rss / 1024, 1),
        "pss_mib": round(pss / 1024, 1),
        "rss_mib_by_name": {k: round(v / 1024, 1) for k, v in top.items()},
    }


# --- 4. the demo ---------------------------------------------------------------------------------
def playbook(name: str) -> float:
    env = json.loads((STATE / "demo.json").read_text())
    argv = [CLI, "exec", "--", "env", *(f"{k}={v}" for k, v in env.items()), "ANSIBLE_LOCALHOST_WARNING=false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING=false", f"ANSIBLE_COLLECTIONS_PATH={REPO / '.build' / 'collections'}",
            tool("ansible-playbook"), str(REPO / "playbooks" / name)]  # fmt: skip
    started = time.monotonic()
    subprocess.run(argv, check=True, timeout=1800, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=REPO)
    return time.monotonic() - started


def demo_runs() -> dict:
    playbook("cleanup.yml")
    first = playbook("demo.yml")
    rerun = playbook("demo.yml")
    playbook("cleanup.yml")
    return {"first_seconds": round(first, 1), "rerun_seconds": round(rerun, 1), "ratio": round(rerun / first, 3)}


# --- 5. wait latency -----------------------------------------------------------------------------
def _taskrun(name: str) -> dict:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "status": "TaskRunPending",
            "taskSpec": {"steps": [{"name": "done", "image": STEP_IMAGE, "command": ["true"]}]},
        },
    }


def _terminal_moment(name: str, since: int) -> float | None:
    """When the API server completed the status write that made the TaskRun's Succeeded True."""
    with (STATE / "logs" / "audit.log").open() as log:
        for number, line in enumerate(log):
            if number < since:
                continue
            event = json.loads(line)
            ref = event.get("objectRef", {})
            if ref.get("resource") != "taskruns" or ref.get("subresource") != "status" or ref.get("name") != name:
                continue
            response = event.get("responseObject") or {}
            if response.get("kind") == "Status":  # a refused write (a conflict): not the one
                continue
            conditions = (response.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Succeeded" and c.get("status") == "True" for c in conditions):
                stamp = event["stageTimestamp"].replace("Z", "+00:00")
                return datetime.datetime.fromisoformat(stamp).timestamp()
    return None


def wait_latency(rounds: int, seed: int) -> dict:
    rng = random.Random(seed)
    # TaskRuns of an earlier series (same seed, same names) must not be mistaken for new ones.
    kubectl("delete", "taskruns", "--all", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    # Created once; "already exists" on a later run is fine.
    subprocess.run(
        [tool("kubectl"), "--kubeconfig", KUBECONFIG, "create", "namespace", NAMESPACE],
        capture_output=True,
        check=False,
    )
    excess: dict[str, list[float]] = {"module": [], "k8s_info": [], "kubectl": []}
    errors: list[str] = []
    cluster = SimpleNamespace(kubeconfig=KUBECONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for index in range(rounds):
            name = f"wait-tr-{index}-{rng.randrange(10**6)}"
            kubectl("apply", "-f", "-", input=json.dumps(_taskrun(name)))
            target = Target(
                "taskrun", name, "", "Succeeded", "tekton.dev/v1", "TaskRun", f"taskruns.tekton.dev/{name}", {}
            )
            since = sum(1 for _ in (STATE / "logs" / "audit.log").open())
            waiters = [
                Waiter("module", start_direct(target, cluster, "module", work)),
                Waiter("k8s_info", start_direct(target, cluster, "k8s_info", work)),
                Waiter("kubectl", start_kubectl(target, cluster, work)),
            ]
            time.sleep(3 + rng.uniform(*PAUSE))  # all three are waiting by then (start-up is ~1 s)
            kubectl("patch", "taskrun", name, "-n", NAMESPACE, "--type=merge", "-p", '{"spec":{"status":null}}')
            for waiter in waiters:
                waiter.finish(timeout=150)
            terminal = _terminal_moment(name, since)
            if terminal is None:
                errors.append(f"{name}: no terminal status write in the audit log")
            for waiter in waiters:
                ok, _, message = waiter.outcome()
                if not ok or terminal is None or waiter.ended is None:
                    errors.append(message or f"{name}: {waiter.name} did not succeed")
                    continue
                excess[waiter.name].append((waiter.ended - terminal) * 1000)
            kubectl("delete", "taskrun", name, "-n", NAMESPACE, "--wait=false")
    return {"rounds": rounds, "excess_ms": {k: summary(v) for k, v in excess.items()}, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds of quiet before memory is read")
    parser.add_argument("--skip-up", action="store_true", help="do not restart the cluster (no warm-up figure)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--only-wait", action="store_true", help="add the wait latency to the saved results")
    args = parser.parse_args()
    if args.only_wait:
        result = load("cluster") or {"machine": machine()}
        result["wait"] = wait_latency(args.rounds, args.seed)
        save("cluster", result)
        print(replace_cluster_block(section(result)))
        return
    result: dict = {"machine": machine()}
    result["build"] = build_figures()
    if not args.skip_up:
        result["up"] = warm_up()
    else:
        cli("up")
    save("cluster", result)  # after each stage, so a later failure keeps what was measured
    result["memory"] = idle_memory(args.settle)
    save("cluster", result)
    if not args.skip_demo:
        result["demo"] = demo_runs()
        save("cluster", result)
    result["wait"] = wait_latency(args.rounds, args.seed)
    print(json.dumps(result, indent=2))
    save("cluster", result)
    print(replace_cluster_block(section(result)))


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def section(result: dict) -> str:
    """The real cluster's part of RESULTS.md."""
    build, up, memory, demo, wait = (result.get(k, {}) for k in ("build", "up", "memory", "demo", "wait"))
    info = result["machine"]
    lines = [
        CLUSTER_BEGIN,
        "## The real cluster (knlab-cluster)",
        "",
        f"Written by `benchmarks/cluster.py` (`make bench-cluster`) on {info.get('date', '?')}, "
        f"{info.get('cores', '?')} cores, {info.get('memory', '?')}; how each number is measured: its docstring.",
        "",
        "| target | got | |",
        "|---|---|---|",
    ]
    cold = build.get("first_build_seconds")
    if cold is not None:
        lines.append(
            f"| cold build ≤ 40 min | {cold / 60:.1f} min (sum of each step's first run) | {_met(cold <= 2400)} |"
        )
    if up:
        lines.append(
            f"| warm `up` to everything Ready ≤ 90 s | {up['warm_up_seconds']:.0f} s "
            f"| {_met(up['warm_up_seconds'] <= 90)} |"
        )
    if memory:
        lines.append(
            f"| idle RSS of the whole cluster ≤ 2 GiB | {memory['rss_mib'] / 1024:.2f} GiB RSS "
            f"({memory['pss_mib'] / 1024:.2f} GiB PSS), {memory['processes']} processes "
            f"| {_met(memory['rss_mib'] <= 2048)} |"
        )
    if demo:
        lines.append(
            f"| demo re-run ≤ 25 % of the first run | {demo['ratio'] * 100:.0f} % "
            f"({demo['rerun_seconds']:.0f} s / {demo['first_seconds']:.0f} s) | {_met(demo['ratio'] <= 0.25)} |"
        )
    excess = wait.get("excess_ms", {})
    if excess.get("module") and excess.get("kubectl"):
        module, kubectl_ = excess["module"]["median"], excess["kubectl"]["median"]
        lines.append(
            f"| our waiter's median excess ≤ kubectl wait's + 50 ms | {module:.0f} ms vs {kubectl_:.0f} ms "
            f"| {_met(module <= kubectl_ + 50)} |"
        )
    lines += ["", "Wait latency on the real API server (TaskRun, excess wait in ms, "
              f"{wait.get('rounds', 0)} rounds; errors: {len(wait.get('errors', []))}):", "",
              "| waiter | median | p95 | min | max |", "|---|---|---|---|---|"]  # fmt: skip
    for name, stats in excess.items():
        if stats:
            lines.append(
                f"| {name} | {stats['median']:.0f} | {stats['p95']:.0f} | {stats['min']:.0f} | {stats['max']:.0f} |"
            )
    if build.get("first_build_steps"):
        lines += ["", "First (uncached) run of each build step, seconds:", ""]
        lines += [f"- {step}: {t['seconds']:.0f}" for step, t in sorted(build["first_build_steps"].items())]
        lines.append(f"- a no-op `knlab-cluster build`: {build['noop_build_seconds']:.1f}")
    if memory.get("rss_mib_by_name"):
        lines += [
            "",
            "Idle RSS by process name (MiB): "
            + ", ".join(f"{k} {v:.0f}" for k, v in memory["rss_mib_by_name"].items()),
        ]
    lines += ["", CLUSTER_END]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
