"""A smaller `make hub-scale-demo`: the hub on S3 scaled out by load, one replica killed.

hub_scale.py does the work (a sandbox and a versitygw of its own); this checks its verdict and its
last line: at least two replicas served, every push acknowledged and pulled back intact, no error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().with_name("hub_scale.py")

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry")),
        reason="the sandbox's hub needs docker-registry (apt-get install docker-registry)",
    ),
    pytest.mark.skipif(
        not (os.environ.get("KNLAB_VERSITYGW") or shutil.which("go")),
        reason="the S3 server is built from cluster/go/versitygw: it needs Go (or $KNLAB_VERSITYGW)",
    ),
]


def test_two_or_more_hub_replicas_serve_and_a_killed_one_loses_nothing(tmp_path: Path) -> None:
    argv = [sys.executable, str(SCRIPT), "--pushers", "3", "--pushes", "3", "--pullers", "2"]
    argv += ["--size", "65536", "--state-dir", str(tmp_path / "sandbox")]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    found = re.fullmatch(
        r"hub-scale-demo \(sandbox\): replicas served=(\d+) pushes=(\d+) pulls=(\d+) errors=(\d+) "
        r"digests checked=(\d+) killed=(\d+) lost=(\d+) in \d+ s",
        last,
    )
    assert found, last
    served, pushes, pulls, errors, checked, killed, lost = map(int, found.groups())
    assert served >= 2 and pushes == 9 and checked == 9 and pulls >= 9
    assert (errors, killed, lost) == (0, 1, 0)
    assert re.search(r"hub pods, \d+ ready, [1-9]\d* restart\(s\)", done.stdout), done.stdout
