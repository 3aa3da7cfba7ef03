"""The source_files lookup: what find (any type, hidden, follow, no recursion) and slurp would give.

The plugin is run in a child process: importing Ansible's controller side (ansible.plugins) into
the test process changes where module warnings go, and the module tests read those.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

RUN = """
import json, sys
from ansible.errors import AnsibleLookupError
from ansible_collections.knlab.serverless.plugins.lookup.source_files import LookupModule
try:
    print(json.dumps(LookupModule().run(sys.argv[1:])))
except AnsibleLookupError as err:
    print(json.dumps({"error": str(err)}))
"""


def lookup(*paths: Path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    argv = [sys.executable, "-c", RUN, *map(str, paths)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env, timeout=60)
    return json.loads(done.stdout)


def test_entries_with_contents_hidden_files_links_and_directories(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".hidden").write_bytes(b"\x00\xff binary")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deeper").write_text("not listed")
    (tmp_path / "link").symlink_to(tmp_path / "Dockerfile")
    (result,) = lookup(tmp_path)
    assert result["error"] == ""
    by_name = {entry["name"]: entry for entry in result["entries"]}
    assert list(by_name) == [".hidden", "Dockerfile", "link", "sub"]
    assert base64.b64decode(by_name[".hidden"]["content"]) == b"\x00\xff binary"
    assert base64.b64decode(by_name["link"]["content"]) == b"FROM scratch\n"
    assert (by_name["sub"]["isdir"], by_name["sub"]["content"], by_name["sub"]["path"]) == (
        True,
        None,
        str(tmp_path / "sub"),
    )
    assert (by_name["Dockerfile"]["isdir"], by_name["Dockerfile"]["size"]) == (False, 13)


def test_a_missing_directory_is_reported_not_raised(tmp_path):
    (result,) = lookup(tmp_path / "nope")
    assert result == {
        "path": str(tmp_path / "nope"),
        "error": f"{tmp_path / 'nope'} is not a directory",
        "entries": [],
        "files": {},
        "digest": "",
    }


def test_the_digest_covers_the_files_names_and_contents_only(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "b").write_bytes(b"\xff")
    (tmp_path / "sub").mkdir()
    (result,) = lookup(tmp_path)
    assert result["files"] == {"Dockerfile": "RlJPTSBzY3JhdGNoCg==", "b": "/w=="}
    # The lines "name:base64", sorted, joined by newlines (what the build role has always hashed).
    lines = "Dockerfile:RlJPTSBzY3JhdGNoCg==\nb:/w=="
    assert result["digest"] == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    (tmp_path / "sub" / "x").write_text("directories do not count")
    os.utime(tmp_path / "b", (0, 0))
    assert lookup(tmp_path)[0]["digest"] == result["digest"]
    (tmp_path / "b").write_bytes(b"\xfe")
    assert lookup(tmp_path)[0]["digest"] != result["digest"]


def test_an_unreadable_file_is_an_error(tmp_path):
    (tmp_path / "broken").symlink_to(tmp_path / "gone")
    assert "broken cannot be read" in lookup(tmp_path)["error"]
