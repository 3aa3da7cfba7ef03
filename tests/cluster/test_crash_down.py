"""`knlab-cluster down` after a `kill -9` of a component leaves nothing behind, and `up` recovers.

The components are the ones `knlab-cluster status` lists (the CLI's own list: the namespace's
holder process, the mirror, etcd, the Kubernetes components, containerd, the loopback forwards).
For each component chosen, one cycle:

1. kill -9 its process (the pid `status` shows), as a crash would;
2. `knlab-cluster down`;
3. check that nothing is left: no process in the cluster's network or mount namespace, in its
   cgroup tree, running an executable of the cluster's build cache or naming its state directory;
   no network namespace; no mount of the state directory on the host; no cgroup directory; no
   listener on the loopback forwards' ports; no host interface or iptables rule that was not there
   before; no pid file; the sysctls the kubelet changed back to what `up` recorded; `status` exits 3;
4. `knlab-cluster up`, then the cluster works: a ConfigMap written before the crash is there (same
   uid), every component runs, the node is Ready, and a new Knative Service becomes Ready and
   answers through the ingress.

CI's sample is two cycles: one component chosen by a seeded rotation (``CRASH_SEED``, by default
the day's number, so successive days cover every component; printed) and one with every component
killed at once (about 5 minutes). ``CRASH_ALL=1`` runs one cycle per component, then the
all-at-once cycle (about 30 minutes). The last line printed (``-s``) sums up the run.

It runs before the other tests of this directory that use the cluster and leaves the cluster up;
test_zz_down.py, last, brings it down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from conftest import CLI, STATE, Cluster
from knlab_cluster.settings import CGROUP_ROOT, HOST_API_PORT, HOST_INGRESS_PORT, NETNS, Paths

FULL = bool(os.environ.get("CRASH_ALL"))
SEED = int(os.environ.get("CRASH_SEED") or date.today().toordinal())
ALL_AT_ONCE = "all at once"
# A Knative Service that proves the cluster runs again: the hub's registry image, from the mirror.
PROBE_PORT = 5000
PROBE_WAIT = 90.0
MARKER_NAMESPACE = "kube-public"

pytestmark = pytest.mark.timeout(7200 if FULL else 1200)


def cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )


def status() -> dict[str, int | None]:
    """`knlab-cluster status` as {component: pid or None}, in the CLI's order."""
    components: dict[str, int | None] = {}
    for line in cli("status", timeout=60).stdout.splitlines():
        name, _, state = line.partition(" ")
        state = state.strip()
        components[name] = int(state.rsplit(" ", 1)[1]) if state.startswith("running, pid ") else None
    assert components, "knlab-cluster status listed no component"
    return components


def chosen(names: list[str]) -> list[str]:
    if FULL:
        return [*names, ALL_AT_ONCE]
    return [names[SEED % len(names)], ALL_AT_ONCE]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _ns(pid: str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def _host_iptables() -> list[str]:
    done = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    # Comments carry dates and counters change: the rules and chains are what matters.
    return [line for line in done.stdout.splitlines() if line.startswith(("*", ":", "-")) and line[0] != "#"]


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(Path(table)).splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@dataclass
class Before:
    """What the running cluster looks like just before the crash: what down must undo."""

    net: int
    mnt: int
    sysctls: dict[str, str]
    links: set[str]
    iptables: list[str]

    @classmethod
    def take(cls, holder: int) -> Before:
        net, mnt = _ns(str(holder), "net"), _ns(str(holder), "mnt")
        assert net is not None and mnt is not None, "the holder process is gone before the crash"
        return cls(
            net=net,
            mnt=mnt,
            sysctls=json.loads((STATE / "sysctls.json").read_text()),
            links=_host_links(),
            iptables=_host_iptables(),
        )


def leftovers(before: Before) -> list[str]:
    """Everything of the cluster that is still there (an empty list: nothing)."""
    cache = str(Paths.from_env().cache)
    state = str(STATE)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cmdline = _read(entry / "cmdline")
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            exe = ""
        cgroups = _read(entry / "cgroup")
        why = [
            reason
            for reason, hit in (
                ("in the cluster's network namespace", _ns(entry.name, "net") == before.net),
                ("in the cluster's mount namespace", _ns(entry.name, "mnt") == before.mnt),
                (f"in the cgroup /{CGROUP_ROOT}", f":/{CGROUP_ROOT}" in cgroups),
                ("runs a built executable", exe.startswith((cache, state))),
                ("names the state directory", state in cmdline),
            )
            if hit
        ]
        if why and _alive(int(entry.name)):
            found.append(f"process {entry.name} ({cmdline[:120]}): {', '.join(why)}")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    if NETNS in netns or Path("/run/netns", NETNS).exists():
        found.append(f"network namespace {NETNS}")
    found += [
        f"mount {line}"
        for line in _read(Path("/proc/mounts")).splitlines()
        if state in line or f"/run/netns/{NETNS}" in line
    ]
    found += [f"cgroup {path}" for path in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}")]
    found += [f"listener on 127.0.0.1:{port}" for port in (HOST_API_PORT, HOST_INGRESS_PORT) if _listening(port)]
    found += [f"host interface {link}" for link in sorted(_host_links() - before.links)]
    found += [f"host iptables {rule}" for rule in _host_iptables() if rule not in before.iptables]
    found += [f"pid file {path.name}" for path in (STATE / "pids").glob("*.pid")]
    for name, value in before.sysctls.items():
        now = _read(Path("/proc/sys", name.replace(".", "/")))
        if now != value:
            found.append(f"sysctl {name} = {now}, not {value} as before up")
    if (STATE / "sysctls.json").exists():
        found.append("sysctls.json (down restores and forgets it)")
    if cli("status", timeout=60).returncode != 3:
        found.append("knlab-cluster status does not exit 3")
    return found


def kill(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), f"kill -9 did not end {pids}"


def works(cluster: Cluster, tag: str) -> list[str]:
    """The cluster runs again: every component, the node Ready, a new Knative Service answering."""
    pids = status()
    assert all(pids.values()), f"not running after up: {[name for name, pid in pids.items() if not pid]}"
    nodes = cluster.json("get", "nodes")["items"]
    ready = [c["status"] for n in nodes for c in n["status"]["conditions"] if c["type"] == "Ready"]
    assert ready == ["True"], f"node not Ready after up: {ready}"
    cluster.kubectl("get", "ksvc", "-A")
    namespace = f"crash-{tag}-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        service = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"image": cluster.env["DEMO_REGISTRY_IMAGE"], "ports": [{"containerPort": PROBE_PORT}]}
                        ]
                    }
                }
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(service))
        cluster.kubectl("wait", "ksvc/probe", "-n", namespace, "--for=condition=Ready", "--timeout=180s", timeout=200)
        url = cluster.json("get", "ksvc", "probe", "-n", namespace)["status"]["url"]
        host = url.split("://", 1)[1]
        # Ready comes a moment before the ingress routes to the new Service after an up (a 502
        # was seen once): the answer is asked for until PROBE_WAIT has passed, and the tries counted.
        deadline = time.monotonic() + PROBE_WAIT
        tries = []
        while True:
            argv = ("curl", "-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "--max-time", "20", "-H", f"Host: {host}")
            done = subprocess.run(
                [CLI, "exec", "--", *argv, f"{cluster.ingress}/v2/"],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            tries.append(done.stdout.strip() or f"curl exit {done.returncode}")
            if tries[-1] == "200" or time.monotonic() > deadline:
                break
            time.sleep(1)
        # The registry answers its API root with 200 and "{}".
        assert tries[-1] == "200" and done.stderr.strip() == "{}", f"the probe answered {tries}: {done.stderr[-500:]}"
        return tries
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@dataclass
class Cycle:
    killed: str
    left: list[str] = field(default_factory=list)
    down_seconds: float = 0.0
    up_seconds: float = 0.0
    probe: list[str] = field(default_factory=list)  # the probe's answers, until its 200


def test_down_after_kill_9_leaves_nothing_and_up_recovers(cluster: Cluster) -> None:
    names = list(status())
    cycles: list[Cycle] = []
    print(f"\ncomponents (knlab-cluster status): {', '.join(names)}; seed {SEED}; {'full' if FULL else 'sample'}")
    for target in chosen(names):
        pids = status()
        assert all(pids.values()), f"not running before the crash: {pids}"
        before = Before.take(pids["holder"])
        # An object written before the crash: up must bring it back (etcd's data is kept).
        marker = f"crash-marker-{target.replace(' ', '-')}-{int(time.time()) % 100000}"
        cluster.kubectl("create", "configmap", marker, "-n", MARKER_NAMESPACE, "--from-literal=written=before")
        uid = cluster.json("get", "configmap", marker, "-n", MARKER_NAMESPACE)["metadata"]["uid"]
        cycle = Cycle(target)
        kill([pid for name, pid in pids.items() if pid and target in (ALL_AT_ONCE, name)])

        started = time.monotonic()
        down = cli("down", timeout=600)
        cycle.down_seconds = time.monotonic() - started
        assert down.returncode == 0, f"down after kill -9 of {target} failed:\n{down.stdout}\n{down.stderr}"
        cycle.left = leftovers(before)
        print(
            f"kill -9 {target}: down {cycle.down_seconds:.0f} s, {len(cycle.left)} left behind"
            f"{(': ' + '; '.join(cycle.left)) if cycle.left else ''}",
            flush=True,
        )

        started = time.monotonic()
        up = cli("up")
        cycle.up_seconds = time.monotonic() - started
        assert up.returncode == 0, f"up after kill -9 of {target} failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        kept = cluster.json("get", "configmap", marker, "-n", MARKER_NAMESPACE)
        assert kept["metadata"]["uid"] == uid and kept["data"] == {"written": "before"}, kept
        cluster.kubectl("delete", "configmap", marker, "-n", MARKER_NAMESPACE)
        cycle.probe = works(cluster, target.replace(" ", "-"))
        cycles.append(cycle)
        print(f"  up {cycle.up_seconds:.0f} s, recovered (a new Service: {', '.join(cycle.probe)})", flush=True)

    dirty = [cycle for cycle in cycles if cycle.left]
    print(
        f"crash: {len(cycles)} kill -9 cycles ({len(names)} components), {len(cycles) - len(dirty)} downs left "
        f"nothing, {sum(len(c.left) for c in cycles)} leftovers, {len(cycles)} ups recovered, "
        f"{sum(c.probe[0] != '200' for c in cycles)} probes not answered at their first try"
    )
    assert not dirty, "\n".join(f"kill -9 {c.killed}: {'; '.join(c.left)}" for c in dirty)
