"""The container runtime of the sandbox: local processes stand in for pods.

Two kinds of image can run, and nothing else is pretended:

- The hub image (``registry``, any tag, any registry host: ``docker.io/library/registry:2``,
  ``registry:3``…) runs the real distribution registry through `registry_process`.
- An image that a sandbox registry holds (a hub Knative Service, reached through the gateway as a
  pod would reach it, or a plain ``127.0.0.1:<port>``/``localhost:<port>`` registry) and whose
  command runs Python is pulled over the registry API (`images`), copied into a fresh container
  filesystem and run with this machine's ``python3``.

Kubernetes semantics kept: ``command``/``args`` replace the image's Entrypoint/Cmd the way a
kubelet does; env = image Env, then the container's env, then what the caller adds (Knative's
``PORT``, ``K_SERVICE``…); the working directory and absolute paths in the arguments are mapped
into the container filesystem, or into a volume when a volume is mounted there. What is not kept,
and why: the process sees the host's filesystem around those mapped paths (no mount namespace),
runs as the sandbox's user (the image's ``User`` is ignored), and listens on a free loopback port
that the runtime puts in ``PORT`` (pods have a network namespace each, processes share loopback);
``HOST`` is set to ``127.0.0.1`` so that a server which reads it binds loopback only. Cluster-local
names do not resolve on the machine, so every process (the hub too) gets ``http_proxy``/``HTTP_PROXY``
at the gateway and ``no_proxy``/``NO_PROXY`` for loopback (`proxy_environment`).

Failures are `RuntimeFailure` with the reason Knative would put on the Revision: an image the
registry lacks is ``ContainerMissing`` (``Unable to fetch image "<image>": failed to resolve
image to digest: <why>``), a process that exits before it listens is ``ExitCode<N>``
(``Container failed with: <last log lines>``), an image the sandbox cannot run is
``UnsupportedImage``.

Volumes: ``persistentVolumeClaim`` → ``settings.volume_dir(namespace, claimName)`` (kept),
``emptyDir`` → a directory removed with the pod, ``configMap``/``secret``/``projected`` → the
directory the caller materialised for that volume name (``volume_sources``). Env ``valueFrom`` and
``envFrom`` are resolved by the caller too, and passed in ``env``.

server.py builds it after the gateway and before the controllers::

    runtime = Runtime(settings, gateway)
    runtime.stop_orphans()   # processes a killed server left behind (their records are in the state dir)
    runtime.on_exit = knative_controller.on_runtime_exit   # optional: key, RuntimeFailure; may be async
    ...
    await runtime.stop_all()
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from .gateway import Endpoint, Gateway
from .images import ImagePullError, ImageReference, PulledImage, pull_image, resolve_digest
from .processes import ChildProcess, exit_reason, free_port, log_tail, spawn, stop_recorded, terminate, wait_for_port
from .registry_client import docker_config_credentials, registry_address
from .registry_process import PathMapper, RegistryStartError, start_registry

HOST = "127.0.0.1"
# How long a started process may take to listen. None: until the caller gives up, which for a
# Revision is its progress deadline, as on a cluster (a readiness probe fails until then).
READY_TIMEOUT: float | None = None
HUB_REPOSITORIES = ("registry", "library/registry")
_PYTHON = re.compile(r"^python(?:3(?:\.\d+)?)?$")


class RuntimeFailure(Exception):
    """The pod could not be started; becomes a Revision condition (``reason``, ``message``)."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class SettingsLike(Protocol):
    run_dir: Path

    def volume_dir(self, namespace: str, pvc_name: str) -> Path: ...


ExitCallback = Callable[[str, RuntimeFailure], Any]


@dataclass
class _Pod:
    key: str
    child: ChildProcess
    endpoint: Endpoint
    image_digest: str | None
    stopping: bool = False
    watcher: asyncio.Task | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _PodPlan:
    """Everything one start needs, resolved from the pod spec."""

    key: str
    image: str
    reference: ImageReference
    container: Mapping[str, Any]
    env: dict[str, str]  # the container's literal env, then the caller's
    mounts: dict[str, Path]  # mount path in the container -> host directory
    scratch: Path  # the pod's own directory, removed when it stops
    log_path: Path
    pull_secrets: Sequence[Mapping[str, Any]]
    on_started: Callable[[], Awaitable[None]] | None = None


# What the proxy must not carry: loopback (the sandbox API, a process's own port).
NO_PROXY = "127.0.0.1,localhost,::1"


def proxy_environment(gateway_address: tuple[str, int]) -> dict[str, str]:
    """``http_proxy`` (both spellings) at the gateway, so a process reaches Services by cluster-local name.

    Pods resolve ``name.ns.svc.cluster.local`` through the cluster's DNS; processes here share the
    machine's resolver, which knows no such name. Python's urllib and Go's net/http send an
    absolute-form request to the proxy, and the gateway routes it by that host.
    """
    host, port = gateway_address[0], gateway_address[1]
    if host in ("0.0.0.0", "", "::"):
        host = HOST
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return {"http_proxy": url, "HTTP_PROXY": url, "no_proxy": NO_PROXY, "NO_PROXY": NO_PROXY}


def machine_python() -> str:
    """The machine's own ``python3`` (not a virtualenv's), else the interpreter running the sandbox."""
    return shutil.which("python3", path=os.defpath) or sys.executable


def is_hub_image(reference: ImageReference) -> bool:
    return reference.repository in HUB_REPOSITORIES


def kubernetes_argv(container: Mapping[str, Any], entrypoint: Sequence[str] | None, cmd: Sequence[str] | None):
    """The kubelet's rule: ``command`` replaces Entrypoint (and drops Cmd), ``args`` replaces Cmd."""
    command = container.get("command")
    args = container.get("args")
    if command:
        return [str(item) for item in command] + [str(item) for item in args or []]
    return [str(item) for item in entrypoint or []] + [str(item) for item in (args if args else cmd or [])]


def python_argv(argv: Sequence[str], python: str) -> list[str] | None:
    """``argv`` with its interpreter replaced by ``python``; None if it does not run Python."""
    if not argv:
        return None
    program = PurePosixPath(argv[0]).name
    if _PYTHON.match(program):
        return [python, *argv[1:]]
    if program.endswith(".py"):
        return [python, *argv]
    return None


def registry_credentials(pull_secrets: Sequence[Mapping[str, Any]], host: str) -> tuple[str, str] | None:
    """Username and password for ``host`` from docker config JSON documents (``.dockerconfigjson``)."""
    for document in pull_secrets:
        credentials = docker_config_credentials(document, host)
        if credentials is not None:
            return credentials
    return None


class Runtime:
    """Starts and stops pod processes; see the module docstring for how server.py builds it."""

    def __init__(
        self,
        settings: SettingsLike,
        gateway: Gateway,
        *,
        on_exit: ExitCallback | None = None,
        ready_timeout: float | None = READY_TIMEOUT,
    ):
        self.settings = settings
        self.gateway = gateway
        self.on_exit = on_exit
        self.ready_timeout = ready_timeout
        self._pods: dict[str, _Pod] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def pid_dir(self) -> Path:
        return self.settings.run_dir / "pids"

    @property
    def image_cache(self) -> Path:
        return self.settings.run_dir / "images"

    def stop_orphans(self) -> list[int]:
        """Stop processes recorded by an earlier server that did not stop them (kill -9)."""
        return stop_recorded(self.pid_dir)

    def image_digest(self, key: str) -> str | None:
        """The digest the pod's image reference resolved to when it was pulled: the manifest's, or the
        index's for a multi-platform image (None for the hub, which is not pulled, or an unknown key)."""
        pod = self._pods.get(key)
        return pod.image_digest if pod else None

    def endpoint(self, key: str) -> Endpoint | None:
        pod = self._pods.get(key)
        return pod.endpoint if pod else None

    async def resolve(self, image: str, pull_secrets: Sequence[Mapping[str, Any]] = ()) -> str | None:
        """Knative's tag-to-digest resolution: the digest ``image`` names now, or None when it is not
        resolved (a digest already, or the hub image, which the sandbox runs without pulling).

        Raises `RuntimeFailure` ``ContainerMissing`` when no registry in the sandbox has the image.
        """
        try:
            reference = ImageReference.parse(image)
        except ImagePullError as error:
            raise _missing(image, error.message) from None
        if reference.digest or is_hub_image(reference):
            return None
        registry = self._registry(image, reference)
        credentials = registry_credentials(pull_secrets, reference.host)
        try:
            return await resolve_digest(image, registry, credentials=credentials)
        except ImagePullError as error:
            raise _missing(image, error.message) from None

    # -- start ----------------------------------------------------------------------------------

    async def start(
        self,
        key: str,
        namespace: str,
        pod_spec: Mapping[str, Any],
        env: Mapping[str, str],
        log_path: Path,
        *,
        volume_sources: Mapping[str, Path] | None = None,
        pull_secrets: Sequence[Mapping[str, Any]] = (),
        on_started: Callable[[], Awaitable[None]] | None = None,
    ) -> Endpoint:
        """Run the pod's container; return where it listens once it accepts connections.

        ``key`` names the pod (a later start with the same key replaces it). ``env`` is added last
        (Knative's variables, resolved ``valueFrom``/``envFrom``). ``volume_sources`` maps volume
        names of configMap/secret/projected volumes to directories holding their files.
        ``pull_secrets`` are the pod's imagePullSecrets as parsed ``.dockerconfigjson`` documents.
        ``on_started`` is awaited once the process runs, before it listens (kubelet's Running, not
        yet Ready).
        """
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._stop_locked(key)
            container = _serving_container(pod_spec)
            image = str(container.get("image") or "")
            try:
                reference = ImageReference.parse(image)
            except ImagePullError as error:
                raise _missing(image, error.message) from None
            scratch = Path(tempfile.mkdtemp(prefix=_scratch_prefix(key), dir=self._pods_dir()))
            try:
                volumes = self._volume_dirs(namespace, pod_spec, volume_sources or {}, scratch)
                plan = _PodPlan(
                    key=key,
                    image=image,
                    reference=reference,
                    container=container,
                    env=_container_env(container, env),
                    mounts=_mounts(container, volumes),
                    scratch=scratch,
                    log_path=log_path,
                    pull_secrets=pull_secrets,
                    on_started=on_started,
                )
                pod = await (self._start_hub(plan) if is_hub_image(reference) else self._start_python(plan))
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            self._pods[key] = pod
            pod.watcher = asyncio.create_task(self._watch_exit(pod), name=f"runtime-exit-{key}")
            return pod.endpoint

    def _pods_dir(self) -> Path:
        path = self.settings.run_dir / "pods"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _volume_dirs(
        self, namespace: str, pod_spec: Mapping[str, Any], sources: Mapping[str, Path], scratch: Path
    ) -> dict[str, Path]:
        result: dict[str, Path] = {}
        for volume in pod_spec.get("volumes") or []:
            name = str(volume.get("name"))
            if volume.get("persistentVolumeClaim"):
                claim = str(volume["persistentVolumeClaim"].get("claimName"))
                directory = self.settings.volume_dir(namespace, claim)
                directory.mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in volume:
                directory = scratch / "volumes" / name
                directory.mkdir(parents=True)
            elif any(kind in volume for kind in ("configMap", "secret", "projected")):
                if name not in sources:
                    raise RuntimeFailure(
                        "CreateContainerConfigError", f"the files of volume {name!r} were not provided to the runtime"
                    )
                directory = Path(sources[name])
            else:
                kinds = ", ".join(sorted(set(volume) - {"name"})) or "none"
                raise RuntimeFailure(
                    "UnsupportedVolume",
                    f"volume {name!r} is of a type the sandbox cannot provide ({kinds}); it supports "
                    "persistentVolumeClaim, emptyDir, configMap, secret and projected",
                )
            result[name] = directory
        return result

    async def _start_hub(self, plan: _PodPlan) -> _Pod:
        if plan.container.get("command") or plan.container.get("args"):
            raise RuntimeFailure(
                "UnsupportedImage",
                "the sandbox runs the registry image with its own config and entrypoint; "
                "container command and args cannot be honoured for it",
            )
        try:
            hub = await start_registry(
                plan.key,
                env={**proxy_environment(self.gateway.address), **plan.env},
                mounts=plan.mounts,
                scratch=plan.scratch / "rootfs",
                log_path=plan.log_path,
                pid_dir=self.pid_dir,
                scratch_dirs=[plan.scratch],
                **({} if self.ready_timeout is None else {"ready_timeout": self.ready_timeout}),
            )
        except RegistryStartError as error:
            raise RuntimeFailure(error.reason, error.message) from None
        return _Pod(plan.key, hub.child, Endpoint(hub.host, hub.port), None)

    async def _start_python(self, plan: _PodPlan) -> _Pod:
        image, container, log_path = plan.image, plan.container, plan.log_path
        pulled = await self._pull(image, plan.reference, plan.pull_secrets)
        argv = kubernetes_argv(container, pulled.config.entrypoint, pulled.config.cmd)
        python = machine_python()
        command = python_argv(argv, python)
        if command is None:
            shown = " ".join(argv) or "(no command)"
            raise RuntimeFailure(
                "UnsupportedImage",
                f"image {image!r} runs {shown!r}: the sandbox can run only Python images (a command that starts "
                "with python, python3, python3.X or a .py script) and the registry image (the hub)",
            )
        rootfs = plan.scratch / "rootfs"
        await asyncio.to_thread(shutil.copytree, pulled.rootfs, rootfs, symlinks=True)
        paths = PathMapper(plan.mounts, rootfs)
        command = [command[0], *(_map_arg(arg, paths) for arg in command[1:])]
        working_dir = str(container.get("workingDir") or pulled.config.working_dir or "/")
        cwd = paths.host_path(working_dir if working_dir.startswith("/") else f"/{working_dir}")
        cwd.mkdir(parents=True, exist_ok=True)  # as container runtimes create a missing WorkingDir
        port = free_port(HOST)
        process_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(paths.host_path("/root"))}
        process_env.update(proxy_environment(self.gateway.address))  # the image's or container's own win
        # Image Env first, then the container's and the caller's (plan.env holds both).
        for name, value in {**pulled.config.env_dict(), **plan.env}.items():
            process_env[name] = value if name == "PATH" else _map_env_value(value, paths)
        process_env["PORT"] = str(port)
        # Processes share the machine's network, not a pod's: tell the app to bind loopback only
        # (the demo app and other HOST-aware servers honour it; Knative itself sets no HOST).
        process_env["HOST"] = HOST
        process_env["PYTHONUNBUFFERED"] = "1"
        child = await spawn(
            plan.key,
            command,
            env=process_env,
            cwd=cwd,
            log_path=log_path,
            pid_dir=self.pid_dir,
            scratch_dirs=[plan.scratch],
        )
        try:
            if plan.on_started is not None:
                await plan.on_started()
            ready = await wait_for_port(
                child, HOST, port, math.inf if self.ready_timeout is None else self.ready_timeout
            )
        except BaseException:  # cancelled (the caller's deadline): the process must not outlive the start
            await terminate(child)
            raise
        if not ready:
            exited = child.returncode is not None
            await terminate(child)
            if exited:
                raise RuntimeFailure(exit_reason(child.returncode), f"Container failed with: {log_tail(log_path)}")
            raise RuntimeFailure(
                "ProgressDeadlineExceeded",
                f"Initial scale was never achieved: the container did not listen on PORT={port} "
                f"within {self.ready_timeout:g}s",
            )
        return _Pod(plan.key, child, Endpoint(HOST, port), pulled.resolved_digest or pulled.digest)

    async def _pull(
        self, image: str, reference: ImageReference, pull_secrets: Sequence[Mapping[str, Any]]
    ) -> PulledImage:
        registry = self._registry(image, reference)
        credentials = registry_credentials(pull_secrets, reference.host)
        try:
            return await pull_image(image, registry, self.image_cache, credentials=credentials)
        except ImagePullError as error:
            raise _missing(image, error.message) from None

    def _registry(self, image: str, reference: ImageReference) -> tuple[str, int]:
        # Loopback registries are reached directly; any other host must be a Knative Service in the sandbox.
        registry = registry_address(reference.host, self.gateway.resolve)
        if registry is None:
            raise _missing(
                image,
                f"no registry answers for {reference.host!r} in the sandbox: it has no network and reaches only "
                "registries that run in it (a hub Knative Service) or listen on 127.0.0.1",
            )
        return registry

    # -- stop -----------------------------------------------------------------------------------

    async def stop(self, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            await self._stop_locked(key)

    async def _stop_locked(self, key: str) -> None:
        pod = self._pods.pop(key, None)
        if pod is None:
            return
        pod.stopping = True
        await terminate(pod.child)
        if pod.watcher is not None:
            await asyncio.gather(pod.watcher, return_exceptions=True)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(key) for key in list(self._pods)), return_exceptions=True)

    async def _watch_exit(self, pod: _Pod) -> None:
        """Report a process that ends on its own (a crash after it was ready), as ContainerHealthy would."""
        returncode = await pod.child.process.wait()
        if pod.stopping:
            return
        if self._pods.get(pod.key) is pod:
            del self._pods[pod.key]
        await terminate(pod.child)  # its record and scratch dirs
        if self.on_exit is not None:
            failure = RuntimeFailure(exit_reason(returncode), f"Container failed with: {log_tail(pod.child.log_path)}")
            result = self.on_exit(pod.key, failure)
            if asyncio.iscoroutine(result):
                await result


def _scratch_prefix(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:60] + "-"


def _missing(image: str, why: str) -> RuntimeFailure:
    return RuntimeFailure(
        "ContainerMissing", f'Unable to fetch image "{image}": failed to resolve image to digest: {why}'
    )


def _serving_container(pod_spec: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = list(pod_spec.get("containers") or [])
    if not containers:
        raise RuntimeFailure("UnsupportedImage", "the pod has no container")
    if len(containers) > 1:
        raise RuntimeFailure("UnsupportedImage", "the sandbox runs one container per pod")
    return containers[0]


def _mounts(container: Mapping[str, Any], volumes: Mapping[str, Path]) -> dict[str, Path]:
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        name = str(mount.get("name"))
        if name not in volumes:
            raise RuntimeFailure("CreateContainerConfigError", f"volume mount refers to unknown volume {name!r}")
        host = volumes[name]
        sub_path = str(mount.get("subPath") or "")
        if sub_path:
            if ".." in PurePosixPath(sub_path).parts or sub_path.startswith("/"):
                raise RuntimeFailure("CreateContainerConfigError", f"invalid subPath {sub_path!r}")
            host = host / sub_path
        mounts[str(mount.get("mountPath"))] = host
    return mounts


def _container_env(container: Mapping[str, Any], extra: Mapping[str, str]) -> dict[str, str]:
    """The container's literal env plus the caller's; an unresolved ``valueFrom`` is an error.

    An unresolved reference marked ``optional`` (its ConfigMap, Secret or key is missing) leaves the
    variable unset, as kubelet does.
    """
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name = str(item.get("name"))
        if "valueFrom" in item and name not in extra:
            if _optional_reference(item["valueFrom"]):
                continue
            raise RuntimeFailure(
                "CreateContainerConfigError", f"env {name} uses valueFrom, which was not resolved for the runtime"
            )
        env[name] = str(item.get("value", ""))
    env.update(extra)
    return env


def _optional_reference(value_from: Any) -> bool:
    """True for a configMapKeyRef or secretKeyRef with ``optional: true``."""
    if not isinstance(value_from, Mapping):
        return False
    return any(
        isinstance(value_from.get(key), Mapping) and value_from[key].get("optional") is True
        for key in ("configMapKeyRef", "secretKeyRef")
    )


def _map_arg(arg: str, paths: PathMapper) -> str:
    """An absolute path into the image (or a volume) becomes the host path; anything else stays."""
    if not arg.startswith("/"):
        return arg
    mounted = paths.mounted(arg)
    if mounted is not None:
        return str(mounted)
    in_rootfs = paths.host_path(arg)
    return str(in_rootfs) if os.path.lexists(in_rootfs) else arg


def _map_env_value(value: str, paths: PathMapper) -> str:
    # Lists such as PYTHONPATH are mapped item by item; values that are not paths stay as they are.
    if not value.startswith("/"):
        return value
    return ":".join(_map_arg(part, paths) for part in value.split(":"))
