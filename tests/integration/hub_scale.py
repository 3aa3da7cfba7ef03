"""The hub on object storage, scaled past one replica, under load, with one replica killed.

`make hub-scale-demo` runs it (``python tests/integration/hub_scale.py``); test_hub_scale.py runs a
smaller version. On a sandbox of its own (random loopback ports, state in ``--state-dir``):

1. ``knlab-sandbox up`` and ``knlab-sandbox s3 up`` (versitygw on 127.0.0.1);
2. the registry role with ``registry_storage: s3``, ``registry_max_scale: 3`` and
   ``registry_autoscaling_target: 1`` (min-scale stays 1: the load has to scale it out, which is
   what the sandbox's autoscaler simulation is for; see sandbox/README.md);
3. ``--pushers`` concurrent pushers (unique blobs each) and ``--pullers`` concurrent pullers
   through the gateway; once at least two replicas are ready and a third of the pushes are
   acknowledged, one hub process is killed (SIGKILL) and its pod restarts it;
4. every acknowledged push is pulled back and checked byte for byte and by digest.

A push that fails (the kill may cut one) is retried from the start, up to ``RETRIES`` times; a pull
too. Only what still fails after that is an error.

Replicas that served are counted from the registry's own log lines (``response completed`` for the
load's repositories, ``scale/p<n>``; the probes' ``GET /v2/`` does not count), read with ``kubectl
logs`` just before the kill, when the load ends and at the end (the killed one's lines are gone after
the kill: its restarted container starts a new log). Each pod served from the time of its first
such line to that of its last; the verdict is the most pods whose spans overlap, the replicas that
served *at the same time* (``replicas_at_once``). A killed pod and the pod that replaces it never
overlap (the killed one's last request ends before the kill, the replacement's first after it), so
they count as one, as do the process killed in a sandbox pod and its restart in the same pod. Fewer
than two at once is a failure.

``--target cluster`` (``make hub-scale-demo TARGET=cluster``, root, the cluster up): the same load on
the real cluster. On the host it reads the S3 endpoint and keys (``knlab-cluster s3``) and runs itself
again inside the cluster's network namespace (``knlab-cluster exec``; the keys go through the
environment). There the registry role starts a hub of its own (``hubscale`` in DEMO_NAMESPACE, the
image DEMO_REGISTRY_IMAGE, both from /srv/knlab-cluster/demo.env) on the cluster's S3 bucket under
``/hubscale``, with ``--max-scale`` (3) and a target of 1; the load goes through the ingress
(DEMO_INGRESS_ADDRESS with the Host of the hub's URL). The kill is ``kubectl delete pod
--grace-period=0 --force`` of one ready hub pod; its replacement must be Ready by the end. Replicas are
counted as in the sandbox, so the deleted pod and its replacement are one replica. At the end the
role's ``absent`` entry point removes the hub and the script waits for its pods to go; the images stay
in the bucket.

The last line sums it up; the exit code is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [
    str(ROOT / "tests" / "integration"),
    str(ROOT / "tests" / "sandbox"),
    str(ROOT / ".build" / "collections"),
]
from image_push import PushedImage, Pusher, layer  # noqa: E402
from sandbox_cli import (  # noqa: E402
    BIN,
    REGISTRY_ABSENT_PLAY,
    REGISTRY_PLAY,
    CommandFailed,
    SandboxCLI,
    ansible_settings,
    s3_secret_manifest,
)

RETRIES = 3
GATE_TIMEOUT = 120.0
REVISION_LABEL = "serving.knative.dev/revision"
DemoError = CommandFailed  # a step failed: the message says which
# A completed response to one of the load's own requests (its repositories are scale/p<n>): the
# registry's text log (logrus) quotes a value only when it needs to (a blob's "sha256:", an upload's "?").
LOAD_REQUEST = re.compile(r'msg="response completed" .*\bhttp\.request\.uri="?/v2/scale/')
LOG_TIME = re.compile(r'(?:^|\s)time="([^"]+)"')
SUMMARY = re.compile(
    r"hub-scale-demo \((?P<target>sandbox|cluster)\): replicas served at once=(?P<at_once>\d+) "
    r"pods served=(?P<pods>\d+) pushes=(?P<pushes>\d+) pulls=(?P<pulls>\d+) errors=(?P<errors>\d+) "
    r"digests checked=(?P<checked>\d+) killed=(?P<killed>\d+) lost=(?P<lost>\d+) in \d+ s"
)


@dataclass
class Tally:
    pushes: int = 0
    push_retries: int = 0
    pulls: int = 0
    pull_retries: int = 0
    errors: list[str] = field(default_factory=list)
    acknowledged: list[PushedImage] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    killed_at: float = 0.0
    served: dict[str, set[str]] = field(default_factory=dict)  # pod -> its log lines of load requests

    def read_served(self, hub: Sandbox | Cluster, pods: Iterable[str]) -> None:
        """Add the pods' load lines read now to those read before (a log read twice adds nothing)."""
        for pod in pods:
            self.served.setdefault(pod, set()).update(hub.served(pod))


def load_lines(log: str) -> set[str]:
    """The lines of a hub's log that are completed responses to the load's own requests."""
    return {line for line in log.splitlines() if LOAD_REQUEST.search(line)}


def line_time(line: str) -> float | None:
    """When the registry wrote ``line`` (its ``time=``, RFC 3339), in seconds since the epoch."""
    found = LOG_TIME.search(line)
    try:
        return datetime.fromisoformat(found.group(1)).timestamp() if found else None
    except ValueError:
        return None


def served_times(served: Mapping[str, Iterable[str]]) -> dict[str, list[float]]:
    """pod -> the sorted times of its load lines; pods that served none are left out."""
    times = {pod: sorted(t for t in map(line_time, lines) if t is not None) for pod, lines in served.items()}
    return {pod: found for pod, found in times.items() if found}


def replicas_at_once(times: Mapping[str, Iterable[float]]) -> int:
    """The most pods that served the load at the same time: a pod serves from its first load request
    to its last (both included), and the answer is the most of these spans that overlap at one
    instant. A pod killed mid-load and the one that replaces it do not overlap (the first's last
    request ends before the kill, the second's first one after it): together they are one replica,
    not two."""
    edges = []
    for found in map(list, times.values()):
        if found:
            edges += [(min(found), 0), (max(found), 1)]  # at the same instant a start comes first
    edges.sort()
    serving = most = 0
    for _moment, end in edges:
        serving += -1 if end else 1
        most = max(most, serving)
    return most


def parse_summary(line: str) -> dict[str, int | str] | None:
    """The figures of the last line, or None if ``line`` is not one."""
    found = SUMMARY.fullmatch(line)
    if not found:
        return None
    return {key: value if key == "target" else int(value) for key, value in found.groupdict().items()}


def s3_hub_settings(s3: Mapping[str, str], secret: str, root_directory: str, max_scale: int) -> dict[str, object]:
    """The registry role's settings for a hub on ``s3`` (``knlab-sandbox|knlab-cluster s3``) whose
    keys are in ``secret``, scaled out by load: a target of 1 concurrent request per replica."""
    return {
        "registry_storage": "s3",
        "registry_s3_endpoint": s3["endpoint"],
        "registry_s3_bucket": s3["bucket"],
        "registry_s3_region": s3["region"],
        "registry_s3_credentials_secret": secret,
        "registry_s3_root_directory": root_directory,
        "registry_max_scale": max_scale,
        "registry_autoscaling_target": 1,
        "registry_autoscaling_metric": "concurrency",
    }


def live_pods(listing: str) -> list[dict]:
    """The pods of a ``kubectl get pods -o json`` that are not being deleted."""
    return [p for p in json.loads(listing)["items"] if not p["metadata"].get("deletionTimestamp")]


class Sandbox(SandboxCLI):
    """A sandbox of its own; its hub is ``hub`` in ``default``, its S3 keys in the Secret ``hub-s3``."""

    def start_hub(self, s3: Mapping[str, str], max_scale: int) -> dict:
        """The registry role on ``s3``; the hub's Knative Service once it is Ready."""
        self.kubectl("create", "-f", "-", stdin=s3_secret_manifest("hub-s3", "default", s3))
        playbook = self.state_dir / "hub-scale.yml"
        playbook.write_text(REGISTRY_PLAY)
        code, output = self.play(playbook, **s3_hub_settings(s3, "hub-s3", "/knlab", max_scale))
        if code != 0:
            raise DemoError(f"the registry role failed:\n{output[-2500:]}")
        return self.get("ksvc", "hub")

    def hub_pods(self, revision: str) -> list[dict]:
        return live_pods(self.kubectl("get", "pods", "-l", f"{REVISION_LABEL}={revision}", "-o", "json"))

    def served(self, pod: str) -> set[str]:
        # Only the load's own requests: each instance answers the sandbox's readiness GET /v2/ too,
        # which would make every started replica one that "served".
        try:
            return load_lines(self.kubectl("logs", pod))
        except DemoError:
            return set()  # a pod scaled down and gone: its lines went with it

    def kill(self, revision: str, pods: list[dict], chooser: random.Random) -> str:
        """SIGKILL one hub process of ``revision``; its pod restarts it in place."""
        del pods  # the runtime's own records name the processes
        key, pid = chooser.choice(sorted(self.hub_pids(revision).items()))
        os.kill(pid, signal.SIGKILL)
        return f"hub process {key} (pid {pid}) with SIGKILL"

    def hub_pids(self, revision: str) -> dict[str, int]:
        """runtime key → pid of the hub processes of ``revision`` (the runtime's own records)."""
        found = {}
        for record in (self.state_dir / "run" / "pids").glob("*.json"):
            with_pid = json.loads(record.read_text())
            if with_pid.get("key", "").split("#", 1)[0] == f"default/{revision}":
                found[with_pid["key"]] = int(with_pid["pid"])
        return found


CLUSTER_CLI = BIN / "knlab-cluster"
CLUSTER_ENV = Path("/srv/knlab-cluster/demo.env")
S3_ENV = "KNLAB_HUB_SCALE_S3"  # the cluster's S3 endpoint and keys, handed to the run inside
HUB = "hubscale"  # a hub of its own, next to the demo's (which stays untouched)


class Cluster:
    """The real cluster, from inside its network namespace (``knlab-cluster exec``): kubectl is
    configured there, the ingress answers on DEMO_INGRESS_ADDRESS."""

    def __init__(self, work_dir: Path, demo_env: dict[str, str]):
        self.work_dir = work_dir
        self.demo_env = demo_env
        self.namespace = demo_env.get("DEMO_NAMESPACE") or "default"
        self.info = {"gateway": demo_env["DEMO_INGRESS_ADDRESS"]}
        self.secret = f"{HUB}-s3"

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        argv = ["kubectl", "-n", self.namespace, *args]
        done = subprocess.run(argv, check=False, input=stdin, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def play(self, text: str, **extra: object) -> None:
        playbook = self.work_dir / "hub-scale.yml"
        playbook.write_text(text)
        settings = self.work_dir / "settings.json"
        settings.write_text(json.dumps({"registry_name": HUB, "registry_namespace": self.namespace, **extra}))
        env = dict(os.environ)
        env.pop(S3_ENV, None)
        env.update(self.demo_env)
        env.update(ansible_settings())
        argv = [str(BIN / "ansible-playbook"), str(playbook), "-e", f"@{settings}"]
        done = subprocess.run(
            argv, check=False, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise DemoError(f"the registry role failed:\n{(done.stdout + done.stderr)[-2500:]}")

    def start_hub(self, s3: Mapping[str, str], max_scale: int) -> dict:
        """The hub ``hubscale`` on the cluster's S3 bucket under /hubscale (the keys in a Secret, given
        on stdin); its Knative Service once it is Ready."""
        self.kubectl("apply", "--server-side", "-f", "-", stdin=s3_secret_manifest(self.secret, self.namespace, s3))
        self.play(
            REGISTRY_PLAY,
            registry_image=self.demo_env["DEMO_REGISTRY_IMAGE"],
            **s3_hub_settings(s3, self.secret, f"/{HUB}", max_scale),
        )
        return json.loads(self.kubectl("get", "ksvc", HUB, "-o", "json"))

    def remove_hub(self) -> None:
        """The role's ``absent`` entry point, the keys' Secret, then wait for the hub's pods to go: the
        role's wait ends with the Service, and a next run would find them Terminating under the same
        revision name. The images stay in the bucket."""
        self.play(REGISTRY_ABSENT_PLAY)
        self.kubectl("delete", "secret", self.secret, "--ignore-not-found")
        self.kubectl("wait", "pod", "-l", f"serving.knative.dev/service={HUB}", "--for=delete", "--timeout=120s")

    def hub_pods(self, revision: str) -> list[dict]:
        return live_pods(self.kubectl("get", "pods", "-l", f"{REVISION_LABEL}={revision}", "-o", "json"))

    def served(self, pod: str) -> set[str]:
        # Only the load's own requests, not the probes.
        try:
            return load_lines(self.kubectl("logs", pod, "-c", "user-container"))
        except DemoError:
            return set()  # a pod scaled down and gone: its lines went with it

    def kill(self, revision: str, pods: list[dict], chooser: random.Random) -> str:
        """Delete one ready hub pod at once (no grace period): its Deployment replaces it."""
        del revision
        name = chooser.choice(sorted(p["metadata"]["name"] for p in pods))
        self.kubectl("delete", "pod", name, "--grace-period=0", "--force", "--wait=false")
        return f"hub pod {name} (deleted with --grace-period=0 --force)"


def restarts(pods: list[dict]) -> int:
    return sum(c.get("restartCount", 0) for p in pods for c in p.get("status", {}).get("containerStatuses", []))


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


async def push_one(  # noqa: PLR0917 (one pusher's one push, all of it needed)
    session: aiohttp.ClientSession, gateway: str, host: str, who: int | str, number: int, size: int, tally: Tally
) -> None:
    # Unique content per pusher and push: nothing is shared, so every blob really travels.
    payload = random.Random(f"{who}-{number}").randbytes(size)
    image_layer = layer({f"data/{who}-{number}.bin": payload}, directories=("data",))
    for attempt in range(RETRIES + 1):
        try:
            pushed = await Pusher(session, gateway, host).image(f"scale/p{who}", f"t{number}", [image_layer])
        except (AssertionError, aiohttp.ClientError, OSError, TimeoutError) as error:
            if attempt == RETRIES:
                tally.errors.append(f"push p{who}:t{number}: {error}")
                return
            tally.push_retries += 1
            await asyncio.sleep(0.2)
            continue
        tally.pushes += 1
        tally.acknowledged.append(pushed)
        return


async def pull_check(session: aiohttp.ClientSession, gateway: str, host: str, image: PushedImage) -> None:
    headers = {"Host": host, "Accept": image.media_type}
    url = f"{gateway}/v2/{image.repository}/manifests/{image.digest}"
    async with session.get(url, headers=headers) as response:
        body = await response.read()
        if response.status != 200 or body != image.manifest:
            raise AssertionError(f"manifest {image.repository}@{image.digest}: {response.status}")
    for digest in image.blob_digests:
        url = f"{gateway}/v2/{image.repository}/blobs/{digest}"
        async with session.get(url, headers={"Host": host}) as response:
            data = await response.read()
            if response.status != 200 or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                raise AssertionError(f"blob {image.repository}@{digest}: {response.status}, {len(data)} bytes")


async def pull_with_retries(session, gateway: str, host: str, image: PushedImage, tally: Tally) -> bool:
    for attempt in range(RETRIES + 1):
        try:
            await pull_check(session, gateway, host, image)
        except (AssertionError, aiohttp.ClientError, OSError, TimeoutError) as error:
            if attempt == RETRIES:
                tally.errors.append(f"pull {image.repository}:{image.tag}: {error}")
                return False
            tally.pull_retries += 1
            await asyncio.sleep(0.2)
            continue
        tally.pulls += 1
        return True
    return False


async def load(sandbox: Sandbox | Cluster, revision: str, host: str, args: argparse.Namespace, tally: Tally) -> int:
    gateway = sandbox.info["gateway"]
    pushing_done = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=120)

    scaled, killed = asyncio.Event(), asyncio.Event()

    async def gate(event: asyncio.Event, what: str) -> None:
        # Bounded: a hub that never scales out is a failure, not a hang.
        try:
            await asyncio.wait_for(event.wait(), timeout=GATE_TIMEOUT)
        except TimeoutError:
            if what not in tally.errors:
                tally.errors.append(what)
            event.set()

    async def pusher(who: int) -> None:
        # A third of the pushes, then wait for the load to have scaled the hub out; another third
        # (the kill happens among them), then wait for the kill; the rest while the pod restarts it.
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for number in range(args.pushes):
                if number == args.pushes // 3:
                    await gate(scaled, f"the hub never had two ready replicas within {GATE_TIMEOUT:g} s")
                if number == 2 * args.pushes // 3:
                    await gate(killed, f"no hub process was killed within {GATE_TIMEOUT:g} s")
                await push_one(session, gateway, host, who, number, args.size, tally)

    async def puller(who: int) -> None:
        chooser = random.Random(who)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not pushing_done.is_set():
                if not tally.acknowledged:
                    await asyncio.sleep(0.05)
                    continue
                await pull_with_retries(session, gateway, host, chooser.choice(tally.acknowledged), tally)

    async def killer() -> None:
        # Once two replicas are ready, let some pushes start again, then SIGKILL one hub process.
        while not scaled.is_set():
            pods = [p for p in sandbox.hub_pods(revision) if ready(p)]
            if len(pods) >= 2:
                scaled.set()
                print(f"{len(pods)} hub replicas ready", flush=True)
                break
            await asyncio.sleep(0.3)
        before = tally.pushes
        while tally.pushes == before and not pushing_done.is_set():
            await asyncio.sleep(0.02)
        pods = [p for p in sandbox.hub_pods(revision) if ready(p)]
        # The killed one's log goes with it (a pod deleted, a container restarted): read them all now.
        tally.read_served(sandbox, (p["metadata"]["name"] for p in pods))
        tally.killed_at = time.time()
        what = sandbox.kill(revision, pods, random.Random(args.seed))
        tally.killed.append(what)
        killed.set()
        print(f"killed {what}; {len(pods)} replicas were ready", flush=True)

    tasks = [asyncio.create_task(puller(i)) for i in range(args.pullers)]
    kill_task = asyncio.create_task(killer())
    await asyncio.gather(*(pusher(i) for i in range(args.pushers)))
    pushing_done.set()
    await asyncio.gather(*tasks, kill_task)
    # The pods that served the load, read before any of them scales down and takes its log along.
    tally.read_served(sandbox, (p["metadata"]["name"] for p in sandbox.hub_pods(revision)))
    # Everything acknowledged comes back intact, after the kill and the restart.
    checked = 0
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for image in list(tally.acknowledged):
            if await pull_with_retries(session, gateway, host, image, tally):
                checked += 1
    return checked


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="knlab-hub-scale-"))
    sandbox = Sandbox(state_dir)
    tally = Tally()
    checked = restarted = 0
    sandbox.up()
    try:
        s3 = json.loads(sandbox.cli("s3", "up", "--port", "0", timeout=900))
        hub = sandbox.start_hub(s3, max_scale=3)
        revision = hub["status"]["latestReadyRevisionName"]
        host = hub["status"]["url"].split("://", 1)[1]
        print(f"hub revision {revision} on S3 ({s3['endpoint']}), max-scale 3, target 1: loading it", flush=True)
        checked = asyncio.run(asyncio.wait_for(load(sandbox, revision, host, args, tally), timeout=args.timeout))
        pods = sandbox.hub_pods(revision)
        # The killed process was replaced: its pod restarted it in place, and every pod is Ready again.
        deadline = time.monotonic() + 60
        while not (all(ready(p) for p in pods) and restarts(pods) >= 1) and time.monotonic() < deadline:
            time.sleep(0.5)
            pods = sandbox.hub_pods(revision)
        restarted = restarts(pods)
        print(f"  {len(pods)} hub pods, {sum(ready(p) for p in pods)} ready, {restarted} restart(s)", flush=True)
        tally.read_served(sandbox, (p["metadata"]["name"] for p in pods))
    finally:
        if not args.keep:
            sandbox.down()  # stops the S3 server too
            if not args.state_dir:
                shutil.rmtree(state_dir, ignore_errors=True)
    return report(
        "sandbox",
        args,
        tally,
        checked,
        started,
        "" if restarted >= 1 else "the killed hub process was not restarted",
    )


def report(  # noqa: PLR0917 (the summary of everything the run counted)
    label: str,
    args: argparse.Namespace,
    tally: Tally,
    checked: int,
    started: float,
    replaced: str,
) -> int:
    times = served_times(tally.served)
    at_once = replicas_at_once(times)
    first = min((found[0] for found in times.values()), default=0.0)
    for pod, found in sorted(times.items()):
        print(
            f"  {pod}: {len(found)} load requests, from +{found[0] - first:.2f} s to +{found[-1] - first:.2f} s",
            flush=True,
        )
    if tally.killed_at and times:
        print(f"  the kill at +{tally.killed_at - first:.2f} s", flush=True)
    lost = len(tally.acknowledged) - checked
    for error in tally.errors[:10]:
        print(f"  error: {error}", flush=True)
    print(f"  retried: {tally.push_retries} pushes, {tally.pull_retries} pulls", flush=True)
    problems = []
    if at_once < 2:
        problems.append(
            f"at most {at_once} replica(s) served the load at the same time ({len(times)} pod(s) served it at "
            "all; a killed pod and its replacement are one replica, not two): the hub did not scale out"
        )
    if tally.errors or lost or len(tally.killed) != 1 or tally.pushes != args.pushers * args.pushes:
        problems.append("errors, lost images, missing pushes or no kill")
    if replaced:
        problems.append(replaced)
    for problem in problems:
        print(f"  FAILED: {problem}", flush=True)
    print(
        f"hub-scale-demo ({label}): replicas served at once={at_once} pods served={len(times)} "
        f"pushes={tally.pushes} pulls={tally.pulls} errors={len(tally.errors)} digests checked={checked} "
        f"killed={len(tally.killed)} lost={lost} in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return 1 if problems else 0


def read_env(path: Path) -> dict[str, str]:
    """KEY=value lines of demo.env (values may be single-quoted, as the cluster writes them)."""
    found = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            found[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return found


def run_inside_cluster(script: Path, argv: list[str]) -> int:
    """On the host: the S3 endpoint and keys from ``knlab-cluster s3``, then ``script argv --inside``
    inside the cluster's network namespace (the keys go through the environment, never a command
    line); its exit code."""
    if not CLUSTER_ENV.is_file():
        raise DemoError(f"{CLUSTER_ENV} is missing: is the cluster up (make cluster)?")
    done = subprocess.run([str(CLUSTER_CLI), "s3"], check=False, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DemoError(f"knlab-cluster s3 failed: {done.stderr.strip()[-500:]}")
    env = dict(os.environ, **{S3_ENV: done.stdout})
    inside = [str(CLUSTER_CLI), "exec", "--", sys.executable, str(script.resolve()), *argv, "--inside"]
    return subprocess.run(inside, check=False, env=env, stdin=subprocess.DEVNULL).returncode


def inside_cluster(prefix: str) -> tuple[Cluster, dict]:
    """Inside the namespace: the cluster (a new work directory) and the S3 server's endpoint and keys."""
    s3 = json.loads(os.environ.pop(S3_ENV))
    return Cluster(Path(tempfile.mkdtemp(prefix=prefix)), read_env(CLUSTER_ENV)), s3


def run_cluster(args: argparse.Namespace) -> int:
    """Inside the cluster's network namespace: a hub of its own on the cluster's S3 server."""
    started = time.monotonic()
    cluster, s3 = inside_cluster("knlab-hub-scale-")
    tally = Tally()
    checked = 0
    replaced = "the killed hub pod was not replaced by a ready one"
    try:
        hub = cluster.start_hub(s3, args.max_scale)
        revision = hub["status"]["latestReadyRevisionName"]
        host = hub["status"]["url"].split("://", 1)[1]
        print(
            f"hub {HUB} revision {revision} on S3 ({s3['endpoint']}), max-scale {args.max_scale}, target 1, "
            f"through the ingress {cluster.info['gateway']} as {host}: loading it",
            flush=True,
        )
        checked = asyncio.run(asyncio.wait_for(load(cluster, revision, host, args, tally), timeout=args.timeout))
        killed_pods = {name.split()[2] for name in tally.killed}
        pods = cluster.hub_pods(revision)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if pods and all(ready(p) for p in pods) and not killed_pods & {p["metadata"]["name"] for p in pods}:
                replaced = ""
                break
            time.sleep(1)
            pods = cluster.hub_pods(revision)
        print(f"  {len(pods)} hub pods, {sum(ready(p) for p in pods)} ready, the killed one gone", flush=True)
        tally.read_served(cluster, (p["metadata"]["name"] for p in pods))
    finally:
        if not args.keep:
            try:
                cluster.remove_hub()
            except DemoError as error:
                print(f"  cleanup: {error}", file=sys.stderr, flush=True)
        shutil.rmtree(cluster.work_dir, ignore_errors=True)
    return report("cluster", args, tally, checked, started, replaced)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--target", default="sandbox", choices=("sandbox", "cluster"))
    parser.add_argument("--pushers", type=int, default=6)
    parser.add_argument("--pushes", type=int, default=5, help="images each pusher pushes")
    parser.add_argument("--pullers", type=int, default=4)
    parser.add_argument("--size", type=int, default=512 * 1024, help="bytes of unique data per image")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the load may take at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state-dir", default="", help="the sandbox's state (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox and the S3 server running")
    parser.add_argument("--max-scale", type=int, default=3, help="the hub's max-scale (cluster only)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        if args.target == "cluster":
            return run_cluster(args) if args.inside else run_inside_cluster(Path(__file__), raw)
        return run(args)
    except (DemoError, TimeoutError, subprocess.TimeoutExpired) as error:
        print(f"hub-scale-demo ({args.target}): FAILED: {error or 'the load did not finish in time'}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
