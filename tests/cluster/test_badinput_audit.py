"""Bad input makes no request to the real cluster: its API server's audit log is the witness.

tests/badinput/ proves "refused before the first request" with a recorder that stands in for the
API server. Here a seeded sample of the same generated cases (tests/badinput/cases.py, judged by
tests/badinput/campaign.py) runs with the real cluster's kubeconfig, inside its network namespace,
and the audit log kube-apiserver writes (every request but leases and events, at Metadata level or
more) is read for the requests of the collection's user (kubernetes-admin, the kubeconfig's) while
the cases ran. A valid call runs last in the same play: it must show up in the audit log, so an
empty result cannot pass by accident.

``BADINPUT_AUDIT_COUNT`` (default 60) and ``BADINPUT_AUDIT_SEED`` choose the sample;
``BADINPUT_AUDIT_ALL=1`` runs every case. The last line printed (``-s``) sums up the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import BIN, CLI, ROOT, STATE, Cluster, kubeconfig_secrets
from knlab_cluster.settings import Paths

sys.path.insert(0, str(ROOT / "tests" / "badinput"))

from campaign import DEFAULT_SEED, describe, judge, playbook, summary
from cases import Case, generate
from recorder import Request

SEED = int(os.environ.get("BADINPUT_AUDIT_SEED", DEFAULT_SEED))
COUNT = None if os.environ.get("BADINPUT_AUDIT_ALL") else int(os.environ.get("BADINPUT_AUDIT_COUNT", "60"))
USER = "kubernetes-admin"  # the user of the cluster's admin kubeconfig, which the cases run with
CONTROL = "9999"
# How the audit log names what the recorder saw as HTTP methods.
METHODS = {
    "get": "GET",
    "list": "GET",
    "watch": "GET",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}

pytestmark = pytest.mark.timeout(1800 if COUNT is None else 900)


def control_case() -> Case:
    """A valid call that reads the cluster and changes nothing: a Service that does not exist, absent."""
    args = {"name": "badinput-audit-control", "namespace": "default", "state": "absent", "wait": False}
    return Case("knlab.serverless.knative_service", "control", ("name",), args, "control", ident=CONTROL)


def audit_requests(since: float, until: float, user: str = USER) -> list[Request]:
    """The requests by `user` that the API server received in [since, until], one per audit ID."""
    seen: dict[str, Request] = {}
    logs = sorted(Path(STATE / "logs").glob("audit*.log"))
    for log in logs:
        if log.stat().st_mtime < since:
            continue  # rotated before the run began
        with log.open(errors="replace") as lines:
            for text in lines:
                if f'"username":"{user}"' not in text:
                    continue
                event = json.loads(text)
                at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
                if since <= at <= until and event["user"]["username"] == user:
                    seen[event["auditID"]] = Request(at, METHODS.get(event["verb"], event["verb"]), event["requestURI"])
    return sorted(seen.values(), key=lambda request: request.at)


def run_in_cluster(cases: list[Case], workdir: Path) -> tuple[dict, str, int]:
    """The cases in one play, run by ansible-playbook inside the cluster's namespace."""
    workdir.mkdir(parents=True, exist_ok=True)
    book = workdir / "badinput.yml"
    book.write_text(yaml.safe_dump(playbook(cases), sort_keys=False, allow_unicode=False, width=1000))
    variables = {
        "K8S_AUTH_KUBECONFIG": str(Paths.from_env().inner_kubeconfig),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".build" / "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_DEPRECATION_WARNINGS": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        # The namespace has no way out; a proxy that refuses makes sure of it for any download.
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONWARNINGS": "ignore",
    }
    argv = [CLI, "exec", "--", "env", *(f"{k}={v}" for k, v in variables.items())]
    argv += [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(book)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1700, check=False)
    start = done.stdout.find("{")
    report = json.loads(done.stdout[start:]) if start >= 0 else {}
    assert report.get("plays"), f"ansible-playbook ran no play (rc {done.returncode}):\n{done.stderr[-3000:]}"
    return report, done.stderr, done.returncode


def test_bad_input_makes_no_request_to_the_real_cluster(cluster: Cluster, tmp_path: Path) -> None:
    sample = generate(SEED, COUNT)
    control = control_case()
    began = time.time()
    report, stderr, _ = run_in_cluster([*sample, control], tmp_path)
    ended = time.time()

    # The control's requests may reach the log a moment after the play ends.
    requests = audit_requests(began, ended)
    deadline = time.monotonic() + 30
    verdicts = judge([*sample, control], report, requests, stderr)
    while not verdicts[-1].requests and time.monotonic() < deadline:
        time.sleep(1)
        requests = audit_requests(began, ended)
        verdicts = judge([*sample, control], report, requests, stderr)
    *verdicts, checked = verdicts
    assert checked.case.ident == CONTROL
    assert not checked.failed, f"the control call failed: {checked.msg}"
    assert checked.requests, "the valid control call is not in the audit log: its absence would prove nothing"
    assert not checked.writes, checked.requests  # absent, and nothing to delete

    # The cases' whole output (every result, every message, ansible's stderr) against the
    # kubeconfig's client key: the totals line of `make faults` counts it with the fault runs'.
    output = json.dumps(report) + stderr
    shown = sum(1 for needle in kubeconfig_secrets() if needle in output)
    line = (
        summary(verdicts) + f"; control call: {len(checked.requests)} request(s) in the audit log"
        f"; secrets shown: {shown}"
    )
    print(f"\nseed {SEED}, {len(verdicts)} cases on the real cluster, audit log of {USER}")
    print(line)
    bad = [describe(verdict) for verdict in verdicts if verdict.problems]
    assert not bad, line + "\n" + "\n".join(bad)
    assert not shown, line
