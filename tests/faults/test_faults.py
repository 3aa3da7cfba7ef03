"""Faults injected into the real cluster during every kind of wait (issue 11, item 1).

Each fault kind gets injections; each injection starts a batch of waits at once (a build:
tekton_taskrun_wait on a TaskRun whose step sleeps then exits 0, or 1 for about a third of them; a
rollout: knative_service create with its wait; a delete: knative_service state=absent with its
wait), injects the fault at a seeded random moment while they run (the deletes start around that
moment, since they last a few seconds), lets the cluster settle, then judges every wait against
what kubectl shows (faultlib's docstring has the rule). The hub's fault has pushes instead.

Fault kinds: kube-apiserver, etcd and the kubelet restarted (`knlab-cluster restart`); the Knative
controller, the Knative webhook and the Tekton controller pods killed (force-deleted at once, their
Deployments bring them back); the hub's pod killed in the middle of pushes; every connection between
the modules and the API server cut by a TCP proxy (the modules' kubeconfig points at it).

``FAULTS_SEED`` (default: today's ordinal, printed) seeds everything. CI's sample (`make faults`)
runs one injection per kind with four waits each. ``FAULTS_FULL=1`` (`make faults-full`) runs enough
injections for at least ``FAULTS_WAITS`` (default 50) waits per kind, ``FAULTS_DEMO`` demo runs with
a fault (default 0 in the sample, 1 in the full run), and with ``FAULTS_WRITE_DOCS=1`` rewrites the
table in docs/RELIABILITY.md. The last line printed (``-s``) sums up the run.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from faultlib import (
    CLEAR,
    CORRECT,
    HUB_NAMESPACE,
    NAMESPACE,
    PUSHER_SOURCE,
    ROOT,
    STATE,
    WAIT_TIMEOUT,
    WRONG,
    Cluster,
    Outcome,
    Proxy,
    Wait,
    apply,
    cluster_helpers,
    fault_named,
    hub_manifests,
    hub_url,
    judge_wait,
    kill_controllers,
    module_failure,
    restart,
    run_module,
    service_args,
    service_manifest,
    settle,
    taskrun_manifest,
)

FULL = bool(os.environ.get("FAULTS_FULL"))
SEED = int(os.environ.get("FAULTS_SEED") or date.today().toordinal())
PER_KIND = int(os.environ.get("FAULTS_WAITS", "50"))
DEMOS = int(os.environ.get("FAULTS_DEMO", "1" if FULL else "0"))
WRITE_DOCS = bool(os.environ.get("FAULTS_WRITE_DOCS"))
# One injection: (builds, rollouts, deletes) waits; pushers x pushes for the hub. The full run puts
# 12 waits in each injection (5 injections per kind for 50 waits; about 2 minutes each, most of it
# the cluster settling), all running at once so that each meets the fault at its own moment.
BATCH = (4, 4, 4) if FULL else (2, 1, 1)
WORKERS = sum(BATCH)  # concurrent module runs: every wait of a batch
PUSHERS, PUSHES = (6, 3) if FULL else (2, 2)
KINDS = ("kube-apiserver", "etcd", "controllers", "kubelet", "hub", "proxy")

pytestmark = pytest.mark.timeout(14400 if FULL else 1200)

OUTCOMES: list[Outcome] = []
OUTPUTS: list[str] = []
DEMO_RUNS: list[dict] = []
STARTED = time.monotonic()


def injections(kind: str) -> int:
    per = PUSHERS * PUSHES if kind == "hub" else sum(BATCH)
    return math.ceil(PER_KIND / per) if FULL else 1


@pytest.fixture(scope="module", autouse=True)
def namespaces(cluster: Cluster):
    print(f"\nfaults: seed {SEED} ({'full' if FULL else 'sample'})", flush=True)
    for namespace in (NAMESPACE, HUB_NAMESPACE):
        cluster.kubectl("create", "namespace", namespace, check=False)
    yield
    for namespace in (NAMESPACE, HUB_NAMESPACE):
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def injector(cluster: Cluster, kind: str, proxy: Proxy | None):
    if kind in {"kube-apiserver", "etcd", "kubelet"}:
        return lambda: restart(kind)
    if kind == "controllers":
        return lambda: kill_controllers(cluster)
    if kind == "proxy":
        assert proxy is not None
        return proxy.cut
    raise AssertionError(kind)


def one_batch(cluster: Cluster, kind: str, number: int, rng: random.Random, proxy: Proxy | None) -> list[Outcome]:
    builds, rollouts, deletes = BATCH
    tag = f"{kind.replace('kube-', '')[:6]}-{number}-{rng.randrange(10**6)}"
    image = cluster.base_image
    waits: list[Wait] = []
    for i in range(builds):
        failing = rng.random() < 1 / 3
        waits.append(
            Wait("build", f"b-{tag}-{i}", rng.uniform(0, 2), exit_code=1 if failing else 0, sleep=rng.randint(8, 16))
        )
    waits += [Wait("rollout", f"r-{tag}-{i}", rng.uniform(0, 3)) for i in range(rollouts)]
    waits += [Wait("delete", f"d-{tag}-{i}", -rng.uniform(0, 2)) for i in range(deletes)]
    inject_after = rng.uniform(3, 8)
    apply(
        cluster,
        [taskrun_manifest(w.name, image, w.sleep, w.exit_code) for w in waits if w.kind == "build"]
        + [service_manifest(w.name, image) for w in waits if w.kind == "delete"],
    )
    kubeconfig = str(proxy.kubeconfig) if proxy else None
    t0 = time.monotonic()
    injected = {"at": math.inf, "what": ""}

    def run(wait: Wait) -> None:
        start = t0 + (inject_after + wait.delay if wait.kind == "delete" else wait.delay)
        time.sleep(max(0.0, start - time.monotonic()))
        if wait.kind == "build":
            wait.run = run_module(
                "tekton_taskrun_wait", {"name": wait.name, "namespace": NAMESPACE, "timeout": WAIT_TIMEOUT}, kubeconfig
            )
        elif wait.kind == "rollout":
            wait.run = run_module("knative_service", service_args(wait.name, image), kubeconfig)
        else:
            args = {"name": wait.name, "namespace": NAMESPACE, "state": "absent", "wait_timeout": WAIT_TIMEOUT}
            wait.run = run_module("knative_service", args, kubeconfig)

    def inject() -> None:
        time.sleep(max(0.0, t0 + inject_after - time.monotonic()))
        injected["at"] = time.monotonic()
        injected["what"] = injector(cluster, kind, proxy)()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        fault = threading.Thread(target=inject)
        fault.start()
        list(pool.map(run, waits))
        fault.join()
    settle(cluster)
    outcomes = [judge_wait(cluster, kind, wait, injected["at"]) for wait in waits]
    OUTPUTS.extend(w.run.output for w in waits if w.run)
    print(
        f"  {kind} #{number}: fault at +{injected['at'] - t0:.1f} s ({injected['what']}); "
        + ", ".join(
            f"{o.wait} {o.verdict}{' (own failure)' if o.object_failed else ''}{'' if o.during else ' (fault outside)'}"
            for o in outcomes
        ),
        flush=True,
    )
    return outcomes


def hub_ready(cluster: Cluster) -> None:
    cluster.kubectl("wait", "ksvc/hub", "-n", HUB_NAMESPACE, "--for=condition=Ready", "--timeout=300s", timeout=320)
    cluster.wait(
        lambda: cluster.exec("curl", "-fsS", "--max-time", "5", f"{hub_url(cluster)}/v2/", check=False),
        "the hub to answer through its NodePort",
        180,
    )


def hub_batch(cluster: Cluster, number: int, rng: random.Random, script: Path) -> list[Outcome]:
    base = hub_url(cluster)
    kill_after = rng.uniform(1, 4)
    pushes: list[tuple[str, str, dict, float, float]] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def pusher(p: int) -> None:
        for i in range(PUSHES):
            repository, tag = f"faults/p{number}-{p}", f"t{i}"
            started = time.monotonic()
            out = cluster.exec(
                sys.executable,
                str(script),
                base,
                repository,
                tag,
                str(2 * 1024 * 1024),
                "8",
                "0.15",
                check=False,
                timeout=120,
            )
            try:
                answer = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                answer = {"acknowledged": False, "error": f"no answer from the pusher: {out[-200:]!r}"}
            with lock:
                pushes.append((repository, tag, answer, started, time.monotonic()))
            time.sleep(0.3)

    killed = {"at": math.inf}

    def kill() -> None:
        time.sleep(max(0.0, t0 + kill_after - time.monotonic()))
        killed["at"] = time.monotonic()
        cluster.kubectl(
            "delete",
            "pod",
            "-n",
            HUB_NAMESPACE,
            "-l",
            "serving.knative.dev/service=hub",
            "--grace-period=0",
            "--force",
            "--wait=false",
            check=False,
        )

    threads = [threading.Thread(target=pusher, args=(p,)) for p in range(PUSHERS)] + [threading.Thread(target=kill)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settle(cluster)
    hub_ready(cluster)

    def check(push: tuple[str, str, dict, float, float]) -> Outcome:
        repository, tag, answer, started, ended = push
        during = started <= killed["at"] <= ended
        run = run_module(
            "registry_image_info", {"registry_url": base, "repository": repository, "tag": tag, "timeout": 30}
        )
        OUTPUTS.append(run.output)
        common = {"fault": "hub", "wait": "push", "name": f"{repository}:{tag}", "during": during}
        verdict, why = module_failure(run)
        if verdict is not None:
            return Outcome(
                **common, verdict=verdict, why="registry_image_info: " + why, traceback=why.startswith("traceback")
            )
        result = run.result or {}
        if result.get("failed"):
            return Outcome(
                **common, verdict=WRONG, why=f"registry_image_info failed on a hub that runs: {result.get('msg')!r}"
            )
        if answer.get("acknowledged"):
            same = answer.get("digest") == answer.get("expected")
            there = result.get("exists") is True and result.get("digest") == answer.get("expected")
            ok = same and there
            return Outcome(
                **common,
                verdict=CORRECT if ok else WRONG,
                why=f"acknowledged {answer.get('digest')}, "
                f"hub has {result.get('digest')} (exists={result.get('exists')})",
            )
        error = str(answer.get("error") or answer.get("status"))
        if result.get("exists") and result.get("digest") != answer.get("expected"):
            return Outcome(
                **common, verdict=WRONG, why=f"not acknowledged, yet the hub has another image: {result.get('digest')}"
            )
        # Not acknowledged: clear when the connection failed, or when the registry answered with an
        # error code (an upload session that died with the pod answers 404 BLOB_UPLOAD_UNKNOWN).
        answered = bool(answer.get("answered")) and re.search(r"[A-Z_]{5,}", error) is not None
        clear = fault_named(error) or answered
        return Outcome(**common, verdict=CLEAR if clear else WRONG, why=f"push refused: {error[:200]}")

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(check, sorted(pushes, key=lambda p: p[3])))
    print(
        f"  hub #{number}: pod killed at +{killed['at'] - t0:.1f} s; {len(pushes)} pushes, "
        f"{sum(1 for p in pushes if p[2].get('acknowledged'))} acknowledged; "
        + ", ".join(f"{o.verdict}{'' if o.during else '*'}" for o in outcomes),
        flush=True,
    )
    return outcomes


@pytest.mark.parametrize("kind", KINDS)
def test_waits_under_a_fault(cluster: Cluster, kind: str, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}:{kind}")
    outcomes: list[Outcome] = []
    proxy = Proxy(tmp_path) if kind == "proxy" else None
    try:
        if kind == "hub":
            apply(cluster, hub_manifests(cluster.env["DEMO_REGISTRY_IMAGE"]))
            hub_ready(cluster)
            script = tmp_path / "pusher.py"
            script.write_text(PUSHER_SOURCE)
            for number in range(injections(kind)):
                outcomes += hub_batch(cluster, number, rng, script)
        else:
            for number in range(injections(kind)):
                outcomes += one_batch(cluster, kind, number, rng, proxy)
                cluster.kubectl(
                    "delete", "ksvc,taskrun", "--all", "-n", NAMESPACE, "--wait=false", check=False, timeout=180
                )
    finally:
        OUTCOMES.extend(outcomes)
        if proxy:
            proxy.close()
    wrong = [o for o in outcomes if o.verdict == WRONG]
    assert not wrong, "\n".join(f"{o.wait} {o.name}: {o.why}" for o in wrong)
    assert outcomes


# --- the demo with a fault ---------------------------------------------------------------------------
def playbook(cluster: Cluster, name: str, *args: str) -> tuple[int, str]:
    try:
        run = cluster.playbook(name, *args)
        return 0, run.output
    except AssertionError as failed:
        return 1, str(failed)


@pytest.mark.skipif(DEMOS == 0, reason="FAULTS_DEMO=0 (the sample): the demo takes minutes")
def test_the_demo_with_a_fault_then_without(cluster: Cluster) -> None:
    rng = random.Random(f"{SEED}:demo")
    for number in range(DEMOS):
        kind = rng.choice(("kube-apiserver", "etcd", "controllers", "kubelet"))
        cluster.playbook("cleanup.yml")
        cluster.wait(lambda: cluster.demo_objects() == {}, "an empty default namespace", 360)
        # The demo from a clean slate takes well under a minute here (the hub's PVC keeps the
        # base layers): a moment drawn from 5-90 s, then 5-45 s, came after its end twice.
        after = rng.uniform(3, 20)
        box: dict = {}

        def first_run(box: dict = box) -> None:
            box["rc"], box["output"] = playbook(cluster, "demo.yml")

        runner = threading.Thread(target=first_run)
        t0 = time.monotonic()
        runner.start()
        runner.join(timeout=after)
        fault = "none: the demo ended first"
        if runner.is_alive():
            began = time.monotonic() - t0
            injector(cluster, kind, None)()
            fault = f"{kind} from +{began:.0f} s to +{time.monotonic() - t0:.0f} s"
        runner.join()
        fault += f"; the demo took {time.monotonic() - t0:.0f} s"
        OUTPUTS.append(box["output"])
        settle(cluster)
        second = cluster.playbook("demo.yml")
        OUTPUTS.append(second.output)
        taskruns, _revisions = cluster.builds_and_revisions()
        configmaps = cluster.names("configmaps", selector="app.kubernetes.io/managed-by=knlab.serverless")
        referenced = json.dumps([cluster.json("get", "taskrun", t) for t in taskruns])
        orphans = [c for c in configmaps if c not in referenced]
        answer = cluster.answer("hello")
        third = cluster.playbook("demo.yml")
        record = {
            "fault": fault,
            "first": "succeeded" if box["rc"] == 0 else "failed",
            "second_changed": second.changed,
            "third_changed": third.changed,
            "taskruns": taskruns,
            "orphans": orphans,
            "answer": answer,
            "duplicated": len(taskruns) != 1 or bool(orphans),
        }
        DEMO_RUNS.append(record)
        print(f"  demo #{number}: {record}", flush=True)
        assert answer == "Hello World!\n"
        assert len(taskruns) == 1, f"a second TaskRun for the same source: {taskruns}"
        assert not orphans, f"ConfigMaps no TaskRun uses: {orphans}"
        assert third.changed == 0
    cluster.playbook("cleanup.yml")


# --- the totals ----------------------------------------------------------------------------------------
def secrets_shown() -> tuple[int, list[str]]:
    """How often the kubeconfig's client key (or a token) appears in the modules' output and the
    cluster's logs."""
    needles = cluster_helpers.kubeconfig_secrets()
    found = [f"module output #{i}" for i, text in enumerate(OUTPUTS) if any(n in text for n in needles)]
    patterns = STATE / "faults-needles"
    patterns.write_text("\n".join(sorted(needles)) + "\n")
    try:
        done = subprocess.run(
            ["grep", "-rlF", "-f", str(patterns), str(STATE / "logs")], capture_output=True, text=True, check=False
        )
    finally:
        patterns.unlink()
    found += done.stdout.split()
    return len(found), found


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| Fault | Wait | Waits | Fault during the wait | Correct (of which the object's own failure) "
        "| Clear errors | Wrong |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    keys = sorted({(o.fault, o.wait) for o in outcomes}, key=lambda k: (KINDS.index(k[0]), k[1]))
    for fault, wait in keys:
        group = [o for o in outcomes if (o.fault, o.wait) == (fault, wait)]
        count = Counter(o.verdict for o in group)
        own = sum(o.object_failed for o in group)
        rows.append(
            f"| {fault} | {wait} | {len(group)} | {sum(o.during for o in group)} "
            f"| {count[CORRECT]} ({own}) | {count[CLEAR]} | {count[WRONG]} |"
        )
    return "\n".join(rows)


def write_docs(outcomes: list[Outcome], line: str) -> None:
    doc = ROOT / "docs" / "RELIABILITY.md"
    text = doc.read_text()
    begin, end = "<!-- faults:begin -->", "<!-- faults:end -->"
    assert begin in text and end in text, "docs/RELIABILITY.md has no faults table markers"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    minutes = (time.monotonic() - STARTED) / 60
    settings = [f"{k}={os.environ[k]}" for k in ("FAULTS_WAITS", "FAULTS_DEMO") if k in os.environ]
    command = " ".join([*settings, "make faults-full"])
    demos = "".join(
        f"\n- demo run {i + 1}: fault {d['fault']}; the run with it {d['first']}; the run after it changed "
        f"{d['second_changed']}, the next one {d['third_changed']}; TaskRuns {len(d['taskruns'])}, "
        f"orphaned ConfigMaps {len(d['orphans'])}"
        for i, d in enumerate(DEMO_RUNS)
    )
    body = (
        f"{begin}\nMeasured {when}, seed {SEED}, `{command}` ({minutes:.0f} min for the waits and the demo):\n\n"
        f"{table(outcomes)}\n{demos}\n\n"
        f"Its last line: `{line}`\n{end}"
    )
    doc.write_text(text[: text.index(begin)] + body + text[text.index(end) + len(end) :])


def test_zz_totals(cluster: Cluster) -> None:
    shown, where = secrets_shown()
    count = Counter(o.verdict for o in OUTCOMES)
    kinds = Counter(o.fault for o in OUTCOMES)
    print("\n" + table(OUTCOMES))
    for o in OUTCOMES:
        if o.verdict != CORRECT:
            print(f"  {o.fault} {o.wait} {o.name}: {o.verdict}: {o.why}")
    line = (
        f"faults: seed {SEED}, waits={len(OUTCOMES)} ({', '.join(f'{k} {kinds[k]}' for k in KINDS)}) "
        f"correct={count[CORRECT]} clear-errors={count[CLEAR]} wrong={count[WRONG]} "
        f"tracebacks={sum(o.traceback for o in OUTCOMES)} hung={sum(o.hung for o in OUTCOMES)} | "
        f"demo runs={len(DEMO_RUNS)} duplicated={sum(d['duplicated'] for d in DEMO_RUNS)} | secrets shown={shown}"
    )
    if WRITE_DOCS:
        write_docs(OUTCOMES, line)
    print(line)
    assert shown == 0, where
    assert count[WRONG] == 0
