"""The hub: the real CNCF distribution registry (Debian's ``/usr/bin/docker-registry``) as a process.

What the `registry` image does in a pod, done with the same software on the host:

- The config file is ours (FACTS §4.5: Debian's stock config enables htpasswd auth with a directory
  as the password file, which fails every request). It matches the `registry:2` image's: filesystem
  storage at the container's ``/var/lib/registry``, deletes enabled, an in-memory blob descriptor
  cache, no auth.
- The container's ``REGISTRY_*`` variables go to the process unchanged and the registry applies
  them itself, with the 2.8 rules (FACTS §4.2: lexically sorted, lists only as YAML strings).
  Values that are container paths are first mapped to the host: a path under a volume mount to the
  volume's directory (so ``REGISTRY_AUTH_HTPASSWD_PATH`` in a mounted Secret is the materialised
  file), any other absolute path into the container's scratch filesystem.
- ``REGISTRY_HTTP_ADDR`` is always ours, ``127.0.0.1:<free port>``: in a pod the port belongs to
  the pod's own network namespace, here every process shares the loopback.
- ``REGISTRY_STORAGE=s3`` (with ``REGISTRY_STORAGE_S3_*``) replaces our config's whole storage
  map, as in the image (FACTS §4.2), so the hub keeps its images in that bucket; its
  ``ROOTDIRECTORY`` is a key prefix in the bucket and is passed unchanged.
- Ready means ``GET /v2/`` answers 200 or 401 (the API is up and maybe wants credentials).

Built by the runtime (`Runtime.start` for the hub image), never by server.py directly::

    hub = await start_registry(key, env=container_env, mounts={"/var/lib/registry": pvc_dir},
                               scratch=tmp_dir, log_path=log_path, pid_dir=pid_dir)
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import aiohttp

from .processes import ChildProcess, exit_reason, free_port, log_tail, spawn, terminate

REGISTRY_STORAGE_PATH = "/var/lib/registry"
# Where the registry:2 and registry:3 images keep their config; a volume there would replace ours.
IMAGE_CONFIG_DIRS = ("/etc/docker/registry", "/etc/distribution")
READY_TIMEOUT = 30.0
HOST = "127.0.0.1"


class RegistryStartError(Exception):
    """The registry could not be started or did not become ready; ``reason`` is a one-word cause."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def registry_binary() -> Path:
    """The binary to run: ``$KNLAB_DOCKER_REGISTRY``, else ``docker-registry`` on PATH, else the Debian path."""
    found = os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry") or "/usr/bin/docker-registry"
    path = Path(found)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RegistryStartError(
            "RegistryNotInstalled", "docker-registry is not installed: apt-get install docker-registry"
        )
    return path


def registry_config(port: int, storage: Path) -> dict:
    """Our config: the registry:2 image's settings with host paths and a loopback address."""
    return {
        "version": "0.1",
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f"{HOST}:{port}",
            # One process, but a fixed secret silences the "No HTTP secret provided" warning.
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }


class PathMapper:
    """Maps container paths to host paths: volume mounts first (longest wins), else the scratch root."""

    def __init__(self, mounts: Mapping[str, Path], scratch: Path):
        self._mounts = sorted(
            ((PurePosixPath(path), Path(host)) for path, host in mounts.items()),
            key=lambda item: len(item[0].parts),
            reverse=True,
        )
        self.scratch = scratch

    def mounted(self, container_path: str) -> Path | None:
        path = PurePosixPath(container_path)
        for mount, host in self._mounts:
            if path == mount or mount in path.parents:
                return host.joinpath(*path.relative_to(mount).parts)
        return None

    def host_path(self, container_path: str) -> Path:
        mounted = self.mounted(container_path)
        if mounted is not None:
            return mounted
        return self.scratch.joinpath(*PurePosixPath(container_path).relative_to("/").parts)


# Settings whose value is a file or directory in the container (http.prefix, a URL path, is not).
PATH_SETTING_SUFFIXES = ("_PATH", "_ROOTDIRECTORY", "_ROOTCERTBUNDLE", "_CERTIFICATE", "_KEY", "_CLIENTCAS")
ROOTDIRECTORY_SETTING = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"


# Object storage settings are keys in a bucket, never files (REGISTRY_STORAGE_S3_ROOTDIRECTORY).
OBJECT_STORAGE_PREFIXES = ("REGISTRY_STORAGE_S3_", "REGISTRY_STORAGE_S3AWS_")


def _is_path_setting(name: str, value: str) -> bool:
    upper = name.upper()
    return (
        value.startswith("/")
        and upper.startswith("REGISTRY_")
        and upper.endswith(PATH_SETTING_SUFFIXES)
        and not upper.startswith(OBJECT_STORAGE_PREFIXES)
    )


def check_container(env: Mapping[str, str], mounts: Mapping[str, Path]) -> None:
    """Refuse what the sandbox cannot honour, rather than run something else under the same name."""
    for mount in mounts:
        for config_dir in IMAGE_CONFIG_DIRS:
            if mount == config_dir or mount.startswith(config_dir + "/"):
                raise RegistryStartError(
                    "UnsupportedConfiguration",
                    f"a volume mounted at {mount} would replace the registry's config file; the sandbox runs "
                    "the hub with its own config, so configure it with REGISTRY_* environment variables",
                )
    if any(name.upper().startswith("REGISTRY_HTTP_TLS") for name in env):
        raise RegistryStartError(
            "UnsupportedConfiguration",
            "REGISTRY_HTTP_TLS_* makes the registry serve HTTPS, but Knative's ingress (and the sandbox "
            "gateway) talks plain HTTP to the container",
        )


def registry_environment(env: Mapping[str, str], paths: PathMapper, port: int) -> dict[str, str]:
    """The process environment: the container's variables, container paths mapped, our address."""
    result = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(paths.scratch / "root")}
    for name, value in env.items():
        result[name] = str(paths.host_path(value)) if _is_path_setting(name, value) else value
    result["REGISTRY_HTTP_ADDR"] = f"{HOST}:{port}"
    return result


@dataclass
class RunningRegistry:
    """A registry process that answered ``GET /v2/``."""

    child: ChildProcess
    host: str
    port: int
    storage: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await terminate(self.child)


async def start_registry(
    key: str,
    *,
    env: Mapping[str, str],
    mounts: Mapping[str, Path],
    scratch: Path,
    log_path: Path,
    pid_dir: Path | None,
    scratch_dirs: list[Path] | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> RunningRegistry:
    """Run the registry for one pod and return once its API answers.

    ``mounts`` maps container mount paths to host directories; ``scratch`` is the container's own
    filesystem (deleted with it). ``scratch_dirs`` are removed when the process stops (defaults to
    ``[scratch]``). Raises `RegistryStartError`.
    """
    binary = registry_binary()
    check_container(env, mounts)
    paths = PathMapper(mounts, scratch)
    storage_setting = {name.upper(): value for name, value in env.items()}.get(ROOTDIRECTORY_SETTING)
    if not (storage_setting or "").startswith("/"):
        storage_setting = REGISTRY_STORAGE_PATH
    storage = paths.host_path(storage_setting)
    storage.mkdir(parents=True, exist_ok=True)
    (scratch / "root").mkdir(parents=True, exist_ok=True)
    port = free_port(HOST)
    config_path = scratch / "etc" / "docker" / "registry" / "config.yml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML; the registry reads it as its config file.
    config_path.write_text(json.dumps(registry_config(port, storage), indent=2))
    child = await spawn(
        key,
        [str(binary), "serve", str(config_path)],
        env=registry_environment(env, paths, port),
        cwd=scratch,
        log_path=log_path,
        pid_dir=pid_dir,
        scratch_dirs=[scratch] if scratch_dirs is None else scratch_dirs,
    )
    running = RunningRegistry(child, HOST, port, storage)
    try:
        await _wait_until_ready(running, ready_timeout)
    except BaseException:
        await terminate(child)
        raise
    return running


async def _wait_until_ready(registry: RunningRegistry, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    probe_timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=probe_timeout) as session:
        while time.monotonic() < deadline:
            if registry.child.returncode is not None:
                raise RegistryStartError(
                    exit_reason(registry.child.returncode),
                    f"Container failed with: {log_tail(registry.child.log_path)}",
                )
            try:
                async with session.get(f"{registry.url}/v2/") as response:
                    if response.status in (200, 401):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise RegistryStartError(
        "ProgressDeadlineExceeded",
        f"Initial scale was never achieved: docker-registry did not answer GET /v2/ within {timeout:g}s: "
        f"{log_tail(registry.child.log_path)}",
    )
