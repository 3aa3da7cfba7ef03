"""A real S3 server next to the sandbox: versitygw (posix backend) on 127.0.0.1, for hubs that
keep their images in object storage (roles/registry with ``registry_storage: s3``).

The same program, version and layout as the cluster's (cluster/knlab_cluster/s3.py): the binary is
built from cluster/go/versitygw (pinned) into the build cache by ``knlab_cluster.build.tool_binary``
(``$KNLAB_VERSITYGW`` names a binary to use instead). Under ``<state-dir>/s3/``:

- ``data/`` is the server's root; each top-level directory is a bucket (``hub`` is made at start),
  so a test can look at the objects a registry wrote as plain files;
- ``credentials.json`` (mode 0600) holds the root account's keys, generated once;
- ``pids/`` holds the process record (processes.py's format): `knlab-sandbox down` and
  `knlab-sandbox s3 down` stop it, also when the sandbox server was killed;
- ``endpoint.json``: what a client needs (``knlab-sandbox s3 info`` prints it).

Not part of the sandbox server: the server neither needs it nor stops it on its own restarts.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

from .processes import _same_executable, free_port, log_tail, record_name, stop_recorded

HOST = "127.0.0.1"
DEFAULT_PORT = 17070
BUCKET = "hub"
REGION = "us-east-1"
KEY = "s3-server"
START_TIMEOUT = 30.0
# S3's bucket naming rules (lower case, digits, dots and hyphens, 3-63): also keeps it one directory.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class S3StartError(Exception):
    """versitygw could not be found, built or started."""


def s3_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / "s3"


def versitygw_binary() -> Path:
    """``$KNLAB_VERSITYGW``, else the pinned build from the cache (built there the first time, ~3 min)."""
    if os.environ.get("KNLAB_VERSITYGW"):
        return Path(os.environ["KNLAB_VERSITYGW"])
    try:
        from knlab_cluster.build import tool_binary  # noqa: PLC0415 (only for this command)
    except ImportError as error:
        raise S3StartError(
            f"versitygw is built by knlab_cluster (cluster/), which is not importable: {error}"
        ) from None
    try:
        return tool_binary("versitygw")
    except (subprocess.CalledProcessError, SystemExit) as error:
        raise S3StartError(f"building versitygw from cluster/go/versitygw failed: {error}") from None


def _credentials(directory: Path) -> dict[str, str]:
    path = directory / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    keys = {"access_key": "knlab" + secrets.token_hex(8), "secret_key": secrets.token_urlsafe(30)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out)
    return keys


def _answers(port: int) -> bool:
    """Any HTTP answer (an anonymous request gets 403) means it serves."""
    connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def info(state_dir: Path) -> dict | None:
    """The running server's endpoint, bucket and keys; None when it does not run."""
    try:
        data = json.loads((s3_dir(state_dir) / "endpoint.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        record = json.loads((s3_dir(state_dir) / "pids" / f"{record_name(KEY)}.json").read_text())
    except (OSError, ValueError):
        return None
    # Ours only while /proc shows the recorded executable (a recycled pid is not) and it answers.
    if not _same_executable(int(record["pid"]), record["executable"]) or not _answers(int(data["port"])):
        return None
    return data


def start(state_dir: Path, port: int = DEFAULT_PORT, bucket: str = BUCKET) -> dict:
    """Start versitygw unless it runs; make ``bucket``; return what `info` returns."""
    if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"bucket {bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    running = info(state_dir)
    if running is not None:
        # The server runs already (on its own port): the bucket asked for is made, and named in
        # the answer, so that a caller never uses another caller's bucket by mistake.
        (Path(running["data_dir"]) / bucket).mkdir(exist_ok=True)
        return {**running, "bucket": bucket, "bucket_dir": str(Path(running["data_dir"]) / bucket)}
    stop(state_dir)  # a record left by a server that died
    directory = s3_dir(state_dir)
    data_dir = directory / "data"
    (data_dir / bucket).mkdir(parents=True, exist_ok=True)
    keys = _credentials(directory)
    binary = versitygw_binary()
    port = port or free_port(HOST)
    log_path = directory / "versitygw.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "--port", f"{HOST}:{port}", "--region", REGION, "--quiet", "posix", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The keys go in the environment: a command line is readable by every user.
            env={
                "PATH": os.environ.get("PATH", os.defpath),
                "ROOT_ACCESS_KEY": keys["access_key"],
                "ROOT_SECRET_KEY": keys["secret_key"],
            },
        )
    pids = directory / "pids"
    pids.mkdir(exist_ok=True)
    (pids / f"{record_name(KEY)}.json").write_text(
        json.dumps({"key": KEY, "pid": process.pid, "executable": os.path.realpath(binary), "started": time.time()})
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(state_dir)
            raise S3StartError(f"versitygw did not start on {HOST}:{port}: {log_tail(log_path)}")
        time.sleep(0.1)
    data = {
        "endpoint": f"http://{HOST}:{port}",
        "port": port,
        "region": REGION,
        "bucket": bucket,
        "access_key": keys["access_key"],
        "secret_key": keys["secret_key"],
        "data_dir": str(data_dir),
        "bucket_dir": str(data_dir / bucket),
        "pid": process.pid,
    }
    endpoint = directory / "endpoint.json"
    fd = os.open(endpoint, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    return data


def stop(state_dir: Path) -> list[int]:
    """Stop the server (by its record: only while /proc shows the same executable); keep the data."""
    (s3_dir(state_dir) / "endpoint.json").unlink(missing_ok=True)
    return stop_recorded(s3_dir(state_dir) / "pids")
