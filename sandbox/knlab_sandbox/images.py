"""Pull an image from a sandbox registry over the HTTP API v2 and unpack it into a root filesystem.

What a kubelet's container runtime does, minus the overlay mounts: resolve the reference to a
manifest (docker v2 or OCI; an index or manifest list picks linux/amd64, else its first entry),
fetch the config and layer blobs, check every digest, and apply the layers in order (whiteouts
``.wh.<name>`` delete a lower file, ``.wh..wh..opq`` empties a lower directory). Root filesystems
are cached under the state dir by manifest digest; a cached one is reused, never re-downloaded.

The runtime calls it; server.py never does::

    pulled = await pull_image(reference, Endpoint(host, port), settings.state_dir / "images",
                              credentials=("user", "password") or None)
    pulled.rootfs, pulled.config.cmd, pulled.digest
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import aiohttp

from .registry_client import (
    DIGEST_PATTERN,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    REPOSITORY_COMPONENT,
    TAG_PATTERN,
    Registry,
    RegistryConnection,
    basic_authorization,
    registry_errors,
    sha256_digest,
)

DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
GZIP_LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
)
PLAIN_LAYER_TYPES = ("application/vnd.oci.image.layer.v1.tar",)
DEFAULT_HOST = "docker.io"
WHITEOUT = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
CHUNK_SIZE = 256 * 1024
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=5)


class ImagePullError(Exception):
    """The image could not be resolved, fetched or unpacked; ``message`` says why in one line."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ImageReference:
    """``host/repository:tag`` or ``host/repository@sha256:…``, docker's parsing rules."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes into ``/v2/<repo>/manifests/<reference>``: the digest when there is one."""
        return self.digest or self.tag or "latest"

    @classmethod
    def parse(cls, image: str) -> ImageReference:
        text = image.strip()
        if not text or any(char.isspace() for char in text):
            raise ImagePullError(f"invalid image reference {image!r}")
        digest = None
        if "@" in text:
            text, digest = text.split("@", 1)
            if not DIGEST_PATTERN.match(digest):
                raise ImagePullError(f"invalid image reference {image!r}: bad digest {digest!r}")
        first, _, rest = text.partition("/")
        # Docker's rule: the first component is a registry host if it has a dot or a port, or is localhost.
        if rest and ("." in first or ":" in first or first == "localhost"):
            host, path = first, rest
        else:
            host, path = DEFAULT_HOST, text
        tag = None
        name, colon, maybe_tag = path.rpartition(":")
        if colon and "/" not in maybe_tag:
            path, tag = name, maybe_tag
            if not TAG_PATTERN.match(tag):
                raise ImagePullError(f"invalid image reference {image!r}: bad tag {tag!r}")
        if host == DEFAULT_HOST and "/" not in path:
            path = f"library/{path}"
        if not all(REPOSITORY_COMPONENT.match(part) for part in path.split("/")):
            raise ImagePullError(f"invalid image reference {image!r}: bad repository name {path!r}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(host, path, tag, digest)


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (``config`` in the OCI image config)."""

    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    user: str = ""

    @classmethod
    def from_blob(cls, blob: dict[str, Any]) -> ImageConfig:
        config = blob.get("config") or {}

        def strings(value: Any) -> tuple[str, ...] | None:
            return None if value is None else tuple(str(item) for item in value)

        return cls(
            env=strings(config.get("Env")) or (),
            cmd=strings(config.get("Cmd")),
            entrypoint=strings(config.get("Entrypoint")),
            working_dir=str(config.get("WorkingDir") or ""),
            exposed_ports=tuple(sorted(config.get("ExposedPorts") or {})),
            user=str(config.get("User") or ""),
        )

    def env_dict(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for item in self.env:
            name, _, value = item.partition("=")
            result[name] = value
        return result


@dataclass(frozen=True)
class PulledImage:
    reference: ImageReference
    digest: str  # of the manifest that was unpacked (the platform's, under an index)
    rootfs: Path
    config: ImageConfig
    layers: tuple[str, ...] = field(default=())
    # What the reference resolved to: the index's digest for a multi-platform image, else `digest`.
    # Knative reports it as a Revision's imageDigest and kubelet as a container's imageID.
    resolved_digest: str = ""


class _PullClient(RegistryConnection):
    async def _error(self, response: aiohttp.ClientResponse, what: str) -> ImagePullError:
        errors = registry_errors(await response.read())
        detail = errors[0] if errors else ""
        if response.status == 401 and not detail:
            detail = "UNAUTHORIZED: authentication required"
        detail = detail or (response.reason or "")
        return ImagePullError(f"GET {what}: {response.status} {detail}".rstrip())

    def _shown(self, path: str) -> str:
        return f"{self.registry.scheme}://{self.registry.name}{path}"

    async def manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest; the digest is checked against the body."""
        path = f"/v2/{repository}/manifests/{reference}"
        async with self.request("GET", path, headers={"Accept": ACCEPT}) as response:
            if response.status != 200:
                raise await self._error(response, self._shown(path))
            body = await response.read()
            media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest")
        digest = sha256_digest(body)
        for claimed in (header_digest, reference if reference.startswith("sha256:") else None):
            if claimed and claimed != digest:
                raise ImagePullError(f"manifest {repository}@{claimed} has digest {digest}")
        if not media_type or media_type == "application/json":
            media_type = json.loads(body).get("mediaType", "")
        return body, media_type, digest

    async def blob_to(self, repository: str, digest: str, sink: IO[bytes]) -> None:
        """Stream a blob into ``sink``, checking its digest on the way."""
        path = f"/v2/{repository}/blobs/{digest}"
        hasher = hashlib.sha256()
        async with self.request("GET", path) as response:
            if response.status != 200:
                raise await self._error(response, self._shown(path))
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                hasher.update(chunk)
                sink.write(chunk)
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise ImagePullError(f"blob {repository}@{digest} does not match its digest")


def _pick_platform(index: dict) -> dict:
    entries = index.get("manifests") or []
    if not entries:
        raise ImagePullError("the image index lists no manifests")
    for entry in entries:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return entry
    return entries[0]


async def pull_image(
    image: str,
    registry: tuple[str, int],
    cache_dir: Path,
    *,
    credentials: tuple[str, str] | None = None,
) -> PulledImage:
    """Pull ``image`` from the registry listening at ``registry`` (host, port) into ``cache_dir``.

    The request's Host header is the image's own registry host, as a client would send it.
    Raises `ImagePullError` with a one-line reason.
    """
    reference = ImageReference.parse(image)
    try:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, auto_decompress=False) as session:
            client = _PullClient(session, Registry(reference.host, registry))
            # Sent up front rather than after a 401 challenge: the sandbox's registries take basic auth only.
            client.authorization = basic_authorization(*credentials) if credentials else None
            return await _pull(client, reference, cache_dir)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ImagePullError(f"registry {reference.host} did not answer: {error or type(error).__name__}") from None


async def resolve_digest(image: str, registry: tuple[str, int], *, credentials: tuple[str, str] | None = None) -> str:
    """The digest ``image``'s tag names now (an index's own digest for a multi-platform image).

    What Knative's controller asks the registry before it makes a Deployment; no layer is fetched.
    Raises `ImagePullError` with a one-line reason.
    """
    reference = ImageReference.parse(image)
    try:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, auto_decompress=False) as session:
            client = _PullClient(session, Registry(reference.host, registry))
            client.authorization = basic_authorization(*credentials) if credentials else None
            _, _, digest = await client.manifest(reference.repository, reference.reference)
            return digest
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ImagePullError(f"registry {reference.host} did not answer: {error or type(error).__name__}") from None


async def _pull(client: _PullClient, reference: ImageReference, cache_dir: Path) -> PulledImage:
    body, media_type, digest = await client.manifest(reference.repository, reference.reference)
    resolved_digest = digest
    manifest = _json(body, "manifest")
    if media_type in INDEX_TYPES or "manifests" in manifest:
        chosen = _pick_platform(manifest)
        body, media_type, digest = await client.manifest(reference.repository, str(chosen.get("digest")))
        manifest = _json(body, "manifest")
    if manifest.get("schemaVersion") != 2 or "config" not in manifest:
        raise ImagePullError(f"unsupported manifest type {media_type or 'unknown'!r} (schema 1 images cannot be run)")

    target = cache_dir / digest.removeprefix("sha256:")
    if (target / "config.json").is_file() and (target / "rootfs").is_dir():
        return _cached(reference, digest, target, resolved_digest)

    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".pull-", dir=cache_dir))
    try:
        config_digest = str(manifest["config"].get("digest"))
        with (work / "config.json").open("wb") as sink:
            await client.blob_to(reference.repository, config_digest, sink)
        config_blob = _json((work / "config.json").read_bytes(), "image config")
        diff_ids = (config_blob.get("rootfs") or {}).get("diff_ids") or []
        layers = manifest.get("layers") or []
        rootfs = work / "rootfs"
        rootfs.mkdir()
        for position, descriptor in enumerate(layers):
            layer_path = work / f"layer-{position}"
            with layer_path.open("wb") as sink:
                await client.blob_to(reference.repository, str(descriptor.get("digest")), sink)
            expected_diff_id = diff_ids[position] if len(diff_ids) == len(layers) else None
            await asyncio.to_thread(
                apply_layer, layer_path, str(descriptor.get("mediaType", "")), rootfs, expected_diff_id
            )
            layer_path.unlink()
        (work / "manifest.json").write_bytes(body)
        with contextlib.suppress(OSError):  # another pull of the same digest finished first
            work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _cached(reference, digest, target, resolved_digest)


def _cached(reference: ImageReference, digest: str, target: Path, resolved_digest: str) -> PulledImage:
    config_blob = _json((target / "config.json").read_bytes(), "image config")
    manifest = _json((target / "manifest.json").read_bytes(), "manifest")
    layers = tuple(str(layer.get("digest")) for layer in manifest.get("layers") or [])
    config = ImageConfig.from_blob(config_blob)
    return PulledImage(reference, digest, target / "rootfs", config, layers, resolved_digest)


def _json(body: bytes, what: str) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        raise ImagePullError(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise ImagePullError(f"the {what} is not a JSON object")
    return value


# -- unpacking ----------------------------------------------------------------------------------


class _HashingReader:
    """Wraps the decompressed layer stream to compute its diff_id while tarfile reads it."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.hasher = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.hasher.update(data)
        return data


def apply_layer(layer_path: Path, media_type: str, rootfs: Path, expected_diff_id: str | None = None) -> None:
    """Apply one layer tarball (gzip or plain tar) to ``rootfs``, checking its diff_id when given."""
    if media_type not in PLAIN_LAYER_TYPES and media_type not in GZIP_LAYER_TYPES and media_type:
        raise ImagePullError(f"unsupported layer media type {media_type!r}")
    compressed = media_type not in PLAIN_LAYER_TYPES
    try:
        with gzip.open(layer_path, "rb") if compressed else layer_path.open("rb") as raw:
            hashing = _HashingReader(raw)
            with tarfile.open(fileobj=hashing, mode="r|") as tar:
                _apply_stream(tar, rootfs)
            # tarfile stops at the end-of-archive marker; the diff_id covers any padding after it.
            while hashing.read(CHUNK_SIZE):
                pass
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        raise ImagePullError(f"cannot unpack layer {layer_path.name}: {error}") from None
    if expected_diff_id and f"sha256:{hashing.hasher.hexdigest()}" != expected_diff_id:
        raise ImagePullError(f"layer {layer_path.name} does not match diff_id {expected_diff_id}")


def _apply_stream(tar: tarfile.TarFile, rootfs: Path) -> None:
    """Extract a streamed layer. Whiteouts are handled when met: within one layer tar, a whiteout
    and a file of the same path never coexist, and an opaque marker only removes lower content, so
    files of this layer extracted before their directory's marker are kept (they are remembered)."""
    written: set[PurePosixPath] = set()
    for member in tar:
        path = _safe_path(member.name)
        if path is None:
            continue
        if path.name == OPAQUE_WHITEOUT:
            _empty_directory(rootfs, path.parent, keep=written)
            continue
        if path.name.startswith(WHITEOUT):
            _remove(rootfs / path.parent / path.name[len(WHITEOUT) :])
            continue
        if member.ischr() or member.isblk() or member.isfifo():
            continue  # device nodes belong to the runtime, not to an app's files
        destination = rootfs / path
        _make_room(destination, member)
        # `tar` filter: no absolute names, nothing written outside rootfs, no setuid bits.
        tar.extract(member, rootfs, set_attrs=True, filter="tar", numeric_owner=True)
        written.add(path)


def _safe_path(name: str) -> PurePosixPath | None:
    parts = [part for part in PurePosixPath(name.lstrip("/")).parts if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _make_room(destination: Path, member: tarfile.TarInfo) -> None:
    """An upper layer replaces what a lower one had at the same path (but merges directories)."""
    if not os.path.lexists(destination):
        return
    if member.isdir() and destination.is_dir() and not destination.is_symlink():
        return
    _remove(destination)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _empty_directory(rootfs: Path, directory: PurePosixPath, keep: set[PurePosixPath]) -> None:
    host_dir = rootfs / directory
    if not host_dir.is_dir() or host_dir.is_symlink():
        return
    for child in host_dir.iterdir():
        relative = directory / child.name
        if relative in keep or any(relative in kept.parents for kept in keep):
            continue
        _remove(child)
