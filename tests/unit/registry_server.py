"""A real CNCF distribution registry for tests: Debian's ``/usr/bin/docker-registry`` on loopback.

Nothing here is faked: :func:`start_registry` runs the registry binary with a config file of its
own (Debian's stock ``/etc/docker/registry/config.yml`` turns on htpasswd auth with a directory as
the password file, which fails every request), on a free ``127.0.0.1`` port, with storage in a
directory the caller owns. Optional basic auth uses a bcrypt htpasswd file, the only hash the
registry accepts. Images are pushed over the HTTP API v2 exactly as a client would (blob upload
``POST``/``PATCH``/``PUT``, then a manifest ``PUT``), so whatever a test asks afterwards is answered
by the registry itself.

Use it from pytest (a module-scoped fixture keeps the suite fast: one process per test module)::

    from ansible_collections.knlab.serverless.tests.unit.registry_server import start_registry

    @pytest.fixture(scope="module")
    def registry(tmp_path_factory):
        with start_registry(tmp_path_factory.mktemp("registry"), auth=("alice", "wonderland")) as server:
            yield server

    def test_something(registry):
        image = registry.push_image("demo/hello", "v1", files={"app.py": b"print('hi')"})
        assert image.digest.startswith("sha256:")

or from any script (the sandbox tests, benchmarks) with the same context manager. Storage lives in
``<directory>/storage``, so starting again on the same directory keeps what was pushed (a PVC's
behaviour); :func:`make_tls_files` plus ``tls=`` gives an HTTPS registry with a private CA. The binary is
taken from ``$KNLAB_DOCKER_REGISTRY``, else ``docker-registry`` on ``PATH``, else
``/usr/bin/docker-registry``. Only the standard library and ``bcrypt`` (for auth) are needed.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

# Every manifest type a modern client accepts; the registry refuses to serve OCI manifests to a
# client that does not list them.
ACCEPT_ALL_MANIFESTS = ", ".join((DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))

STARTUP_TIMEOUT = 20.0
REQUEST_TIMEOUT = 10.0
# Go's bcrypt accepts cost 4, the minimum; a low cost keeps every authenticated request fast.
BCRYPT_COST = 4


class RegistryServerError(RuntimeError):
    """The registry did not start, or answered a push with something unexpected."""


@dataclass(frozen=True)
class PushedImage:
    """What a push stored, as the registry reported it."""

    repository: str
    tag: str | None
    digest: str
    media_type: str
    manifest: bytes
    blob_digests: tuple[str, ...] = ()


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_binary() -> str:
    return os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port(host: str = "127.0.0.1") -> int:
    # The port is released before the registry binds it; another process taking it in between is
    # possible but shows up as a clear startup failure, not as a wrong answer.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def bcrypt_htpasswd_line(username: str, password: str) -> str:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_COST)).decode()
    return f"{username}:{hashed}\n"


def registry_config(
    *,
    port: int,
    storage_dir: Path,
    htpasswd: Path | None,
    realm: str,
    tls: TlsFiles | None = None,
    notifications: Sequence[Mapping] | None = None,
) -> dict:
    config: dict = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}, "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": f"127.0.0.1:{port}",
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls.certificate), "key": str(tls.key)}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": realm, "path": str(htpasswd)}}
    if notifications:
        config["notifications"] = {"endpoints": [dict(endpoint) for endpoint in notifications]}
    return config


# -- building images (no I/O: the sync client below and the sandbox tests' async one push them) --------


def layer_tarball(files: Mapping[str, bytes | None], *, directories: Sequence[str] = ()) -> tuple[bytes, str]:
    """A gzipped tar of ``directories`` then ``files``, byte-identical for identical input.

    A ``None`` content is a whiteout entry (``.wh.<name>``) deleting that path from lower layers.
    Returns (blob, diff_id).
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, content in sorted(files.items()):
            head, slash, base = name.rpartition("/")
            info = tarfile.TarInfo(name if content is not None else f"{head}{slash}.wh.{base}")
            data = content if content is not None else b""
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    uncompressed = raw.getvalue()
    compressed = gzip.compress(uncompressed, mtime=0)
    return compressed, sha256_digest(uncompressed)


@dataclass(frozen=True)
class ImageDocuments:
    """An image as a client pushes it: the layer blobs and the config blob, then the manifest."""

    layers: tuple[bytes, ...]
    config: bytes
    manifest: bytes
    media_type: str

    @property
    def blobs(self) -> tuple[bytes, ...]:
        return (*self.layers, self.config)


def image_documents(
    layers: Sequence[tuple[bytes, str]], *, config: Mapping | None = None, oci: bool = False
) -> ImageDocuments:
    """A linux/amd64 image of ``layers`` ((blob, diff_id) pairs) with runtime ``config``, docker v2 or OCI."""
    config_blob = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": dict(config or {}),
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _blob, diff_id in layers]},
        },
        sort_keys=True,
    ).encode()
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                "size": len(config_blob),
                "digest": sha256_digest(config_blob),
            },
            "layers": [
                {"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "size": len(blob), "digest": sha256_digest(blob)}
                for blob, _diff_id in layers
            ],
        },
        sort_keys=True,
    ).encode()
    return ImageDocuments(tuple(blob for blob, _diff_id in layers), config_blob, manifest, media_type)


def index_document(images: Sequence[tuple[PushedImage, str]]) -> bytes:
    """An OCI image index (a multi-platform image) over ``(image, architecture)`` pairs."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": image.media_type,
                    "size": len(image.manifest),
                    "digest": image.digest,
                    "platform": {"architecture": architecture, "os": "linux"},
                }
                for image, architecture in images
            ],
        },
        sort_keys=True,
    ).encode()


def upload_finish_target(location: str, digest: str) -> str:
    """The ``PUT`` that completes a blob upload: the registry's ``Location`` plus the blob's digest."""
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{urlencode({'digest': digest})}"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A private CA and a server certificate for ``host`` signed by it, as PEM files (needs ``cryptography``)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "knlab test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    try:
        alt_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt_name = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@dataclass
class RegistryServer:
    """A running registry process and a small HTTP API v2 client to fill it."""

    host: str
    port: int
    root: Path
    process: subprocess.Popen
    log_path: Path
    credentials: tuple[str, str] | None = None
    realm: str = "knlab-test"
    ssl_context: ssl.SSLContext | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def netloc(self) -> str:
        """``host:port`` as it appears in image references (``127.0.0.1:PORT/demo/hello:v1``)."""
        return f"{self.host}:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- HTTP ---------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
    ) -> Response:
        """Send one request; ``target`` is a path or a full URL (the registry's ``Location``)."""
        parts = urlsplit(target)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        all_headers = dict(headers or {})
        if authenticate and self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        connection = (
            http.client.HTTPSConnection(self.host, self.port, timeout=REQUEST_TIMEOUT, context=self.ssl_context)
            if self.ssl_context is not None
            else http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        )
        try:
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            connection.close()

    def _expect(self, response: Response, status: int, what: str) -> Response:
        if response.status != status:
            raise RegistryServerError(f"{what}: expected HTTP {status}, got {response.status}: {response.body[:300]!r}")
        return response

    # -- pushing ------------------------------------------------------------------------------------

    def upload_blob(self, repository: str, data: bytes) -> str:
        """Chunked upload (POST, PATCH, PUT with the digest), the flow docker and kaniko use."""
        digest = sha256_digest(data)
        started = self._expect(
            self.request("POST", f"/v2/{repository}/blobs/uploads/"), 202, f"start upload to {repository}"
        )
        patched = self._expect(
            self.request(
                "PATCH",
                started.headers["location"],
                body=data,
                headers={"Content-Type": "application/octet-stream"},
            ),
            202,
            f"upload blob to {repository}",
        )
        self._expect(
            self.request("PUT", upload_finish_target(patched.headers["location"], digest)),
            201,
            f"finish upload to {repository}",
        )
        return digest

    def push_manifest(self, repository: str, reference: str, manifest: bytes, media_type: str) -> str:
        response = self._expect(
            self.request(
                "PUT", f"/v2/{repository}/manifests/{reference}", body=manifest, headers={"Content-Type": media_type}
            ),
            201,
            f"push manifest {repository}:{reference}",
        )
        return response.headers["docker-content-digest"]

    def push_image(
        self,
        repository: str,
        tag: str | None,
        *,
        files: Mapping[str, bytes] | None = None,
        oci: bool = False,
    ) -> PushedImage:
        """Push a one-layer image built from ``files``; ``tag=None`` pushes it by digest only."""
        layer = layer_tarball(files if files is not None else {"hello.txt": b"hello\n"})
        image = image_documents([layer], config={"Cmd": ["/bin/true"]}, oci=oci)
        blob_digests = tuple(self.upload_blob(repository, blob) for blob in image.blobs)
        reference = tag or sha256_digest(image.manifest)
        digest = self.push_manifest(repository, reference, image.manifest, image.media_type)
        return PushedImage(repository, tag, digest, image.media_type, image.manifest, blob_digests)

    def push_index(self, repository: str, tag: str, images: list[PushedImage]) -> PushedImage:
        """Push an OCI image index over images already in ``repository`` (amd64, arm64, … in order)."""
        index = index_document(list(zip(images, ("amd64", "arm64", "ppc64le", "s390x"), strict=False)))
        digest = self.push_manifest(repository, tag, index, OCI_INDEX)
        return PushedImage(repository, tag, digest, OCI_INDEX, index)

    def delete_manifest(self, repository: str, digest: str) -> None:
        self._expect(
            self.request("DELETE", f"/v2/{repository}/manifests/{digest}"), 202, f"delete {repository}@{digest}"
        )

    # -- lifecycle ----------------------------------------------------------------------------------

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RegistryServerError(f"docker-registry exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                # 401 counts as ready: the API answers, it just wants credentials.
                if self.request("GET", "/v2/", authenticate=False).status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RegistryServerError(f"docker-registry did not answer on {self.url} within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def start_registry(
    directory: Path,
    *,
    auth: tuple[str, str] | None = None,
    realm: str = "knlab-test",
    host: str = "127.0.0.1",
    tls: TlsFiles | None = None,
    notifications: Sequence[Mapping] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[RegistryServer]:
    """Run ``docker-registry`` with config, storage and log under ``directory``; stop it on exit.

    ``auth=(user, password)`` turns on htpasswd basic auth; :meth:`RegistryServer.request` then
    sends those credentials unless told not to. ``tls`` (see :func:`make_tls_files`) makes it serve HTTPS;
    the helper's own requests then trust ``tls.ca``. ``notifications`` is the config's
    ``notifications.endpoints`` list (the registry then POSTs its events there); ``env`` adds
    variables (``REGISTRY_*`` overrides of the config among them) after the caller's are dropped.
    """
    directory = Path(directory)
    storage = directory / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if auth is not None:
        htpasswd = directory / "htpasswd"
        htpasswd.write_text(bcrypt_htpasswd_line(*auth))
    port = free_port(host)
    config_path = directory / "config.yml"
    # JSON is YAML, and writing it needs nothing outside the standard library.
    config_path.write_text(
        json.dumps(
            registry_config(
                port=port, storage_dir=storage, htpasswd=htpasswd, realm=realm, tls=tls, notifications=notifications
            ),
            indent=2,
        )
    )
    ssl_context = ssl.create_default_context(cafile=str(tls.ca)) if tls is not None else None
    log_path = directory / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [registry_binary(), "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            # REGISTRY_* variables override the config file; the caller's must not leak in.
            env={
                **{name: value for name, value in os.environ.items() if not name.upper().startswith("REGISTRY_")},
                **(env or {}),
            },
        )
    server = RegistryServer(host, port, directory, process, log_path, auth, realm, ssl_context)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()
