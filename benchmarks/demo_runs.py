"""The demo on the sandbox: first run vs re-run, and what one unchanged knative_service task asks.

Each round starts a fresh sandbox (random ports, its own state dir), runs
`playbooks/sandbox-prepare.yml` once (as `make demo` does; timed apart), then `playbooks/demo.yml`
twice with the same source — as `make demo` runs it (K8S_AUTH_KUBECONFIG, DEMO_INGRESS_ADDRESS =
the sandbox's gateway). Wall time is from spawning ansible-playbook until it exits. The API
requests of each run come from the sandbox's request log (`requests.log`, one JSON line per
request), grouped by Kubernetes verb: get/list/watch (GET on an object, a collection, or with
`watch=true`), create (POST), update (PUT), patch (PATCH), delete (DELETE); requests with
`dryRun` are counted apart; `/api`, `/apis`, `/version` and `/openapi` are `discovery`.

In the first round, the unchanged task: `benchmarks/playbooks/unchanged_ksvc.yml` runs
`knative_service` for the demo's app with the image and env the live Service has (read by this
script first, not counted), `--unchanged-runs` times; each run's requests are counted the same way.

    python benchmarks/demo_runs.py [--rounds 5] [--unchanged-runs 20]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

from common import BENCH_DIR, REPO, Sandbox, ansible_env, read_jsonl, save, summary, task_times, tool

RUN_TIMEOUT = 600.0  # one ansible-playbook run
TIME_LIMIT = 420.0  # all rounds, whatever --rounds says (at least one round runs)
WATCH_SETTLE = 6.0
WRITE_VERBS = ("create", "update", "patch", "delete")
APP = "hello"
NAMESPACE = "default"


def verb(entry: dict) -> str:
    """The Kubernetes verb of one request-log line."""
    path = entry["path"].rstrip("/")
    query = entry.get("query", "")
    parts = path.strip("/").split("/")
    if path in ("/api", "/apis", "/version") or parts[0] == "openapi" or (len(parts) <= 3 and parts[0] == "apis"):
        return "discovery"
    if parts[0] == "api" and len(parts) <= 2:
        return "discovery"
    method = entry["method"]
    dry = "-dryrun" if "dryRun=" in query else ""
    if method == "GET":
        if re.search(r"(^|&)watch=(true|1)", query):
            return "watch"
        # /api/v1/<plural>[/<name>...] or /apis/<g>/<v>/<plural>[...], optionally namespaced.
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if rest and rest[0] == "namespaces" and len(rest) >= 3:
            rest = rest[2:]
        return "get" if len(rest) >= 2 else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, method) + dry


def count(entries: list[dict]) -> dict[str, int]:
    """Requests by verb; an answer of 400 or more is counted apart, e.g. `patch 415`."""
    counts = collections.Counter(
        verb(e) + (f" {e['status']}" if int(e.get("status", 0)) >= 400 else "")
        for e in entries
        if not e.get("user_agent", "").startswith("knlab-bench")
    )
    return dict(sorted(counts.items()))


def writes(counts: dict[str, int]) -> int:
    """Write requests, whatever their answer (a refused or no-op write is still a write request)."""
    return sum(n for v, n in counts.items() if v.split()[0] in WRITE_VERBS)


def store_version(sandbox: Sandbox) -> int:
    """The sandbox's resourceVersion counter: it grows by one for every committed write, by anyone."""
    listing = sandbox.client().request("GET", "/api/v1/namespaces?limit=1")
    return int(listing["metadata"]["resourceVersion"])


def play(playbook: Path, sandbox: Sandbox, work: Path, **extra: Any) -> dict[str, Any]:
    """Run ansible-playbook once: wall seconds, its window, PLAY RECAP, exit code, slowest tasks."""
    timing = work / "tasks.jsonl"
    timing.unlink(missing_ok=True)
    env = ansible_env(
        K8S_AUTH_KUBECONFIG=sandbox.kubeconfig,
        DEMO_INGRESS_ADDRESS=sandbox.info["gateway"],
        KNLAB_BENCH_TIMING_FILE=str(timing),
    )
    argv = [tool("ansible-playbook"), str(playbook)]
    if extra:
        argv += ["-i", "localhost,", "-e", json.dumps(extra)]
    version = store_version(sandbox)
    began = time.time()
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, stdin=DEVNULL
    )
    elapsed = time.perf_counter() - started
    with (BENCH_DIR / "out" / "demo_runs-ansible.log").open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    recap = next((line.strip() for line in done.stdout.splitlines() if line.startswith("localhost")), "")
    return {
        "seconds": elapsed,
        "window": (began, time.time()),
        "recap": re.sub(r"\s+", " ", recap),
        "exit_code": done.returncode,
        # Committed writes during the run (controllers included), e.g. 0 for a run that changed nothing.
        "store_writes": store_version(sandbox) - version,
        "slowest_tasks": sorted(task_times(read_jsonl(timing)), key=lambda item: -item[1])[:8],
    }


def attribute(sandbox: Sandbox, runs: list[dict[str, Any]]) -> None:
    """Count each run's requests: a log line is written when its request ends (a watch: when it is
    closed), so each line goes to the run during which its request *started*."""
    entries = read_jsonl(sandbox.request_log)
    for run in runs:
        low, high = run.pop("window")
        mine = [e for e in entries if low <= started_at(e) <= high]
        run["requests"] = count(mine)


def started_at(entry: dict) -> float:
    stamp = datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    return stamp - entry.get("duration_ms", 0) / 1000


def unchanged_task(sandbox: Sandbox, work: Path, runs: int) -> list[dict]:
    live = sandbox.client().get(f"/apis/serving.knative.dev/v1/namespaces/{NAMESPACE}/services/{APP}")
    if live is None:
        return []
    container = live["spec"]["template"]["spec"]["containers"][0]
    extra = {
        "bench_kubeconfig": sandbox.kubeconfig,
        "bench_namespace": NAMESPACE,
        "bench_name": APP,
        "bench_image": container["image"],
        "bench_env": container.get("env") or [],
    }
    playbook = BENCH_DIR / "playbooks" / "unchanged_ksvc.yml"
    return [play(playbook, sandbox, work, **extra) for _ in range(runs)]


def one_round(work: Path, index: int, unchanged_runs: int) -> dict[str, Any]:
    sandbox = Sandbox(work / f"sandbox-{index}")
    record: dict[str, Any] = {}
    try:
        record["sandbox_up"] = sandbox.up()
        record["prepare"] = play(REPO / "playbooks/sandbox-prepare.yml", sandbox, work)
        for name in ("first", "rerun"):
            record[name] = play(REPO / "playbooks/demo.yml", sandbox, work)
            if record[name]["exit_code"] != 0:
                break
        if unchanged_runs and record.get("rerun", {}).get("exit_code") == 0:
            record["unchanged_ksvc"] = unchanged_task(sandbox, work, unchanged_runs)
        # Watches are logged when the server notices they were closed (at the latest at the next
        # bookmark, every 5 s): give the last ones time to land before counting.
        time.sleep(WATCH_SETTLE)
        runs = [record[k] for k in ("prepare", "first", "rerun") if k in record]
        attribute(sandbox, runs + record.get("unchanged_ksvc", []))
    finally:
        sandbox.down()
        shutil.rmtree(sandbox.state_dir, ignore_errors=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--unchanged-runs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="knlab-bench-demo-"))
    log = BENCH_DIR / "out" / "demo_runs-ansible.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    started = time.monotonic()
    rounds = []
    try:
        for index in range(args.rounds):
            if rounds and time.monotonic() - started > TIME_LIMIT:
                print(f"time limit reached after {len(rounds)} rounds")
                break
            record = one_round(work, index, args.unchanged_runs if index == 0 else 0)
            rounds.append(record)
            shown = "  ".join(
                f"{k} {record[k]['seconds']:.1f}s (rc {record[k]['exit_code']})"
                for k in ("first", "rerun")
                if k in record
            )
            print(f"round {index + 1}: {shown}", flush=True)
            if record.get("first", {}).get("exit_code"):
                print(f"the demo failed; see {log}")
                break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ok = [r for r in rounds if r.get("first", {}).get("exit_code") == 0 and r.get("rerun", {}).get("exit_code") == 0]
    result: dict[str, Any] = {"rounds": rounds, "summary": {}}
    if ok:
        first = [r["first"]["seconds"] for r in ok]
        rerun = [r["rerun"]["seconds"] for r in ok]
        result["summary"] = {
            "first": summary(first),
            "rerun": summary(rerun),
            "rerun_over_first": summary([b / a for a, b in zip(first, rerun, strict=True)]),
            "rerun_write_requests": [writes(r["rerun"]["requests"]) for r in ok],
            "rerun_store_writes": [r["rerun"]["store_writes"] for r in ok],
        }
    unchanged = rounds[0].get("unchanged_ksvc", []) if rounds else []
    if unchanged:
        result["summary"]["unchanged_ksvc_writes"] = [writes(r["requests"]) for r in unchanged]
        result["summary"]["unchanged_ksvc_store_writes"] = [r["store_writes"] for r in unchanged]
        result["summary"]["unchanged_ksvc_requests"] = summary([sum(r["requests"].values()) for r in unchanged])
    path = save("demo_runs", result)
    print(json.dumps(result["summary"], indent=1)[:2000])
    print(f"-> {path}")


if __name__ == "__main__":
    main()
