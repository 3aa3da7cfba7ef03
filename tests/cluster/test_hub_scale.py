"""`make hub-scale-demo TARGET=cluster`, smaller: a hub of its own on the cluster's S3 server scaled
out by load through the ingress, one of its pods force-deleted, nothing lost, and the hub gone after."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import hub_scale

pytestmark = pytest.mark.timeout(1200)


def test_the_hub_scales_out_on_the_cluster_and_a_deleted_pod_loses_nothing(cluster: Cluster) -> None:
    argv = [sys.executable, hub_scale.__file__, "--target", "cluster"]
    argv += ["--pushers", "4", "--pushes", "3", "--pullers", "2"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=1100, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    summary = hub_scale.parse_summary(last)
    assert summary and summary["target"] == "cluster", last
    # Two pods serving at the same time: the deleted pod and its replacement count as one.
    assert summary["at_once"] >= 2, last
    assert (summary["pushes"], summary["checked"]) == (12, 12) and summary["pulls"] >= 12, last
    assert (summary["errors"], summary["killed"], summary["lost"]) == (0, 1, 0), last
    assert "deleted with --grace-period=0 --force" in done.stdout
    assert "hubscale" not in cluster.names("ksvc", "default")
