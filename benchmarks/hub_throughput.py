"""Push and pull throughput of the hub on the real cluster's S3 server, one replica against three.

Run as root with the cluster up: ``python benchmarks/hub_throughput.py``. On the host it reads the S3
endpoint and keys (``knlab-cluster s3``) and runs itself again inside the cluster's network namespace
(``knlab-cluster exec``), as tests/integration/hub_scale.py does, with whose pusher, checker and
cluster helpers it measures. For each max-scale (1, then 3; target 1, so load scales it out) the
registry role starts the hub ``hubscale`` on the bucket, ``--workers`` concurrent clients push unique
images through the ingress for ``--warmup`` seconds (not counted: the hub scales out), then push for
``--seconds`` (counted), then pull those images back, each checked by digest, for ``--seconds``; the
hub is removed after each round (its images stay in the bucket).

Writes the figures into benchmarks/RESULTS.md between ``<!-- hub-throughput:begin -->`` and
``<!-- hub-throughput:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import hub_scale  # noqa: E402
from hub_scale import Cluster, Tally  # noqa: E402

RESULTS = REPO / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- hub-throughput:begin -->", "<!-- hub-throughput:end -->"


async def phase(seconds: float, workers: int, step) -> float:
    """Run ``step(who, number)`` in ``workers`` loops until ``seconds`` have passed; the time taken."""
    started = time.monotonic()
    deadline = started + seconds

    async def loop(who: int) -> None:
        number = 0
        while time.monotonic() < deadline:
            await step(who, number)
            number += 1

    await asyncio.gather(*(loop(who) for who in range(workers)))
    return time.monotonic() - started


async def measure(cluster: Cluster, host: str, args: argparse.Namespace, round_tag: str) -> dict:
    gateway = cluster.info["gateway"]
    timeout = aiohttp.ClientTimeout(total=120)
    warm, pushed = Tally(), Tally()
    async with aiohttp.ClientSession(timeout=timeout) as session:

        def pusher(prefix: str, tally: Tally):
            # hub_scale's push (unique data each, retried as there), one repository per worker.
            async def push(who: int, number: int) -> None:
                await hub_scale.push_one(session, gateway, host, f"{prefix}{who}", number, args.size, tally)

            return push

        await phase(args.warmup, args.workers, pusher(f"w{round_tag}", warm))
        push_time = await phase(args.seconds, args.workers, pusher(round_tag, pushed))
        pulled = Tally()
        chooser = random.Random(1)

        async def pull(who: int, number: int) -> None:
            del who, number
            await hub_scale.pull_with_retries(session, gateway, host, chooser.choice(pushed.acknowledged), pulled)

        pull_time = await phase(args.seconds, args.workers, pull) if pushed.acknowledged else 0.0
    return {
        "pushes": pushed.pushes,
        "push_time": push_time,
        "pulls": pulled.pulls,
        "pull_time": pull_time,
        "errors": len(warm.errors) + len(pushed.errors) + len(pulled.errors),
        "retries": pushed.push_retries + pulled.pull_retries + warm.push_retries,
    }


def one_round(cluster: Cluster, s3: dict, max_scale: int, args: argparse.Namespace) -> dict:
    try:
        hub = cluster.start_hub(s3, max_scale)
        revision = hub["status"]["latestReadyRevisionName"]
        host = hub["status"]["url"].split("://", 1)[1]
        figures = asyncio.run(measure(cluster, host, args, f"r{max_scale}-{int(time.time())}-"))
        figures["ready"] = sum(hub_scale.ready(p) for p in cluster.hub_pods(revision))
        return figures
    finally:
        cluster.remove_hub()


def write(rows: dict[int, dict], args: argparse.Namespace) -> str:
    mib = args.size / 1048576
    lines = [
        BEGIN,
        "## Hub throughput on the real cluster's S3 server: one replica against three",
        "",
        f"Written by `benchmarks/hub_throughput.py` on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: "
        f"{args.workers} concurrent clients inside the cluster's network namespace, through the ingress, "
        f"images of one layer with {args.size // 1024} KiB of unique random data each; {args.warmup:g} s of "
        f"pushes first (not counted, the hub scales out), then {args.seconds:g} s of pushes and "
        f"{args.seconds:g} s of pulls (every pull checked by digest). Target 1 (concurrency).",
        "",
        "| max-scale | ready replicas at the end | pushes/s | push MiB/s | pulls/s | pull MiB/s | errors | retries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scale, f in rows.items():
        push_rate = f["pushes"] / f["push_time"] if f["push_time"] else 0.0
        pull_rate = f["pulls"] / f["pull_time"] if f["pull_time"] else 0.0
        lines.append(
            f"| {scale} | {f['ready']} | {push_rate:.1f} | {push_rate * mib:.1f} | {pull_rate:.1f} | "
            f"{pull_rate * mib:.1f} | {f['errors']} | {f['retries']} |"
        )
    lines += [
        "",
        "One node with 2 cores, shared by the ingress, the activator, the hub's replicas and the S3 server "
        "(versitygw on the node's disk), and the clients themselves (one Python process, one core at most): "
        "more replicas do not add cores, and the clients may be the limit. MiB/s counts the unique data of "
        "each image, not the manifests and headers.",
        END,
    ]
    block = "\n".join(lines)
    text = RESULTS.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    return block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="bytes of unique data per image")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        if not args.inside:
            return hub_scale.run_inside_cluster(Path(__file__), raw)
        cluster, s3 = hub_scale.inside_cluster("knlab-hub-throughput-")
    except (hub_scale.DemoError, subprocess.TimeoutExpired) as error:
        print(f"hub_throughput: FAILED: {error}", file=sys.stderr)
        return 1
    rows = {}
    try:
        for scale in (1, 3):
            rows[scale] = one_round(cluster, s3, scale, args)
            print(f"max-scale {scale}: {rows[scale]}", flush=True)
    except (hub_scale.DemoError, subprocess.TimeoutExpired) as error:
        print(f"hub_throughput: FAILED: {error}", file=sys.stderr)
        return 1
    print(write(rows, args))
    return 1 if any(f["errors"] for f in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
