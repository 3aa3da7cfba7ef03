"""`knlab-cluster down` leaves nothing behind: no process, no network namespace, no mount, no
cgroup, and the sysctls the kubelet changed are back to what they were before `up`.

Runs last (the file name), and leaves the cluster down: `knlab-cluster up` brings it back with
everything it had (etcd and the images are kept)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, STATE, Cluster
from knlab_cluster.settings import CGROUP_ROOT, NETNS

pytestmark = pytest.mark.timeout(1500)  # the fixture may have to start the cluster first


def _sysctl(name: str) -> str:
    return Path("/proc/sys", name.replace(".", "/")).read_text().strip()


def _namespaces(pid: str) -> tuple[int, int]:
    return os.stat(f"/proc/{pid}/ns/net").st_ino, os.stat(f"/proc/{pid}/ns/mnt").st_ino


def test_down_leaves_nothing_behind(cluster: Cluster) -> None:
    recorded = json.loads((STATE / "sysctls.json").read_text())  # the values before the first up
    assert _sysctl("vm.overcommit_memory") == "1", "the kubelet should have set it while the cluster runs"
    holder = (STATE / "pids" / "holder.pid").read_text().split()[0]
    cluster_net, cluster_mnt = _namespaces(holder)  # every component lives in these two
    subprocess.run([CLI, "down"], check=True, timeout=240, stdin=subprocess.DEVNULL, capture_output=True)

    # No process is left in the cluster's network or mount namespace (containerd's shims included).
    left = []
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                if set(_namespaces(pid_dir.name)) & {cluster_net, cluster_mnt}:
                    left.append((pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    assert left == []

    assert NETNS not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    # The host's mounts: the namespace's bind mount is gone (the cluster's own mounts lived only in
    # its private mount namespace, which has no process left, so it is gone with them).
    assert [line for line in Path("/proc/mounts").read_text().splitlines() if str(STATE) in line or NETNS in line] == []
    assert list(Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}")) == []
    assert list((STATE / "pids").glob("*.pid")) == []
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit():
            try:
                cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            assert str(STATE) not in cmdline and "knlab-cluster/bin" not in cmdline, f"left running: {cmdline}"
    assert {name: _sysctl(name) for name in recorded} == recorded
    assert not (STATE / "sysctls.json").exists()
    status = subprocess.run([CLI, "status"], capture_output=True, check=False)
    assert status.returncode == 3
