"""ConfigMap, Secret and projected volumes laid out as the kubelet lays them out.

The kubelet (``pkg/volume/util/atomic_writer.go``) writes a volume's files into a timestamped
directory ``..<timestamp>``, points the symlink ``..data`` at it, and makes every first path
segment of the payload a symlink into ``..data``: ``context/app.py`` is reached through the
symlink ``context -> ..data/context``. Tools that look at the entries themselves (``lstat``, a
directory walk that does not follow a symlinked root, kaniko's ``COPY .``) see symlinks, not the
plain directories a naive writer would make, so the sandbox writes the same layout.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

DATA_DIR_LINK = "..data"


def write_atomic(directory: Path, files: Mapping[str, bytes], mode: int | None = None) -> None:
    """Replace ``directory``'s content with ``files`` (relative path -> bytes), the kubelet's way."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 1_000_000_000:09d}"
    payload = directory / stamp
    payload.mkdir()
    top_level: set[str] = set()
    for relative, data in files.items():
        parts = PurePosixPath(relative).parts
        target = payload.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode if mode is not None else 0o644)
        top_level.add(parts[0])
    os.symlink(stamp, directory / DATA_DIR_LINK)
    for name in sorted(top_level):
        os.symlink(f"{DATA_DIR_LINK}/{name}", directory / name)
