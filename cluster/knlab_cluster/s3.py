"""The cluster's S3 server: versitygw with its posix backend, for hubs that keep their images in
object storage (roles/registry with ``registry_storage: s3``).

It runs inside the cluster's namespace on the node's address (pods reach it there, as containerd
reaches the mirror), stores each bucket as a top-level directory of ``<state>/s3``, and has one
root account whose keys the first ``up`` generates and keeps in ``<state>/s3-credentials.json``
(mode 0600). ``knlab-cluster s3`` prints the endpoint, bucket and keys as JSON for tests and
playbooks (put the keys in a Secret; never in a play's variables).
"""

from __future__ import annotations

import json
import os
import secrets

from .settings import NODE_IP, S3_BUCKET, S3_ENDPOINT, S3_PORT, S3_REGION, Paths

S3 = "s3"


def ensure_credentials(paths: Paths) -> dict[str, str]:
    """The root account's keys: generated once, then the same on every up (buckets keep their data)."""
    path = paths.s3_credentials
    if path.exists():
        return json.loads(path.read_text())
    keys = {"access_key": "knlab" + secrets.token_hex(8), "secret_key": secrets.token_urlsafe(30)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out)
    path.with_suffix(".tmp").replace(path)
    return keys


def ensure_bucket(paths: Paths, bucket: str = S3_BUCKET) -> None:
    """A bucket of the posix backend is a top-level directory of its root."""
    (paths.s3_data / bucket).mkdir(parents=True, exist_ok=True)


def argv(paths: Paths, binaries: dict[str, str]) -> list[str]:
    return [
        binaries.get("versitygw", "versitygw"),
        "--port",
        f"{NODE_IP}:{S3_PORT}",
        "--region",
        S3_REGION,
        "--quiet",
        "posix",
        str(paths.s3_data),
    ]


# Any HTTP answer (an anonymous request gets 403) means it serves.
READY = ["curl", "-s", "-o", "/dev/null", "--max-time", "2", f"{S3_ENDPOINT}/"]


def environment(paths: Paths) -> dict[str, str]:
    """The keys for the process (not its command line, which every user can read); empty before
    `ensure_credentials` made them."""
    if not paths.s3_credentials.exists():
        return {}
    keys = json.loads(paths.s3_credentials.read_text())
    return {"ROOT_ACCESS_KEY": keys["access_key"], "ROOT_SECRET_KEY": keys["secret_key"]}


def endpoint(paths: Paths) -> dict[str, str]:
    """What a client needs (`knlab-cluster s3`); a clear error before the first up."""
    if not paths.s3_credentials.exists():
        raise SystemExit(f"no S3 server yet ({paths.s3_credentials} is missing): knlab-cluster up starts it")
    keys = json.loads(paths.s3_credentials.read_text())
    return {
        "endpoint": S3_ENDPOINT,
        "region": S3_REGION,
        "bucket": S3_BUCKET,
        "access_key": keys["access_key"],
        "secret_key": keys["secret_key"],
        "bucket_dir": str(paths.s3_data / S3_BUCKET),
    }
