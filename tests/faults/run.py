"""`make faults` / `make faults-full`: the fault campaign, the bad-input audit, then `down`.

Runs, each as its own pytest (tests/cluster's conftest and this directory's both define the
`cluster` fixture and a `conftest` module name):

1. tests/faults (the sample, or with --full every injection, the demo under a fault and the new
   table in docs/RELIABILITY.md);
2. tests/cluster/test_badinput_audit.py (bad input against the API server's audit log);
3. tests/cluster/test_zz_down.py (`knlab-cluster down` leaves nothing behind), as cluster-test ends.

Prints their output as it comes, then one last line with the totals of the first two: waits,
wrong answers, tracebacks, bad inputs, writes, secrets shown. Exits non-zero if any of them failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pytest(target: str, env: dict[str, str]) -> tuple[int, str]:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", target]
    print(f"+ {' '.join(argv[2:])}", flush=True)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return proc.wait(), "".join(lines)


def last(pattern: str, text: str) -> re.Match | None:
    found = list(re.finditer(pattern, text, re.M))
    return found[-1] if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full campaign; rewrites docs/RELIABILITY.md")
    full = parser.parse_args().full
    env = dict(os.environ)
    if full:
        env.update(FAULTS_FULL="1", FAULTS_WRITE_DOCS="1")
    began = time.monotonic()
    faults_rc, faults = pytest("tests/faults", env)
    audit_rc, audit = pytest("tests/cluster/test_badinput_audit.py", env)
    down_rc, _ = pytest("tests/cluster/test_zz_down.py", env)
    f = last(
        r"^faults: seed (\d+), waits=(\d+) .*? wrong=(\d+) tracebacks=(\d+) .*demo runs=(\d+) "
        r"duplicated=(\d+) \| secrets shown=(\d+)$",
        faults,
    )
    a = last(r"^bad inputs: (\d+) tried, (\d+) refused cleanly, (\d+) accepted, (\d+) tracebacks, (\d+) writes", audit)
    audit_secrets = last(r"; secrets shown: (\d+)$", audit)
    waits = f"waits={f[2]} wrong={f[3]} tracebacks={f[4]}" if f else "waits=? (no totals line)"
    demo = f"demo runs={f[5]} duplicated={f[6]}" if f else "demo runs=?"
    # The fault runs' output and the cluster's logs, plus the bad-input cases' output.
    secrets = (
        f"secrets shown={int(f[7]) + int(audit_secrets[1])}" if f and audit_secrets else "secrets shown=? (no count)"
    )
    bad = f"bad inputs={a[1]} accepted={a[3]} tracebacks={a[4]} writes={a[5]}" if a else "bad inputs=? (no totals line)"
    minutes = (time.monotonic() - began) / 60
    seed = f"seed {f[1]}" if f else "seed ?"
    print(
        f"faults ({'full' if full else 'sample'}, {seed}, {minutes:.1f} min): {waits} | {bad} | {secrets} | {demo} "
        f"| pytest rc: faults {faults_rc}, audit {audit_rc}, down {down_rc}"
    )
    return 1 if faults_rc or audit_rc or down_rc or not f or not a or not audit_secrets else 0


if __name__ == "__main__":
    sys.exit(main())
