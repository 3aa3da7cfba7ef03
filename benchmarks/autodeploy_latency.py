"""Push to Ready on the real cluster: how long a push to the hub takes to become the serving Revision.

Needs a running cluster (`make cluster`) with the demo and the receiver applied
(`playbooks/demo.yml`, then `playbooks/autodeploy.yml`, both through `knlab-cluster exec`; this
script applies them itself unless `--skip-apply`). Each round:

1. pushes a new image to `<hub>/hello:latest` from outside the demo: `crane mutate` of the tag's
   current image with one new environment variable, so only a new config blob and manifest are
   written (the layers are the ones the node already has: the image pull is as small as a pull
   can be, which is what "excluding the image pull" asks);
2. takes the moment `crane` returns (the hub has acknowledged the manifest) as the push;
3. polls the Service every 0.1 s through the cluster's loopback API forward until its
   `latestReadyRevisionName` is new, Ready is True and its image is `<pull host>/hello@<the digest
   crane printed>`; that moment minus the push is the round's time.

Each round also records, from the new Revision's pod, the seconds from its last container start to
its Ready condition (the API's timestamps are whole seconds): the part the app's readiness probe
decides.

With ``--compare-default`` the rounds run twice: first with the app on Knative's default readiness
probe (``demo_app_readiness_probe={}``: the kubelet asks queue-proxy every 10 s, with a 1 s
timeout), then with the demo's own setting (``period_seconds: 1``). Both rows go into the table.

Writes the figures into benchmarks/RESULTS.md between `<!-- autodeploy:begin -->` and
`<!-- autodeploy:end -->` and raw rounds into benchmarks/out/autodeploy_latency.json. Traffic:
127.0.0.1 and the cluster's own namespace only.

    python benchmarks/autodeploy_latency.py [--pushes 20] [--skip-apply] [--compare-default]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
STATE = Path(os.environ.get("KNLAB_CLUSTER_STATE", "/srv/knlab-cluster"))
CACHE = Path(os.environ.get("KNLAB_CLUSTER_CACHE", "/var/cache/knlab-cluster"))
CLI = str(BIN / "knlab-cluster")
RESULTS = REPO / "benchmarks" / "RESULTS.md"
OUT = REPO / "benchmarks" / "out" / "autodeploy_latency.json"
BEGIN, END = "<!-- autodeploy:begin -->", "<!-- autodeploy:end -->"
TARGET_SECONDS = 10.0


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in (STATE / "demo.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key and not key.startswith("#"):
            env[key] = value.strip("'")
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    return env


def kubectl(*args: str) -> str:
    argv = ["kubectl", "--kubeconfig", str(STATE / "kubeconfig"), *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def crane() -> str:
    found = sorted(CACHE.glob("bin/crane-*/crane"))
    if not found:
        raise SystemExit("no crane in the cluster's build cache: run `make cluster` first")
    return str(found[-1])


def service() -> dict:
    return json.loads(kubectl("get", "ksvc", "hello", "-o", "json"))


def parse_time(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def start_to_ready(revision: str) -> float | None:
    """Seconds from the revision's pod's last container start to its Ready condition (whole seconds)."""
    pods = json.loads(kubectl("get", "pods", "-l", f"serving.knative.dev/revision={revision}", "-o", "json"))["items"]
    for pod in pods:
        status = pod.get("status") or {}
        ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready" and c.get("status") == "True"]
        starts = [
            parse_time(c["state"]["running"]["startedAt"])
            for c in status.get("containerStatuses") or []
            if (c.get("state") or {}).get("running", {}).get("startedAt")
        ]
        if ready and starts:
            return parse_time(ready[0]["lastTransitionTime"]) - max(starts)
    return None


def probe_setting() -> str:
    probe = service()["spec"]["template"]["spec"]["containers"][0].get("readinessProbe") or {}
    period = probe.get("periodSeconds") or 0
    return f"period_seconds {period}" if period else "Knative's default (period 0)"


def one_round(number: int, pull_host: str, crane_bin: str) -> dict:
    before = service()["status"].get("latestReadyRevisionName")
    ref = f"{pull_host}/hello:latest"
    marker = f"BENCH_ROUND={number}-{time.time_ns()}"
    argv = [CLI, "exec", "--", crane_bin, "mutate", "--insecure", ref, "--env", marker, "-t", ref]
    done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)
    pushed = time.monotonic()
    digest = done.stdout.strip().rsplit("@", 1)[-1]
    want = f"{pull_host}/hello@{digest}"
    deadline = pushed + 120
    while time.monotonic() < deadline:
        svc = service()
        status = svc.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        image = svc["spec"]["template"]["spec"]["containers"][0]["image"]
        latest = status.get("latestReadyRevisionName")
        if ready and image == want and latest and latest != before:
            generation, observed = svc["metadata"]["generation"], status.get("observedGeneration")
            if observed == generation:
                seconds = time.monotonic() - pushed
                return {
                    "round": number,
                    "digest": digest,
                    "revision": latest,
                    "seconds": seconds,
                    "start_to_ready": start_to_ready(latest),
                }
        time.sleep(0.1)
    raise SystemExit(f"round {number}: {want} never became the Ready revision of hello within 120 s")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(rounds: list[dict]) -> tuple[float, float, str]:
    seconds = [r["seconds"] for r in rounds]
    median, p95 = statistics.median(seconds), percentile(seconds, 0.95)
    verdict = "met" if median <= TARGET_SECONDS and p95 <= TARGET_SECONDS else "NOT met"
    return median, p95, verdict


def write_results(runs: list[dict], started: str) -> str:
    """``runs``: one or two {"probe": setting, "rounds": [...]}; the last is the demo as shipped."""
    lines = [
        BEGIN,
        "## Push to Ready on the real cluster (autodeploy)",
        "",
        f"Written by `benchmarks/autodeploy_latency.py` on {started}: {len(runs[-1]['rounds'])} pushes of a "
        "new `hello:latest` (a new config blob, the layers the node has) from outside the demo, each "
        "timed from `crane`'s acknowledged push to the Service's new Revision Ready with that digest "
        '(polled every 0.1 s). "start to Ready": from the new pod\'s last container start to its Ready '
        "condition (whole seconds, the API's resolution), the part the readiness probe decides.",
        "",
        "| the app's readiness probe | push to Ready, median and p95 ≤ 10 s | start to Ready (max) | |",
        "|---|---|---|---|",
    ]
    for run in runs:
        rounds = run["rounds"]
        seconds = [r["seconds"] for r in rounds]
        median, p95, verdict = summary(rounds)
        gaps = [r["start_to_ready"] for r in rounds if r.get("start_to_ready") is not None]
        gap = f"{max(gaps):.0f} s" if gaps else "n/a"
        lines.append(
            f"| {run['probe']} | median {median:.2f} s, p95 {p95:.2f} s (min {min(seconds):.2f}, "
            f"max {max(seconds):.2f}) | {gap} | {verdict} |"
        )
    lines.append("")
    for run in runs:
        lines.append(f"Rounds with {run['probe']} (s): " + ", ".join(f"{r['seconds']:.2f}" for r in run["rounds"]))
        lines.append("")
    lines += [
        "p95 is the nearest rank. Why the probe matters: Knative (v0.50, `queue.go`) gives the kubelet's "
        "probe of queue-proxy the app's probe settings. With Knative's default (period 0) the API server "
        "makes that a probe every 10 s with a 1 s timeout, while queue-proxy itself retries the app "
        "every 50 ms for up to 10 s: an app that is not listening within about a second of the first "
        "probe is Ready only at the next one, 10 s later. The demo sets `period_seconds: 1` "
        "(`demo_app_readiness_probe`, the app role's `app_readiness_probe`).",
        END,
    ]
    text = RESULTS.read_text()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    return "; ".join(
        f"{run['probe']}: {len(run['rounds'])} pushes, median {summary(run['rounds'])[0]:.2f} s, "
        f"p95 {summary(run['rounds'])[1]:.2f} s ({summary(run['rounds'])[2]})"
        for run in runs
    )


def apply(env: dict[str, str], extra: list[str]) -> None:
    for book in ("playbooks/demo.yml", "playbooks/autodeploy.yml"):
        argv = [CLI, "exec", "--", str(BIN / "ansible-playbook"), book, *extra]
        subprocess.run(argv, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL, timeout=1800)


def wait_for_the_hub(timeout: float = 420) -> None:
    """Until every pod of the hub runs its latest Revision. The pushes go to the node's port for the
    hub, which selects the pods of every Revision of it: right after autodeploy.yml rolled the hub a
    push can land on the old pod, whose events die with it, and the round would time the receiver's
    periodic resync instead of the push (seen: 30 s rounds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = (json.loads(kubectl("get", "ksvc", "hub", "-o", "json")).get("status") or {}).get(
            "latestReadyRevisionName"
        )
        pods = json.loads(kubectl("get", "pods", "-l", "serving.knative.dev/service=hub", "-o", "json"))["items"]
        if pods and all(
            pod["metadata"]["labels"].get("serving.knative.dev/revision") == latest
            and not pod["metadata"].get("deletionTimestamp")
            for pod in pods
        ):
            return
        time.sleep(3)
    raise SystemExit(f"the hub's older Revisions still had pods after {timeout:.0f} s")


def run_rounds(pushes: int, pull_host: str, crane_bin: str) -> dict:
    wait_for_the_hub()
    probe = probe_setting()
    rounds = []
    for number in range(pushes):
        rounds.append(one_round(number, pull_host, crane_bin))
        last = rounds[-1]
        print(
            f"push {number} ({probe}): {last['revision']} Ready after {last['seconds']:.2f} s "
            f"(start to Ready {last['start_to_ready']})",
            flush=True,
        )
        time.sleep(1)
    return {"probe": probe, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--skip-apply", action="store_true", help="the demo and the receiver are already applied")
    parser.add_argument(
        "--compare-default", action="store_true", help="first the same rounds with Knative's default readiness probe"
    )
    args = parser.parse_args()
    env = demo_env()
    pull_host = env["DEMO_REGISTRY_PULL_HOST"]
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    crane_bin = crane()
    runs = []
    if args.compare_default:
        apply(env, ["-e", json.dumps({"demo_app_readiness_probe": {}})])
        runs.append(run_rounds(args.pushes, pull_host, crane_bin))
    if args.compare_default or not args.skip_apply:
        apply(env, [])
    runs.append(run_rounds(args.pushes, pull_host, crane_bin))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"started": started, "runs": runs}, indent=2) + "\n")
    print(write_results(runs, started))


if __name__ == "__main__":
    main()
