"""`make hub-scale-demo TARGET=cluster`, smaller: a hub of its own on the cluster's S3 server scaled
out by load through the ingress, one of its pods force-deleted, nothing lost, and the hub gone after."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cluster

SCRIPT = Path(__file__).resolve().parents[1] / "integration" / "hub_scale.py"

pytestmark = pytest.mark.timeout(1200)


def test_the_hub_scales_out_on_the_cluster_and_a_deleted_pod_loses_nothing(cluster: Cluster) -> None:
    argv = [sys.executable, str(SCRIPT), "--target", "cluster", "--pushers", "4", "--pushes", "3", "--pullers", "2"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=1100, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    found = re.fullmatch(
        r"hub-scale-demo \(cluster\): replicas served=(\d+) pushes=(\d+) pulls=(\d+) errors=(\d+) "
        r"digests checked=(\d+) killed=(\d+) lost=(\d+) in \d+ s",
        last,
    )
    assert found, last
    served, pushes, pulls, errors, checked, killed, lost = map(int, found.groups())
    assert served >= 2 and pushes == 12 and checked == 12 and pulls >= 12
    assert (errors, killed, lost) == (0, 1, 0)
    assert "deleted with --grace-period=0 --force" in done.stdout
    assert "hubscale" not in cluster.names("ksvc", "default")
