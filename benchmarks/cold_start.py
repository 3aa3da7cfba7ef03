"""Sandbox cold start: `knlab-sandbox up` in an empty state dir until the API answers.

Each run: a fresh state directory (so the CA, certificate, token, database and seed objects are all
made from nothing), then `knlab-sandbox up --api-port P --gateway-port 0` (P: a free loopback port
picked just before) is spawned, and two times are taken from just before the spawn:

- `up`: until the command exits. It exits only once the API answers `/readyz` over verified TLS,
  which it checks every 50 ms, so this is what a user (or `make demo`) waits for.
- `answers`: until this script's own probe, `GET /readyz` every 5 ms on port P (TLS not verified:
  the CA does not exist before the server makes it), first gets a 200. This is the server's own
  start-up, without the CLI's polling granularity.

Then one authenticated `GET /version` verified against the new CA checks that it really answers
(not counted), and `down`. A second series restarts over the state the first start left (warm).

    python benchmarks/cold_start.py [--runs 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from common import Sandbox, save, summary, tool

TIME_LIMIT = 300.0  # seconds for the whole series, whatever --runs says
START_TIMEOUT = 30.0
PROBE_INTERVAL = 0.005


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def readyz(port: int) -> bool:
    context = ssl._create_unverified_context()  # only "does it answer": the CA does not exist yet
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=1)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def one_start(state_dir: Path) -> tuple[float, float]:
    """(seconds until `up` exited, seconds until the API first answered this script's probe)."""
    port = free_port()
    argv = [tool("knlab-sandbox"), "up", "--state-dir", str(state_dir), "--api-port", str(port)]
    argv += ["--gateway-port", "0"]
    sandbox = Sandbox(state_dir)
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        answered = None
        for _ in range(int(START_TIMEOUT / PROBE_INTERVAL)):
            if readyz(port):
                answered = time.perf_counter() - started
                break
            if process.poll() not in (None, 0):
                raise RuntimeError(f"knlab-sandbox up failed with exit code {process.returncode}")
            time.sleep(PROBE_INTERVAL)
        process.wait(timeout=START_TIMEOUT)
        up_done = time.perf_counter() - started
        if answered is None or process.returncode != 0:
            raise RuntimeError(f"the sandbox did not start (exit code {process.returncode})")
        sandbox.info = json.loads((state_dir / "server.json").read_text())
        version = sandbox.client().request("GET", "/version")
        if not version or "gitVersion" not in version:
            raise RuntimeError(f"the API answered /version with {version!r}")
        return up_done, answered
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        sandbox.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    deadline = time.monotonic() + TIME_LIMIT
    series: dict[str, list[float]] = {"cold_up": [], "cold_answers": [], "warm_up": [], "warm_answers": []}
    root = Path(tempfile.mkdtemp(prefix="knlab-bench-cold-"))
    try:
        for index in range(args.runs):
            if time.monotonic() > deadline:
                break
            state_dir = root / f"run-{index}"
            for name in ("cold", "warm"):  # warm: the same state dir again
                up_done, answered = one_start(state_dir)
                series[f"{name}_up"].append(up_done)
                series[f"{name}_answers"].append(answered)
            shutil.rmtree(state_dir, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"raw": series, "summary": {name: summary(values) for name, values in series.items()}}
    path = save("cold_start", result)
    for name, stats in result["summary"].items():
        print(f"{name}: median {stats['median']:.3f}s p95 {stats['p95']:.3f}s (n={stats['n']})")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
