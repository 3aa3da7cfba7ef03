"""A smaller `make hub-scale-demo`: the hub on S3 scaled out by load, one replica killed.

hub_scale.py does the work (a sandbox and a versitygw of its own); this checks its verdict and its
last line: at least two replicas served the load at the same time, every push acknowledged and
pulled back intact, no error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import hub_scale
import pytest

pytestmark = [pytest.mark.needs_docker_registry, pytest.mark.needs_s3_server]


def test_two_or_more_hub_replicas_serve_and_a_killed_one_loses_nothing(tmp_path: Path) -> None:
    argv = [sys.executable, hub_scale.__file__, "--pushers", "3", "--pushes", "3", "--pullers", "2"]
    argv += ["--size", "65536", "--state-dir", str(tmp_path / "sandbox")]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    summary = hub_scale.parse_summary(last)
    assert summary and summary["target"] == "sandbox", last
    assert summary["at_once"] >= 2 and summary["pods"] >= summary["at_once"], last
    assert (summary["pushes"], summary["checked"]) == (9, 9) and summary["pulls"] >= 9, last
    assert (summary["errors"], summary["killed"], summary["lost"]) == (0, 1, 0), last
    assert re.search(r"hub pods, \d+ ready, [1-9]\d* restart\(s\)", done.stdout), done.stdout
