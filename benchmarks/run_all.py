"""Run every benchmark, then write benchmarks/RESULTS.md (`make bench`).

    python benchmarks/run_all.py [--quick]

`--quick` runs 3 of everything (a smoke test of the scripts; its numbers are not the results).
Each script has its own time limit, so the whole run stays under about 15 minutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import report
from common import BENCH_DIR, OUT_DIR, machine, save

SCRIPT_TIMEOUT = 900.0


def run(script: str, *args: str) -> None:
    print(f"== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(BENCH_DIR / script), *args], check=True, timeout=SCRIPT_TIMEOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of everything, to try the scripts")
    args = parser.parse_args()
    runs = "3" if args.quick else "20"
    started = time.monotonic()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.json"):
        stale.unlink()
    save("machine", machine())
    run("cold_start.py", "--runs", runs)
    run("wait_latency.py", "--runs", runs)
    run("demo_runs.py", "--rounds", "2" if args.quick else "10", "--unchanged-runs", runs)
    run("rerun_ratio.py", "--rounds", "2" if args.quick else "7")
    save("run_all", {"seconds": time.monotonic() - started})
    print(report.write())


if __name__ == "__main__":
    main()
