"""Run generated invalid calls through ``ansible-playbook`` and judge each one.

All cases run in one play (one block per case, its failure rescued), with the JSON callback, so
every task result comes back with its start time. The recorder in front of every address the
collection could talk to (the API server in the kubeconfig, the registry, and the HTTP proxy for
any download) logs each request with its arrival time; a request belongs to the case whose first
task started last before it.

A case passes when the call failed, the failure message names the option and fits on one line
(ansible-core's role argument check lists one error per line after a heading: its first error
line counts), no traceback was printed or returned, and not a single request reached the recorder.

Also a command: ``python tests/badinput/campaign.py [--count N|--all] [--seed S]``; its last line
sums up the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import ROOT, Case, generate
from recorder import RecordingServer

DEFAULT_SEED = 20261206
DEFAULT_COUNT = 320
ROLE_ARGSPEC_HEADING = "Validation of arguments failed:"
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Verdict:
    case: Case
    failed: bool = False
    msg: str = ""
    traceback: bool = False
    requests: list[str] = field(default_factory=list)

    @property
    def writes(self) -> list[str]:
        return [request for request in self.requests if not request.startswith(("GET ", "HEAD "))]

    @property
    def reason_line(self) -> str:
        lines = self.msg.splitlines()
        if lines and lines[0].strip() == ROLE_ARGSPEC_HEADING and len(lines) > 1:
            return lines[1]
        return self.msg

    @property
    def one_line(self) -> bool:
        lines = self.msg.splitlines()
        return len(lines) == 1 or (bool(lines) and lines[0].strip() == ROLE_ARGSPEC_HEADING)

    @property
    def names_option(self) -> bool:
        return any(name and name in self.reason_line for name in self.case.names)

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.failed:
            found.append("accepted")
        elif not self.names_option:
            found.append(f"message does not name {self.case.names[0]}")
        if self.failed and not self.one_line:
            found.append("message is not one line")
        if self.traceback:
            found.append("traceback")
        if self.writes:
            found.append(f"{len(self.writes)} write(s)")
        elif self.requests:
            found.append(f"{len(self.requests)} read(s)")
        return found


def _task(case: Case) -> dict[str, Any]:
    title = f"case {case.ident}: {case.target} {case.option}"
    if case.is_role:
        role, _, entry = case.target[len("role:") :].partition(":")
        include: dict[str, Any] = {"name": f"knlab.serverless.{role}"}
        if entry:
            include["tasks_from"] = entry
        call = {"name": title, "ansible.builtin.include_role": include, "vars": case.args}
    else:
        call = {"name": title, case.target: case.args}
    return {
        "name": f"case {case.ident}",
        "block": [call],
        "rescue": [{"name": f"case {case.ident} refused", "ansible.builtin.meta": "noop"}],
    }


def playbook(cases: list[Case]) -> list[dict[str, Any]]:
    return [{"name": "Bad input", "hosts": "localhost", "gather_facts": False, "tasks": [_task(c) for c in cases]}]


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.rstrip("Z")).replace(tzinfo=UTC).timestamp()


def judge(cases: list[Case], report: dict[str, Any], requests: list[Any], output: str) -> list[Verdict]:
    verdicts = {case.ident: Verdict(case) for case in cases}
    starts: list[tuple[float, str]] = []
    current: str | None = None
    for play in report.get("plays", []):
        for entry in play.get("tasks", []):
            task = entry["task"]
            name = task.get("name") or ""
            if name.startswith("case ") and ": " in name:
                current = name.split()[1].rstrip(":")
                starts.append((_when(task["duration"]["start"]), current))
            result = (entry.get("hosts") or {}).get("localhost")
            if current is None or result is None:
                continue
            verdict = verdicts[current]
            # ansible-core puts "(traceback unavailable)" in every failure that has none.
            if TRACEBACK in json.dumps(result):
                verdict.traceback = True
            if result.get("failed") and not verdict.failed:
                verdict.failed = True
                verdict.msg = str(result.get("msg", ""))
    for request in requests:
        owner = None
        for start, ident in starts:
            if start <= request.at:
                owner = ident
        if owner is not None:
            verdicts[owner].requests.append(f"{request.method} {request.target}")
    if TRACEBACK in output:
        # A traceback printed outside any result (ansible-core's own): blame the case it follows.
        before = output.split(TRACEBACK, maxsplit=1)[0]
        owners = [ident for ident in verdicts if f"case {ident}" in before]
        if owners:
            verdicts[owners[-1]].traceback = True
    return list(verdicts.values())


def run(cases: list[Case], workdir: Path, workers: int = 2) -> list[Verdict]:
    """The cases split over ``workers`` playbooks run side by side, each with its own recorder."""
    chunks = [cases[index::workers] for index in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(_run_one, chunk, workdir / f"worker-{index}") for index, chunk in enumerate(chunks) if chunk
        ]
        verdicts = [verdict for future in futures for verdict in future.result()]
    return sorted(verdicts, key=lambda verdict: verdict.case.ident)


def _run_one(cases: list[Case], workdir: Path) -> list[Verdict]:
    workdir.mkdir(parents=True, exist_ok=True)
    with RecordingServer() as recorder:
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(recorder.kubeconfig()))
        book = workdir / "badinput.yml"
        for case in cases:
            _point_at(case, recorder.url)
        book.write_text(yaml.safe_dump(playbook(cases), sort_keys=False, allow_unicode=False, width=1000))
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "K8S_AUTH_KUBECONFIG": str(kubeconfig),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            # Whatever is not loopback goes to the recorder, which refuses it: nothing leaves.
            "HTTP_PROXY": recorder.url,
            "HTTPS_PROXY": recorder.url,
            "http_proxy": recorder.url,
            "https_proxy": recorder.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONWARNINGS": "ignore",
        }
        completed = subprocess.run(
            ["ansible-playbook", "-i", "localhost,", "-c", "local", str(book)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        requests = list(recorder.requests)
    output = completed.stdout
    start = output.find("{")
    report = json.loads(output[start:]) if start >= 0 else {}
    if not report.get("plays"):
        raise RuntimeError(f"ansible-playbook ran no play (rc {completed.returncode}): {completed.stderr[-2000:]}")
    return judge(cases, report, requests, completed.stderr)


def _point_at(case: Case, url: str) -> None:
    """Baselines name 127.0.0.1:9 as the registry; the recorder takes its place."""
    for key, value in case.args.items():
        if value == "http://127.0.0.1:9":
            case.args[key] = url


def describe(verdict: Verdict) -> str:
    case = verdict.case
    return (
        f"{case.ident} {case.target} {case.option}={case.value!r:.60}: {', '.join(verdict.problems)} "
        f"| {verdict.msg[:300]!r}"
    )


def summary(verdicts: list[Verdict]) -> str:
    totals = Counter()
    for verdict in verdicts:
        totals["writes"] += len(verdict.writes)
        totals["reads"] += len(verdict.requests) - len(verdict.writes)
        totals["tracebacks"] += verdict.traceback
        totals["accepted"] += not verdict.failed
        totals["unnamed"] += verdict.failed and not verdict.names_option
        totals["multiline"] += verdict.failed and not verdict.one_line
    bad = sum(1 for verdict in verdicts if verdict.problems)
    return (
        f"bad inputs: {len(verdicts)} tried, {len(verdicts) - bad} refused cleanly, {totals['accepted']} accepted, "
        f"{totals['tracebacks']} tracebacks, {totals['writes']} writes, {totals['reads']} reads, "
        f"{totals['unnamed']} messages without the option, {totals['multiline']} multi-line"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--all", action="store_true", help="every generated case")
    parser.add_argument("--only", default="", help="targets whose name contains this text")
    arguments = parser.parse_args()
    cases = generate(arguments.seed, None if arguments.all else arguments.count)
    cases = [case for case in cases if arguments.only in case.target]
    with tempfile.TemporaryDirectory(prefix="badinput-") as workdir:
        verdicts = run(cases, Path(workdir))
    for verdict in verdicts:
        if verdict.problems:
            print(describe(verdict))
    print(summary(verdicts))
    return 0 if not any(verdict.problems for verdict in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
