"""The node: a network namespace, a mount namespace held by one process, and the components.

Layout inside the namespace:
- `knlab0`, a bridge with no ports, holds the node's address (10.250.0.10/24); the default route
  points at it, so a packet to any other address has nowhere to go. The host gets no interface
  into the namespace: it reaches the cluster with `knlab-cluster exec`.
- One holder process (`ip netns exec <ns> sleep infinity`) keeps a private mount namespace, in
  which /sys is the namespace's own, the cgroup hierarchies are mounted again, and /run, /var/lib
  and /var/log are bind mounts of directories under the state directory. Every component is
  started with nsenter into that holder, so they all see the same mounts; when the last of them
  exits, every mount they made goes with the namespace.
- Pods get their own network namespaces from the CNI bridge plugin (cni0, 10.244.0.0/24).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import configs, s3
from .pki import ensure_pki, kubeconfig
from .settings import (
    API_PORT,
    BIND_MOUNTED,
    CGROUP_CONTROLLERS,
    CGROUP_ROOT,
    HOST_API_PORT,
    HOST_INGRESS_PORT,
    INGRESS_NODE_PORT,
    KUBELET_SYSCTLS,
    NETNS,
    NODE_BRIDGE,
    NODE_IP,
    NODE_NAME,
    NODE_PREFIX,
    Paths,
)

STOP_TIMEOUT = 20.0
HOLDER = "holder"


def log(message: str) -> None:
    print(f"knlab-cluster: {message}", flush=True)


class ExitedEarly(SystemExit):
    """A component's process ended before its readiness check succeeded."""


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    ready: list[str] | None = None  # a command run inside the namespace that succeeds once it serves
    on_host: bool = False  # runs in the host's namespaces (the loopback forwards), not the cluster's
    script: str = ""  # written to <config>/<name>.sh before the start (the forwards' per-connection command)
    env: dict[str, str] | None = None  # added to the process's environment
    # How often `start` starts it again when it exits before `ready` succeeds: the kubelet exits when
    # containerd's socket exists but its CRI service is not initialized yet ("server is not
    # initialized yet"), which the socket check cannot see.
    retries: int = 0


class Node:
    def __init__(self, paths: Paths, build: dict | None = None) -> None:
        self.paths = paths
        self.build = build or {}

    # --- processes -------------------------------------------------------------------------------
    def pid(self, name: str) -> int | None:
        """The pid recorded for `name`, if that process still runs: the same pid AND the same start
        time, so a pid reused after a reboot or a crash is never taken (or killed) for ours."""
        path = self.paths.pids / f"{name}.pid"
        try:
            pid_text, _, started = path.read_text().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _start_time(pid) == started.strip() else None

    def record(self, name: str, pid: int) -> None:
        (self.paths.pids / f"{name}.pid").write_text(f"{pid} {_start_time(pid)}\n")

    def holder(self) -> int:
        pid = self.pid(HOLDER)
        if pid is None:
            raise SystemExit("the cluster is not running (knlab-cluster up starts it)")
        return pid

    def enter(self, argv: list[str], *, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
        """Run a command in the cluster's network and mount namespaces, and wait for it."""
        argv = ["nsenter", f"--target={self.holder()}", "--mount", "--net", "--", *argv]
        return subprocess.run(argv, check=check, **kwargs)

    def start(self, component: Component, env: dict[str, str] | None = None) -> int:
        if (pid := self.pid(component.name)) is not None:
            return pid
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        if component.script:
            script = self.paths.config / f"{component.name}.sh"
            script.write_text(component.script)
            script.chmod(0o755)
        enter = [] if component.on_host else ["nsenter", f"--target={self.holder()}", "--mount", "--net", "--"]
        for attempt in range(component.retries + 1):
            with open(self.paths.logs / f"{component.name}.log", "ab") as out:
                proc = subprocess.Popen(
                    [*enter, *component.argv],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env={**_base_env(), **(component.env or {}), **(env or {})},
                )
            self.record(component.name, proc.pid)
            if not component.ready:
                break
            try:
                self.wait_for(component.name, component.ready, proc)
                break
            except ExitedEarly:
                if attempt == component.retries:
                    raise
                log(f"{component.name} exited before it was ready (see its log); starting it again")
                time.sleep(1)
        return proc.pid

    def wait_for(self, name: str, check: list[str], proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.enter(check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            if proc is not None and proc.poll() is not None:
                raise ExitedEarly(f"{name} exited with {proc.returncode}: see {self.paths.logs / name}.log")
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not become ready in {timeout:.0f} s: see {self.paths.logs / name}.log")
            time.sleep(0.25)

    # --- up --------------------------------------------------------------------------------------
    def up(self) -> None:
        _require_root()
        _require_cgroup_v1()
        if self.build and "versitygw" not in self.build.get("binaries", {}):
            raise SystemExit("the last build has no versitygw (the S3 server, added since): run knlab-cluster build")
        if self.pid(HOLDER) is not None and all(self.pid(c.name) for c in self.components()):
            log("the node is already running")
            return
        if _netns_exists() or any(self.paths.pids.glob("*.pid")):
            log("cleaning up what an earlier run left behind")
            self.down()
        for directory in (self.paths.pids, self.paths.logs, self.paths.config):
            directory.mkdir(parents=True, exist_ok=True)
        ensure_pki(self.paths.pki)
        s3.ensure_credentials(self.paths)
        s3.ensure_bucket(self.paths)
        self.record_sysctls()
        self.write_configs()
        self.create_netns()
        self.start_holder()
        self.mount()
        for component in self.components():
            self.start(component)
        self.wait_for(
            "node",
            [
                self.kubectl,
                "--kubeconfig",
                str(self.paths.inner_kubeconfig),
                "wait",
                "--for=condition=Ready",
                f"node/{NODE_NAME}",
                "--timeout=5s",
            ],
            timeout=120,
        )
        log(f"node {NODE_NAME} is Ready")

    @property
    def kubectl(self) -> str:
        return self.build.get("binaries", {}).get("kubectl", "kubectl")

    def components(self) -> list[Component]:
        b = self.build["binaries"] if self.build else {}
        cfg, pki = self.paths.config, self.paths.pki
        api = f"https://127.0.0.1:{API_PORT}"
        curl_ready = ["curl", "-fsk", "--max-time", "2"]
        return [
            Component(
                "mirror",
                [b.get("registry", "registry"), "serve", str(cfg / "mirror.yml")],
                ready=[*curl_ready, f"http://{NODE_IP}:5000/v2/"],
                env={"OTEL_TRACES_EXPORTER": "none"},
            ),
            Component(s3.S3, s3.argv(self.paths, b), ready=s3.READY, env=s3.environment(self.paths)),
            Component(
                "etcd",
                [
                    b.get("etcd", "etcd"),
                    "--name=knlab",
                    f"--data-dir={self.paths.state / 'etcd'}",
                    "--listen-client-urls=http://127.0.0.1:2379",
                    "--advertise-client-urls=http://127.0.0.1:2379",
                    "--listen-peer-urls=http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                    "--initial-cluster=knlab=http://127.0.0.1:2380",
                    "--listen-metrics-urls=http://127.0.0.1:2381",
                    "--log-level=warn",
                ],
                ready=[*curl_ready, "http://127.0.0.1:2381/health"],
            ),
            Component(
                "kube-apiserver",
                [
                    b.get("kube-apiserver", "kube-apiserver"),
                    "--etcd-servers=http://127.0.0.1:2379",
                    "--bind-address=0.0.0.0",
                    f"--secure-port={API_PORT}",
                    f"--advertise-address={NODE_IP}",
                    f"--service-cluster-ip-range={configs.SERVICE_CIDR}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    f"--tls-cert-file={pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                    f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                    f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                    "--kubelet-preferred-address-types=InternalIP",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    "--authorization-mode=Node,RBAC",
                    "--enable-admission-plugins=NodeRestriction",
                    "--allow-privileged=true",
                    "--profiling=false",
                    f"--audit-policy-file={cfg / 'audit-policy.yaml'}",
                    f"--audit-log-path={self.paths.audit_log}",
                    "--audit-log-maxsize=200",
                    "--audit-log-maxbackup=1",
                ],
                # The controller-manager exits on "forbidden" if it starts before RBAC is bootstrapped.
                ready=[
                    *curl_ready,
                    "--cacert",
                    str(pki / "ca.crt"),
                    "--cert",
                    str(pki / "admin.crt"),
                    "--key",
                    str(pki / "admin.key"),
                    f"{api}/readyz",
                ],
            ),
            Component(
                "kube-controller-manager",
                [
                    b.get("kube-controller-manager", "kube-controller-manager"),
                    f"--kubeconfig={cfg / 'controller-manager.kubeconfig'}",
                    f"--authentication-kubeconfig={cfg / 'controller-manager.kubeconfig'}",
                    f"--authorization-kubeconfig={cfg / 'controller-manager.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    "--leader-elect=false",
                    "--allocate-node-cidrs=true",
                    f"--cluster-cidr={configs.POD_CIDR}",
                    "--node-cidr-mask-size=24",
                    f"--service-cluster-ip-range={configs.SERVICE_CIDR}",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    "--use-service-account-credentials=true",
                ],
            ),
            Component(
                "kube-scheduler",
                [
                    b.get("kube-scheduler", "kube-scheduler"),
                    f"--kubeconfig={cfg / 'scheduler.kubeconfig'}",
                    f"--authentication-kubeconfig={cfg / 'scheduler.kubeconfig'}",
                    f"--authorization-kubeconfig={cfg / 'scheduler.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    "--leader-elect=false",
                ],
            ),
            Component(
                "containerd",
                ["containerd", f"--config={cfg / 'containerd.toml'}"],
                ready=["test", "-S", "/run/containerd/containerd.sock"],
            ),
            Component(
                "kubelet",
                [
                    b.get("kubelet", "kubelet"),
                    f"--config={cfg / 'kubelet.yaml'}",
                    f"--kubeconfig={cfg / 'kubelet.kubeconfig'}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={NODE_IP}",
                    "--v=1",
                ],
                # Serving its health check means it got past the CRI check and runs.
                ready=["curl", "-fs", "--max-time", "2", "http://127.0.0.1:10248/healthz"],
                retries=5,
            ),
            Component("kube-proxy", [b.get("kube-proxy", "kube-proxy"), f"--config={cfg / 'kube-proxy.yaml'}"]),
            *(
                self.forward(name, host_port, target)
                for name, host_port, target in (
                    ("forward-api", HOST_API_PORT, f"127.0.0.1:{API_PORT}"),
                    ("forward-ingress", HOST_INGRESS_PORT, f"{NODE_IP}:{INGRESS_NODE_PORT}"),
                )
            ),
        ]

    def forward(self, name: str, host_port: int, target: str) -> Component:
        """A loopback port of the host that reaches `target` inside the namespace: every connection
        gets a socat that nsenter puts in the namespace. No interface or route joins the two."""
        # A script, because socat's address syntax would split an inline command at its colons.
        script = self.paths.config / f"{name}.sh"
        return Component(
            name,
            ["socat", f"TCP-LISTEN:{host_port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:{script}"],
            on_host=True,
            script=f"#!/bin/sh\nexec nsenter --target={self.pid(HOLDER) or 0} --net -- socat STDIO TCP:{target}\n",
        )

    def write_configs(self) -> None:
        cfg, pki = self.paths.config, self.paths.pki
        for client in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"):
            (cfg / f"{client}.kubeconfig").write_text(kubeconfig(pki, client))
        (cfg / "admin.kubeconfig").chmod(0o600)
        self.paths.kubeconfig.write_text(kubeconfig(pki, "admin", f"https://127.0.0.1:{HOST_API_PORT}"))
        self.paths.kubeconfig.chmod(0o600)
        for name, text in configs.render(self.paths, self.build).items():
            (cfg / name).parent.mkdir(parents=True, exist_ok=True)
            (cfg / name).write_text(text)

    def create_netns(self) -> None:
        _ip("netns", "add", NETNS)
        inside = ["ip", "netns", "exec", NETNS]
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", NODE_BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", NODE_BRIDGE],
            ["ip", "link", "set", NODE_BRIDGE, "up"],
            ["ip", "route", "add", "default", "dev", NODE_BRIDGE],
        ):
            subprocess.run([*inside, *argv], check=True)

    def start_holder(self) -> None:
        # Binding over /run inside the namespace must not hide this file from later runs.
        proc = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.record(HOLDER, proc.pid)
        # ip netns exec has made the mount namespace (and remounted /sys) once it execs sleep.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/exe").resolve().name != "sleep":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("could not start the namespace's holder process")
            time.sleep(0.05)

    def mount(self) -> None:
        """The cgroup hierarchies (gone with ip netns exec's fresh /sys) and the state bind mounts."""
        script = ["set -e", "mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup"]
        for controller in CGROUP_CONTROLLERS:
            script += [
                f"mkdir -p /sys/fs/cgroup/{controller}",
                f"mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}",
            ]
        script += [
            "mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified",
            "mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd",
            "mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified",
        ]
        for target in BIND_MOUNTED:
            source = self.paths.bound(target)
            if target == "/run" and source.exists():
                shutil.rmtree(source)  # nothing in /run outlives the processes that made it
            source.mkdir(parents=True, exist_ok=True)
            script.append(f"mount --bind {source} {target}")
        script.append(f"mount --bind {self.paths.config / 'resolv.conf'} /etc/resolv.conf")
        self.enter(["sh", "-c", "\n".join(script)], check=True)
        # The kubelet's cgroup root must exist in every hierarchy; cpuset children need cpus and mems.
        for controller in (*CGROUP_CONTROLLERS, "systemd"):
            path = Path("/sys/fs/cgroup") / controller / CGROUP_ROOT
            path.mkdir(exist_ok=True)
            if controller == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((path.parent / knob).read_text())

    # --- sysctls ---------------------------------------------------------------------------------
    def record_sysctls(self) -> None:
        """Kept from the first up until a down restores them (an up after a crash keeps the originals)."""
        if self.paths.sysctls.exists():
            return
        values = {name: _sysctl_path(name).read_text().strip() for name in KUBELET_SYSCTLS}
        self.paths.sysctls.write_text(json.dumps(values, indent=2) + "\n")

    def restore_sysctls(self) -> None:
        if not self.paths.sysctls.exists():
            return
        for name, value in json.loads(self.paths.sysctls.read_text()).items():
            path = _sysctl_path(name)
            if path.read_text().strip() != value:
                path.write_text(value)
        self.paths.sysctls.unlink()

    # --- down ------------------------------------------------------------------------------------
    def down(self) -> None:
        _require_root()
        names = [c.name for c in reversed(self.components())]
        # The kubelet first, so that it does not restart the containers killed next.
        for name in ("kubelet", "kube-proxy"):
            self.stop(name)
        _kill_all(_cgroup_pids())
        _kill_all(_netns_pids())  # containerd's shims
        for name in names:
            self.stop(name)
        self.stop(HOLDER)
        _kill_all(_netns_pids() | _cgroup_pids() | self._forward_pids())
        for stale in self.paths.pids.glob("*.pid") if self.paths.pids.exists() else ():
            stale.unlink()
        if _netns_exists():
            _ip("netns", "delete", NETNS)
        _remove_cgroups()
        self.restore_sysctls()
        log("the cluster is down")

    def _forward_pids(self) -> set[int]:
        """The loopback forwards of this state directory, even if their pid files are gone: they
        live in the host's namespaces, so neither the netns nor the cgroup sweep finds them."""
        marker = f"EXEC:{self.paths.config}/forward-".encode()
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        found.add(int(entry.name))
                except OSError:
                    continue
        return found

    def stop(self, name: str) -> None:
        pid = self.pid(name)
        if pid is not None:
            _kill_all({pid})
        (self.paths.pids / f"{name}.pid").unlink(missing_ok=True)

    # --- restart (the fault campaign) ---------------------------------------------------------
    def restart(self, name: str) -> int:
        """Stop one component (SIGTERM, then SIGKILL after STOP_TIMEOUT) and start it again with the
        same command line; returns once its readiness check passes (for those that have one). The
        fault campaign (tests/faults) restarts the API server, etcd and the kubelet this way."""
        _require_root()
        by_name = {c.name: c for c in self.components()}
        if name not in by_name:
            raise SystemExit(f"no component {name!r}; the components are: {', '.join(by_name)}")
        if self.pid(HOLDER) is None:
            raise SystemExit("the cluster is not running (knlab-cluster up starts it)")
        self.stop(name)
        return self.start(by_name[name])

    # --- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, int | None]:
        return {name: self.pid(name) for name in [HOLDER] + [c.name for c in self.components()]}


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TERM")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return env


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_all(pids: set[int]) -> None:
    pids = {p for p in pids if p != os.getpid()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (STOP_TIMEOUT if sig == signal.SIGTERM else 5)
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = {p for p in pids if _alive(p)}
        if not pids:
            return


def _netns_inode() -> int | None:
    try:
        return os.stat(f"/run/netns/{NETNS}").st_ino
    except OSError:
        return None


def _netns_exists() -> bool:
    return Path(f"/run/netns/{NETNS}").exists()


def _netns_pids() -> set[int]:
    inode = _netns_inode()
    if inode is None:
        return set()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == inode:
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


def _cgroup_pids() -> set[int]:
    """Every process in the cluster's cgroup tree: the pods' containers, whatever their netns."""
    root = Path("/sys/fs/cgroup/pids") / CGROUP_ROOT
    found: set[int] = set()
    if root.exists():
        for procs in root.rglob("cgroup.procs"):
            try:
                found.update(int(line) for line in procs.read_text().split())
            except OSError:
                continue
    return found


def _remove_cgroups() -> None:
    # "unified" too: runc makes the containers' cgroup2 directories there on this hybrid layout.
    for controller in (*CGROUP_CONTROLLERS, "systemd", "unified"):
        root = Path("/sys/fs/cgroup") / controller / CGROUP_ROOT
        if not root.exists():
            continue
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):  # still in use: reported for the root below
                directory.rmdir()
        try:
            root.rmdir()
        except OSError as error:
            log(f"could not remove {root}: {error}")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def _require_cgroup_v1() -> None:
    """The node runs on cgroup v1 controllers (with cgroup2 beside them, as on this machine)."""
    missing = [c for c in CGROUP_CONTROLLERS if not Path("/sys/fs/cgroup", c, "cgroup.procs").exists()]
    if missing:
        raise SystemExit(
            f"knlab-cluster needs the cgroup v1 controllers mounted under /sys/fs/cgroup; missing: "
            f"{', '.join(missing)}. A cgroup-v2-only host (systemd's default) must boot with "
            "systemd.unified_cgroup_hierarchy=0 (see docs/cluster.md)."
        )


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("knlab-cluster needs root (network namespaces, mounts, cgroups)")
