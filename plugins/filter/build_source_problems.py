# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: build_source_problems
short_description: What keeps a source directory read by knlab.serverless.source_files from being built
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - Checks the listing of the M(knlab.serverless.build) role's source directory, as the
    P(knlab.serverless.source_files#lookup) lookup returns it, against what the source ConfigMap
    can hold, and returns one sentence per problem.
  - A directory that cannot be read or is empty is the only problem reported for it. Otherwise the
    problems are, in this order, subdirectories, file names that cannot be ConfigMap keys, no
    Dockerfile, and files that add up to more than the 1 MiB a ConfigMap can hold.
positional: _input, path, dockerfile
options:
  _input:
    description: The lookup's result for the directory, with C(error) and C(entries).
    type: dict
    required: true
  path:
    description: The directory as the messages name it (C(build_source_dir) with C(~) expanded).
    type: str
    required: true
  dockerfile:
    description: The file name of the Dockerfile that must be among the entries (C(build_dockerfile)).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Check the source directory
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join(' ') }}"
  vars:
    source: "{{ lookup('knlab.serverless.source_files', '/srv/app') }}"
    problems: "{{ source | knlab.serverless.build_source_problems('/srv/app', 'Dockerfile') }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem, each naming the directory; empty when it can be built.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import (  # noqa: E402
    RE_CONFIGMAP_KEY,
    jinja_sorted,
    match,
)

# The size limit of a ConfigMap's data and binaryData together.
CONFIGMAP_LIMIT = 1048576


def build_source_problems(source: dict, path: str, dockerfile: str) -> list[str]:
    """The problems of the source directory ``path``, listed by the source_files lookup as ``source``."""
    entries = source["entries"]
    if source["error"] or not entries:
        return [f"build_source_dir {path} cannot be used: {source['error'] or 'it is empty'}."]
    problems = []
    names = [entry["name"] for entry in entries]
    subdirs = jinja_sorted([entry["name"] for entry in entries if entry["isdir"]])
    if subdirs:
        problems.append(
            f"build_source_dir {path} has subdirectories ({', '.join(subdirs)}), but the source ConfigMap holds"
            " one flat directory: keep the build context's files at its top level."
        )
    bad_names = jinja_sorted([name for name in names if not match(name, RE_CONFIGMAP_KEY)])
    if bad_names:
        problems.append(
            f"These file names in {path} cannot be ConfigMap keys (letters, digits, '-', '_' and '.', at most 253"
            f" characters, not starting with '..'): {', '.join(bad_names)}."
        )
    if dockerfile not in names:
        problems.append(f"build_source_dir {path} has no {dockerfile} (build_dockerfile).")
    total_size = sum(entry["size"] for entry in entries if not entry["isdir"])
    if total_size > CONFIGMAP_LIMIT:
        problems.append(
            f"The files in {path} add up to {total_size} bytes, more than the {CONFIGMAP_LIMIT} bytes (1 MiB) a"
            " ConfigMap can hold."
        )
    return problems


class FilterModule:
    def filters(self) -> dict:
        return {"build_source_problems": build_source_problems}
