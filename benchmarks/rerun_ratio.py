"""The demo's unchanged re-run against a one-task play, in the same run on one fresh sandbox.

Issue 9 item 9: "an unchanged `playbooks/demo.yml` re-run on the sandbox costs 21.6 times a
one-task play on the same machine"; the target is at most 5 times. One fresh sandbox (random
ports, its own state dir) gets `playbooks/sandbox-prepare.yml` and one first run of
`playbooks/demo.yml`, as `make demo` does; then, `--rounds` times and interleaved so that both
see the same machine load:

- `one_task`: `benchmarks/playbooks/one_task.yml`, one `ansible.builtin.debug` task. It runs in
  the controller (no module process): the floor of any play, Ansible's start-up and one task.
  This is the issue's "one-task play" (1.1 s on this machine).
- `one_module`: `benchmarks/playbooks/one_module.yml`, one `ansible.builtin.ping` task: the floor
  with one module process (shown, not the ratio's denominator).
- `rerun`: `playbooks/demo.yml` again with the same source; it must report changed=0.

Wall time is from spawning ansible-playbook until it exits. Every re-run's per-task times come
from the `knlab_bench_timing` callback (task start to result). The ratio is median(rerun) /
median(one_task); the per-round ratios are kept too.

    python benchmarks/rerun_ratio.py [--rounds 7] [--out rerun_ratio] [--label TEXT] [--write-results]

`--write-results` puts its section (before: benchmarks/baselines/rerun_ratio-before.json, after:
this run) into RESULTS.md and leaves the rest of the file as the last `make bench` wrote it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import report
from common import BENCH_DIR, OUT_DIR, REPO, Sandbox, ansible_env, machine, read_jsonl, save, summary, task_times, tool

RUN_TIMEOUT = 600.0  # one ansible-playbook run
TIME_LIMIT = 600.0  # all rounds, whatever --rounds says (at least one round runs)
PLAYS = {
    "one_task": BENCH_DIR / "playbooks" / "one_task.yml",
    "one_module": BENCH_DIR / "playbooks" / "one_module.yml",
    "rerun": REPO / "playbooks" / "demo.yml",
}


def play(playbook: Path, sandbox: Sandbox, work: Path, log: Path) -> dict[str, Any]:
    """Run ansible-playbook once: wall seconds, PLAY RECAP, exit code, every task's time."""
    timing = work / "tasks.jsonl"
    timing.unlink(missing_ok=True)
    env = ansible_env(
        K8S_AUTH_KUBECONFIG=sandbox.kubeconfig,
        DEMO_INGRESS_ADDRESS=sandbox.info["gateway"],
        KNLAB_BENCH_TIMING_FILE=str(timing),
    )
    argv = [tool("ansible-playbook"), str(playbook)]
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, stdin=DEVNULL
    )
    elapsed = time.perf_counter() - started
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    recap = next((line.strip() for line in done.stdout.splitlines() if line.startswith("localhost")), "")
    return {
        "seconds": elapsed,
        "recap": re.sub(r"\s+", " ", recap),
        "exit_code": done.returncode,
        "tasks": task_times(read_jsonl(timing)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", default="rerun_ratio", help="name of the JSON file in benchmarks/out/")
    parser.add_argument("--label", default="", help="what was measured (e.g. a commit), kept in the JSON")
    parser.add_argument(
        "--write-results", action="store_true", help="put the section into RESULTS.md (the rest is left as it is)"
    )
    args = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log = OUT_DIR / f"{args.out}-ansible.log"
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix="knlab-bench-rerun-"))
    sandbox = Sandbox(work / "sandbox")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PLAYS}
    info = machine()
    record: dict[str, Any] = {
        "label": args.label,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{info['cores']} cores, {info['cpu']}, {info['memory']}, load average before: "
        + " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "runs": runs,
    }
    started = time.monotonic()
    try:
        sandbox.up()
        for name, path in (("prepare", REPO / "playbooks/sandbox-prepare.yml"), ("first", PLAYS["rerun"])):
            record[name] = play(path, sandbox, work, log)
            if record[name]["exit_code"] != 0:
                raise SystemExit(f"{name} failed; see {log}")
        for index in range(args.rounds):
            if index and time.monotonic() - started > TIME_LIMIT:
                print(f"time limit reached after {index} rounds")
                break
            for name, path in PLAYS.items():
                run = play(path, sandbox, work, log)
                if run["exit_code"] != 0 or (name == "rerun" and "changed=0" not in run["recap"]):
                    raise SystemExit(f"{name} failed or changed something ({run['recap']}); see {log}")
                runs[name].append(run)
            shown = "  ".join(f"{name} {runs[name][-1]['seconds']:.2f}s" for name in PLAYS)
            print(f"round {index + 1}: {shown}", flush=True)
    finally:
        sandbox.down()
        shutil.rmtree(work, ignore_errors=True)
    seconds = {name: [r["seconds"] for r in runs[name]] for name in PLAYS}
    record["summary"] = {name: summary(values) for name, values in seconds.items()}
    record["summary"]["ratio"] = statistics.median(seconds["rerun"]) / statistics.median(seconds["one_task"])
    record["summary"]["ratio_per_round"] = [b / a for a, b in zip(seconds["one_task"], seconds["rerun"], strict=True)]
    record["summary"]["rerun_tasks"] = len(runs["rerun"][0]["tasks"])
    record["summary"]["rerun_recap"] = runs["rerun"][0]["recap"]
    # Each task's median time over the re-runs, slowest first: where the re-run's time goes.
    by_task: dict[str, list[float]] = {}
    for run in runs["rerun"]:
        for position, (task, took) in enumerate(run["tasks"]):
            by_task.setdefault(f"{position:02d} {task}", []).append(took)
    record["summary"]["rerun_task_medians"] = sorted(
        ((task, statistics.median(times)) for task, times in by_task.items()), key=lambda item: -item[1]
    )
    path = save(args.out, record)
    shown = {k: v for k, v in record["summary"].items() if k != "rerun_task_medians"}
    print(json.dumps(shown, indent=1))
    print(f"-> {path}")
    if args.write_results:
        print(f"-> {report.replace_rerun_block()}")


if __name__ == "__main__":
    main()
