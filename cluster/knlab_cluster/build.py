"""`knlab-cluster build`: every binary, image and install manifest, from the pinned Go modules.

Each step's output sits in the cache under a key made of everything that decides it (go.mod,
go.sum, the Go version, the flags; an image's files and settings), so a second build with the
same pins does nothing, and two checkouts on one machine share the work.

Images are made with crane: a layer of files from this machine (the binary, CA certificates,
/etc/passwd; Debian's busybox; a Debian root file system for Python) appended to an empty image,
then the config set with `crane mutate`. They are pushed to the mirror, a distribution registry
whose storage directory is part of the cache; `up` serves that directory inside the cluster.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from .components import GO_COMPONENTS, GoComponent, Image, component, images, module_dir
from .manifests import generate_manifests
from .settings import CLUSTER_DIR, Paths, default_cache

DEBIAN_SUITE = "bookworm"
# The Debian archive debootstrap installs from (KNLAB_CLUSTER_DEBIAN_MIRROR for a local mirror).
DEBIAN_MIRROR = os.environ.get("KNLAB_CLUSTER_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PYTHON_PACKAGES = ("python3", "python-is-python3", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUSYBOX = Path("/bin/busybox")


def log(message: str) -> None:
    print(f"knlab-cluster build: {message}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def digest_of(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def go_version() -> str:
    return subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()


def record_timing(paths: Paths, step: str, seconds: float) -> None:
    """How long each step took when it really ran (not when it was cached): benchmarks/ reads it."""
    timings_file = paths.cache / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    timings[step] = {"seconds": round(seconds, 1), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    timings_file.write_text(json.dumps(timings, indent=2, sort_keys=True))


# --- binaries ------------------------------------------------------------------------------------
GO_FLAGS = ("-trimpath",)
BASE_LDFLAGS = ("-s", "-w")


def component_key(c: GoComponent, go: str) -> str:
    return digest_of(
        (c.directory / "go.mod").read_bytes(),
        (c.directory / "go.sum").read_bytes(),
        go,
        " ".join(GO_FLAGS + BASE_LDFLAGS + c.ldflags),
        json.dumps(c.binaries, sort_keys=True),
    )[:16]


def build_component(c: GoComponent, paths: Paths, go: str) -> dict[str, str]:
    out = paths.bin_cache / f"{c.name}-{c.version}-{component_key(c, go)}"
    done = out / ".done"
    if not done.exists():
        out.mkdir(parents=True, exist_ok=True)
        # GOTOOLCHAIN=local: never download another Go (a go.mod asking for a newer one fails instead).
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"}
        component_started = time.monotonic()
        for binary, package in c.binaries.items():
            log(f"go build {package} ({c.version})")
            started = time.monotonic()
            run(
                [
                    "nice",
                    "go",
                    "build",
                    "-p",
                    str(os.cpu_count() or 2),
                    *GO_FLAGS,
                    "-ldflags",
                    " ".join(BASE_LDFLAGS + c.ldflags),
                    "-o",
                    str(out / binary),
                    package,
                ],
                cwd=c.directory,
                env=env,
            )
            log(f"  {binary}: {time.monotonic() - started:.0f} s")
        done.write_text(json.dumps({"version": c.version, "go": go}))
        record_timing(paths, c.name, time.monotonic() - component_started)
    return {binary: str(out / binary) for binary in c.binaries}


def build_pause(paths: Paths) -> str:
    """The pause container: Kubernetes' own pause.c (from the k8s.io/kubernetes module), static."""
    kubernetes = component("kubernetes")
    source_dir = module_dir("k8s.io/kubernetes", kubernetes.version, kubernetes.directory)
    source = source_dir / "build" / "pause" / "linux" / "pause.c"
    flags = ["-Os", "-static", "-Wall", f"-DVERSION={kubernetes.version}"]
    gcc = subprocess.run(["gcc", "--version"], check=True, capture_output=True, text=True).stdout.splitlines()[0]
    key = digest_of(source.read_bytes(), gcc, *flags)[:16]
    out = paths.bin_cache / f"pause-{kubernetes.version}-{key}" / "pause"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        log(f"gcc -static {source}")
        run(["gcc", *flags, "-o", str(out), str(source)])
        run(["strip", str(out)])
    return str(out)


# --- layers --------------------------------------------------------------------------------------
class Layer:
    """A deterministic tar layer: fixed times and owners, so equal inputs give equal digests."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (closed in write)
        self.dirs: set[str] = set()

    def _info(self, path: str, kind: bytes, mode: int, uid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid, 0
        return info

    def dir(self, path: str, mode: int = 0o755, uid: int = 0) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in self.dirs:
                self.dirs.add(sub)
                last = i == len(parts)
                self.tar.addfile(self._info(sub, tarfile.DIRTYPE, mode if last else 0o755, uid if last else 0))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        parent = os.path.dirname(path.strip("/"))
        if parent:
            self.dir(parent)
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, path: str, target: str) -> None:
        parent = os.path.dirname(path.strip("/"))
        if parent:
            self.dir(parent)
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def write(self, dest: Path) -> Path:
        self.tar.close()
        dest.write_bytes(self.buffer.getvalue())
        return dest


PASSWD = b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = b"root:x:0:\nnonroot:x:65532:\n"


def static_base(layer: Layer) -> None:
    """What a static Go program expects around it (as distroless/static has it)."""
    layer.file("/etc/passwd", PASSWD)
    layer.file("/etc/group", GROUP)
    layer.file("/etc/nsswitch.conf", b"hosts: files dns\n")
    layer.file("/etc/ssl/certs/ca-certificates.crt", CA_BUNDLE.read_bytes())
    layer.dir("/tmp", 0o1777)
    layer.dir("/home/nonroot", 0o700, uid=65532)
    layer.dir("/var/run/ko")


def busybox_base(layer: Layer) -> None:
    static_base(layer)
    layer.file("/bin/busybox", BUSYBOX.read_bytes(), 0o755)
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in sorted(applets):
        if applet != "busybox":
            layer.symlink(f"/bin/{applet}", "busybox")


def kaniko_base(layer: Layer) -> None:
    layer.file("/kaniko/ssl/certs/ca-certificates.crt", CA_BUNDLE.read_bytes())
    layer.dir("/kaniko/.docker")
    layer.file("/etc/nsswitch.conf", b"hosts: files dns\n")
    layer.dir("/workspace")
    layer.dir("/tmp", 0o1777)


def python_rootfs(paths: Paths) -> Path:
    """A Debian root file system with Python 3 (debootstrap, minbase), as one layer tarball."""
    key = digest_of(DEBIAN_SUITE, DEBIAN_MIRROR, *PYTHON_PACKAGES)[:16]
    tarball = paths.image_cache / f"python-rootfs-{DEBIAN_SUITE}-{key}.tar"
    if tarball.exists():
        return tarball
    paths.image_cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=paths.image_cache) as tmp:
        root = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {DEBIAN_SUITE} (+ {', '.join(PYTHON_PACKAGES)})")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PYTHON_PACKAGES)}",
                DEBIAN_SUITE,
                str(root),
                DEBIAN_MIRROR,
            ],
            stdout=subprocess.DEVNULL,
        )
        # Leave out what an image does not need: package caches and lists, logs.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
            for child in (root / junk).glob("*"):
                if child.is_file():
                    child.unlink()
        partial = tarball.with_suffix(".partial")
        run(
            [
                "tar",
                "--numeric-owner",
                "--sort=name",
                "--mtime=@0",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "--exclude=./dev/*",
                "-C",
                str(root),
                "-cf",
                str(partial),
                ".",
            ]
        )
        partial.rename(tarball)
    record_timing(paths, "python-rootfs", time.monotonic() - started)
    return tarball


# --- the mirror ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registry_config(root: Path, addr: str) -> str:
    return (
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )


@contextmanager
def local_mirror(paths: Paths, registry_binary: str):
    """The mirror's storage served on loopback while images are pushed to it."""
    paths.mirror_store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as config:
        config.write(registry_config(paths.mirror_store, f"127.0.0.1:{port}"))
    log_path = paths.cache / "mirror-build.log"
    with open(log_path, "ab") as registry_log:
        proc = subprocess.Popen(
            [registry_binary, "serve", config.name],
            stdout=registry_log,
            stderr=subprocess.STDOUT,
            env={"OTEL_TRACES_EXPORTER": "none"},
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError as error:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the mirror registry did not start ({error}): see {log_path}") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(config.name)


def manifest_present(paths: Paths, repository: str, digest: str) -> bool:
    link = (
        paths.mirror_store
        / "docker/registry/v2/repositories"
        / repository
        / "_manifests/revisions/sha256"
        / digest.split(":", 1)[1]
        / "link"
    )
    return link.exists()


def image_key(image: Image, binaries: dict[str, str], base_key: str) -> str:
    contents = []
    for _path, source in sorted(image.files.items()):
        if source.startswith("file:"):
            contents.append(digest_of((CLUSTER_DIR / source[5:]).read_bytes()))
        else:
            contents.append(binaries[source])  # the binary's path carries its build key
    return digest_of(json.dumps(image.__dict__, sort_keys=True, default=list), base_key, *contents)[:16]


def build_image(
    image: Image, binaries: dict[str, str], paths: Paths, *, crane: str, mirror: str | None, base_layers: dict
) -> str:
    base_key, base_tar = base_layers[image.base]
    key = image_key(image, binaries, base_key)
    stamp = paths.image_cache / f"{image.repository.replace('/', '_')}-{image.tag}-{key}.json"
    if stamp.exists():
        digest = json.loads(stamp.read_text())["digest"]
        if manifest_present(paths, image.repository, digest):
            return f"{image.name}:{image.tag}@{digest}"
    if mirror is None:
        return ""  # the caller starts the mirror and asks again
    log(f"image {image.name}:{image.tag}")
    with tempfile.TemporaryDirectory() as tmp:
        layer = Layer()
        for path, source in sorted(image.files.items()):
            data = (
                (CLUSTER_DIR / source[5:]).read_bytes()
                if source.startswith("file:")
                else Path(binaries[source]).read_bytes()
            )
            layer.file(path, data, 0o644 if source.startswith("file:") else 0o755)
        layers = [base_tar] if base_tar else []
        if image.files:
            layers.append(str(layer.write(Path(tmp) / "files.tar")))
        ref = f"{mirror}/{image.repository}:{image.tag}"
        append = [crane, "append", "--insecure", "--oci-empty-base", "-t", ref]
        for tar in layers:
            append += ["-f", tar]
        run(append, stdout=subprocess.DEVNULL)
        mutate = [crane, "mutate", "--insecure", ref, "-t", ref]
        if image.entrypoint:
            mutate += ["--entrypoint", ",".join(image.entrypoint)]
        if image.cmd:
            mutate += ["--cmd", ",".join(image.cmd)]
        for env in image.env:
            mutate += ["--env", env]
        if image.user:
            mutate += ["--user", image.user]
        if image.workdir:
            mutate += ["--workdir", image.workdir]
        run(mutate, stdout=subprocess.DEVNULL)
        digest = subprocess.run(
            [crane, "digest", "--insecure", ref], check=True, capture_output=True, text=True
        ).stdout.strip()
    stamp.write_text(json.dumps({"name": image.name, "tag": image.tag, "digest": digest}))
    return f"{image.name}:{image.tag}@{digest}"


def base_layers(paths: Paths) -> dict[str, tuple[str, str]]:
    """Each base: (a key for it, the path of its layer tarball or "" for none)."""
    paths.image_cache.mkdir(parents=True, exist_ok=True)
    result: dict[str, tuple[str, str]] = {"scratch": ("scratch", "")}
    for name, fill in (("static", static_base), ("busybox", busybox_base), ("kaniko", kaniko_base)):
        layer = Layer()
        fill(layer)
        data_path = paths.image_cache / f"base-{name}.tar.tmp"
        layer.write(data_path)
        key = digest_of(data_path.read_bytes())[:16]
        final = paths.image_cache / f"base-{name}-{key}.tar"
        data_path.replace(final)
        result[name] = (key, str(final))
    rootfs = python_rootfs(paths)
    result["python"] = (rootfs.stem, str(rootfs))
    return result


# --- all of it -----------------------------------------------------------------------------------
@contextmanager
def _cache_lock(paths: Paths):
    """One build at a time per cache (two checkouts on one machine share it)."""
    if shutil.which("go") is None:
        raise SystemExit("knlab-cluster build needs Go (go1.26.4 or later) on PATH")
    paths.cache.mkdir(parents=True, exist_ok=True)
    with open(paths.cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(paths: Paths, only: list[str] | None = None) -> dict:
    with _cache_lock(paths):
        return _build(paths, only)


def tool_binary(name: str, binary: str | None = None, cache: Path | None = None) -> Path:
    """One Go component's binary, built from its pinned module into the cache unless it is there:
    what the sandbox runs (versitygw, as a non-root user too) without a whole `knlab-cluster build`."""
    paths = Paths(cache=cache or default_cache(), state=Path("/nonexistent"))  # a build needs no state
    c = component(name)
    with _cache_lock(paths):
        return Path(build_component(c, paths, go_version())[binary or name])


def _build(paths: Paths, only: list[str] | None) -> dict:
    started = time.monotonic()
    go = go_version()
    binaries: dict[str, str] = {}
    for c in GO_COMPONENTS:
        if only and c.name not in only:
            continue
        binaries.update(build_component(c, paths, go))
    if only:
        return {"binaries": binaries}
    binaries["pause"] = build_pause(paths)
    bases = base_layers(paths)
    refs: dict[str, str] = {}
    pending = []
    for image in images():
        ref = build_image(image, binaries, paths, crane=binaries["crane"], mirror=None, base_layers=bases)
        if ref:
            refs[image.name] = ref
        else:
            pending.append(image)
    if pending:
        images_started = time.monotonic()
        with local_mirror(paths, binaries["registry"]) as mirror:
            for image in pending:
                refs[image.name] = build_image(
                    image, binaries, paths, crane=binaries["crane"], mirror=mirror, base_layers=bases
                )
        record_timing(paths, "images", time.monotonic() - images_started)
    manifests = generate_manifests(paths, refs)
    result = {"binaries": binaries, "images": refs, "manifests": manifests, "go": go}
    paths.build_manifest.write_text(json.dumps(result, indent=2, sort_keys=True))
    log(f"done in {time.monotonic() - started:.0f} s; {paths.build_manifest}")
    return result


def load(paths: Paths) -> dict:
    """What the last build produced; a clear error if there was none."""
    if not paths.build_manifest.exists():
        raise SystemExit(f"nothing built yet ({paths.build_manifest} is missing): run knlab-cluster build first")
    return json.loads(paths.build_manifest.read_text())


if __name__ == "__main__":  # pragma: no cover
    build(Paths.from_env(), sys.argv[1:] or None)
