# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: source_files
short_description: The entries at the top of a directory on the controller, with each file's content
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - For each directory given, lists the entries directly inside it (no recursion; hidden ones
    included; symbolic links followed) with, for each file, its content in base64.
  - It is what M(ansible.builtin.find) (C(file_type=any), C(hidden), C(follow)) and one
    M(ansible.builtin.slurp) per file give, read in the controller's own process instead of one
    module run per file. The M(knlab.serverless.build) role reads its source directory with it.
  - A directory that is missing or cannot be read is no error here, its RV(_raw[].error) says why,
    so the caller can word the failure. A file that cannot be read is an error.
options:
  _terms:
    description: Directories on the controller (C(~) is expanded).
    type: list
    elements: path
    required: true
"""

EXAMPLES = r"""
- name: Show the names and sizes of the files in files/hello
  ansible.builtin.debug:
    msg: "{{ source.entries | map(attribute='name') | zip(source.entries | map(attribute='size')) }}"
  vars:
    source: "{{ lookup('knlab.serverless.source_files', playbook_dir ~ '/files/hello') }}"
"""

RETURN = r"""
_raw:
  description: One dict per directory given.
  type: list
  elements: dict
  contains:
    path:
      description: The directory, as given (with C(~) expanded).
      type: str
    error:
      description: Why the directory could not be listed, or an empty string.
      type: str
    entries:
      description:
        - Its entries, sorted by name, each with C(name), C(path), C(isdir), C(size) (bytes) and
          C(content) (the file's bytes in base64; null for a directory).
      type: list
      elements: dict
    files:
      description:
        - The files (not the directories) by name, each with its content in base64, as a
          ConfigMap's C(binaryData) holds them.
      type: dict
    digest:
      description:
        - The files' digest, C(sha256:) and 64 hex digits, over their names and contents and nothing
          else (not their times or modes); an empty string when the directory could not be read.
        - It is the SHA-256 of the lines C(name:base64 content), one per file, sorted, joined by
          newlines. Neither a file name that can be a ConfigMap key nor base64 holds a colon, so no
          two directories give the same lines.
      type: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
import base64  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402

from ansible.errors import AnsibleLookupError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        return [self._directory(os.path.expanduser(str(term))) for term in terms]

    @staticmethod
    def _directory(path: str) -> dict:
        if not os.path.isdir(path):
            return {"path": path, "error": f"{path} is not a directory", "entries": [], "files": {}, "digest": ""}
        try:
            names = sorted(os.listdir(path))
        except OSError as err:
            error = f"{path} cannot be listed: {err.strerror or err}"
            return {"path": path, "error": error, "entries": [], "files": {}, "digest": ""}
        entries = []
        for name in names:
            full = os.path.join(path, name)
            isdir = os.path.isdir(full)
            try:
                size = os.stat(full).st_size
                content = None
                if not isdir:
                    with open(full, "rb") as handle:
                        content = base64.b64encode(handle.read()).decode("ascii")
            except OSError as err:
                raise AnsibleLookupError(f"{full} cannot be read: {err.strerror or err}") from err
            entries.append({"name": name, "path": full, "isdir": isdir, "size": size, "content": content})
        files = {entry["name"]: entry["content"] for entry in entries if not entry["isdir"]}
        return {"path": path, "error": "", "entries": entries, "files": files, "digest": _digest(files)}


def _digest(files: dict) -> str:
    lines = sorted(f"{name}:{content}" for name, content in files.items())
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()
