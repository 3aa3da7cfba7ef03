# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: knative_stack_input_problems
short_description: What is wrong with the knlab.serverless.knative_stack role's variables
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - Checks every variable of the M(knlab.serverless.knative_stack) role the way the cluster, get_url
    and the role would judge it (release tags, URLs, checksums, DNS names, node ports, registry
    hosts, config-features keys, ranges) and returns one sentence per variable that is wrong.
  - The role's first task fails with these sentences before the first request and before any
    download. Types are checked again here because the role's argument spec converts loosely.
  - Integers and booleans may come as text, as C(-e name=value) gives them.
  - When every variable is right and C(knative_stack_manifest_dir) is set, the manifests the run
    would apply are looked for in that directory on the host that runs the play (unless
    O(needs_manifests=false)).
options:
  _input:
    description: The role's variables, C(knative_stack_serving_version) to
      C(knative_stack_skip_tag_resolution) (every variable of its C(defaults/main.yml)), by name;
      each must be there.
    type: dict
    required: true
  needs_manifests:
    description:
      - Whether the run applies manifests, so that those of C(knative_stack_manifest_dir) must be
        there. The C(configure) entry point applies none and sets it to V(false).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Check the role's inputs
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "knative_stack: {{ problems | join('; ') }}"
  vars:
    # The dict names every variable of the role's defaults/main.yml (roles/knative_stack/tasks/validate.yml).
    problems: >-
      {{ {'knative_stack_serving_version': knative_stack_serving_version,
          'knative_stack_kourier_version': knative_stack_kourier_version,
          'knative_stack_skip_tag_resolution': knative_stack_skip_tag_resolution}
         | knlab.serverless.knative_stack_input_problems(needs_manifests=false) }}
"""

RETURN = r"""
_value:
  description: One message per wrong variable, each naming it; empty when all are right.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
import os  # noqa: E402
import re  # noqa: E402

from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import (  # noqa: E402
    RE_DNS_LABEL,
    RE_DNS_SUBDOMAIN,
    RE_HOST,
    RE_HOST_NAME,
    RE_REPOSITORY,
    RE_TAG,
    bool_like,
    got,
    is_mapping,
    is_sequence,
    is_string,
    match,
    rejected,
    search,
    to_bool,
    to_int,
    to_json,
    uint_like,
)

# The role's patterns (Kubernetes' apimachinery validation, the docker reference grammar, get_url's
# checksum). Each is used with re.match, so the ones for whole values end in \Z.
_RE_DNS1123_LABEL = rf"(?=.{{1,63}}\Z){RE_DNS_LABEL}\Z"
_RE_DNS1035_LABEL = r"(?=.{1,63}\Z)[a-z](?:[-a-z0-9]*[a-z0-9])?\Z"
_RE_DNS1123_SUBDOMAIN = rf"(?=.{{1,253}}\Z){RE_DNS_SUBDOMAIN}\Z"
# host[:port]: DNS labels of at most 63 characters (or an IPv6 address in brackets), port 1-65535.
_RE_HOST_PORT = rf"(?!.*[-a-zA-Z0-9]{{64}})(?=[^:]{{1,253}}(?::|\Z)|\[){RE_HOST}\Z"
_RE_IMAGE_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_RE_IMAGE_REFERENCE = (
    rf"(?:(?:{RE_HOST_NAME}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?/)?{RE_REPOSITORY}"
    rf"(?::{RE_TAG})?(?:@{_RE_IMAGE_DIGEST})?\Z"
)
_RE_URL_BODY = rf"https?://(?:{RE_HOST_NAME}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?(?:/\S*)?"
_RE_URL = rf"{_RE_URL_BODY}\Z"
_RE_DIGEST = (
    r"md5:[0-9a-fA-F]{32}|sha1:[0-9a-fA-F]{40}|sha224:[0-9a-fA-F]{56}|sha256:[0-9a-fA-F]{64}"
    r"|sha384:[0-9a-fA-F]{96}|sha512:[0-9a-fA-F]{128}"
)
# get_url's checksum: <algorithm>:<hex digest> or <algorithm>:<URL of a checksums file>.
_RE_CHECKSUM = rf"(?:{_RE_DIGEST}|(?:md5|sha1|sha224|sha256|sha384|sha512):{_RE_URL_BODY})\Z"
# Release tags; they name the cached files too, so they are never paths.
_RE_KNATIVE_TAG = r"(?:knative-)?v[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?\Z"
_RE_TAG = r"v[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?\Z"
_RE_TRAEFIK_TAG = r"v?[0-9]+\.[0-9]+(?:\.[0-9]+)?(?:-[0-9A-Za-z.-]+)?\Z"
_RE_MINOR = r"[0-9]+\.[0-9]+"
# A ConfigMap key (the keys of config-features).
_RE_CONFIG_KEY = r"(?=.{1,253}\Z)(?!\.\.)(?!\.\Z)[-._a-zA-Z0-9]+\Z"
_RE_CONTROL = r"[\x00-\x1f\x7f]"

# The keys of _knative_stack_ingress_classes (vars/main.yml), in its order.
INGRESSES = ("kourier", "traefik", "none")
PVC_PROVISIONERS = ("none", "local-path")
# The files of knative_stack_manifest_dir (vars/main.yml, _knative_stack_manifests), each with
# whether a run with these variables applies it.
MANIFEST_FILES = (
    ("serving-crds.yaml", lambda v: to_bool(v["knative_stack_install_serving"])),
    ("serving-core.yaml", lambda v: to_bool(v["knative_stack_install_serving"])),
    ("kourier.yaml", lambda v: v["knative_stack_ingress"] == "kourier"),
    ("tekton.yaml", lambda v: to_bool(v["knative_stack_install_tekton"])),
    ("local-path.yaml", lambda v: v["knative_stack_pvc_provisioner"] == "local-path"),
)

_KNATIVE_TAG = "a release tag such as knative-v1.23.0"
_TAG = "a release tag such as v1.15.0"
_URL = "an http(s) URL with a host"
_CHECKSUM = "empty or a get_url checksum (sha256:<hex digest> or sha256:<URL of a checksums file>)"
_HOST_PORT = "a host name or address with an optional :port (1-65535), each name part at most 63 characters"
_DNS1123_SUBDOMAIN = 'a DNS-1123 subdomain (at most 253 characters: dot-separated lowercase letters, digits and "-")'


def _text(name: str, value, pattern: str, rule: str, *, empty: bool = False, longest: int = 253) -> str:
    """A string: not empty (unless ``empty``), at most ``longest`` characters, no control characters, ``pattern``."""
    if not is_string(value):
        return f"{name} must be a string, got {got(value)}"
    if value == "":
        return "" if empty else f"{name} must not be empty"
    if len(value) > longest:
        return f"{name} is {len(value)} characters long; at most {longest} are allowed"
    if search(value, _RE_CONTROL):
        return f"{name} must not contain control characters (newline, tab, NUL, ...), got {got(value)}"
    if pattern and not match(value, pattern):
        return f"{name} must be {rule}, got {got(value)}"
    return ""


def _integer(name: str, value, low: int, high: int) -> str:
    if uint_like(value) and low <= to_int(value) <= high:
        return ""
    return f"{name} must be an integer from {low} to {high}, got {got(value)}"


def _node_port(name: str, value) -> str:
    if uint_like(value) and (to_int(value) == 0 or 30000 <= to_int(value) <= 32767):
        return ""
    return (
        f"{name} must be 0 (no node port) or a node port from 30000 to 32767 (the default NodePort range),"
        f" got {got(value)}"
    )


def _boolean(name: str, value) -> str:
    return "" if bool_like(value) else f"{name} must be a boolean (true or false), got {got(value)}"


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if is_string(value) and value in choices:
        return ""
    return f"{name} must be one of {', '.join(choices)}, got {got(value)}"


def _hosts(name: str, value) -> str:
    if is_string(value) or is_mapping(value) or not is_sequence(value):
        return f"{name} must be a list of registry hosts, got {got(value)}"
    not_text = rejected(value, is_string)
    if not_text or rejected(value, lambda host: match(host, _RE_HOST_PORT)):
        bad = not_text + rejected([host for host in value if is_string(host)], lambda host: match(host, _RE_HOST_PORT))
        return f"{name} must list registry hosts (a host name or address with an optional :port), got {got(bad)}"
    return ""


def _minor(value: str) -> str | None:
    """``value | regex_search('[0-9]+\\.[0-9]+')``."""
    found = re.search(_RE_MINOR, value)
    return found.group(0) if found else None


def _kourier_version(v: dict, ingress: str) -> str:
    name, value = "knative_stack_kourier_version", v["knative_stack_kourier_version"]
    serving = v["knative_stack_serving_version"]
    problem = _text(name, value, _RE_KNATIVE_TAG, _KNATIVE_TAG, longest=64)
    if (
        not problem
        and ingress == "kourier"
        and is_string(serving)
        and match(serving, _RE_KNATIVE_TAG)
        and _minor(value) != _minor(serving)
    ):
        problem = (
            f"{name} must be of the minor version of knative_stack_serving_version ({_minor(serving)}),"
            f" as Knative requires, got {got(value)}"
        )
    return problem


def _traefik_version(v: dict, ingress: str) -> str:
    name, value = "knative_stack_traefik_version", v["knative_stack_traefik_version"]
    problem = _text(name, value, _RE_TRAEFIK_TAG, "a Traefik version such as v3.6.12", longest=64)
    if not problem and ingress == "traefik" and [to_int(part) for part in _minor(value).split(".")] < [3, 6]:
        problem = f"{name} must be 3.6 or later (the first Traefik with a Knative provider), got {got(value)}"
    return problem


def _field_manager(v: dict) -> str:
    name, value = "knative_stack_field_manager", v["knative_stack_field_manager"]
    problem = _text(name, value, "", "")
    if not problem and len(value) > 121:
        problem = (
            f"{name} is {len(value)} characters long; at most 121 are allowed"
            " (Kubernetes allows 128, and the ConfigMap keys are applied as <field manager>-config)"
        )
    return problem


def _features(v: dict) -> str:
    value = v["knative_stack_features"]
    if not is_mapping(value):
        return f"knative_stack_features must be a dict of config-features key: value, got {got(value)}"
    bad = rejected([str(key) for key in value], lambda key: match(key, _RE_CONFIG_KEY))
    if bad:
        return f'knative_stack_features keys must be ConfigMap keys (letters, digits, "-", "_" and "."), got {got(bad)}'
    if rejected(value.values(), is_string):
        return (
            'knative_stack_features values must be strings such as "enabled" (ConfigMap data is text;'
            f" quote true and false), got {got(value)}"
        )
    return ""


def _hub_name(v: dict) -> str:
    name, value = "knative_stack_hub_name", v["knative_stack_hub_name"]
    problem = _text(
        name,
        value,
        _RE_DNS1035_LABEL,
        'a DNS-1035 label (at most 63 lowercase letters, digits and "-", starting with a letter and ending with'
        " a letter or digit)",
    )
    port = v["knative_stack_hub_node_port"]
    # Only with a valid port: an invalid one has its own message, and no Service is named for it.
    if not problem and len(value) > 54 and not _node_port("knative_stack_hub_node_port", port) and to_int(port) > 0:
        problem = (
            f"{name} is {len(value)} characters long; at most 54 are allowed with a node port"
            f" (the Service {value}-nodeport needs a name of at most 63)"
        )
    return problem


def _hub_node_port(v: dict, ingress: str) -> str:
    name, value = "knative_stack_hub_node_port", v["knative_stack_hub_node_port"]
    other = v["knative_stack_ingress_node_port"]
    problem = _node_port(name, value)
    # Compared only when both are valid ports: an invalid one has its own message already.
    both_valid = not problem and not _node_port("knative_stack_ingress_node_port", other)
    if both_valid and to_int(value) > 0 and to_int(value) == to_int(other) and ingress in ("kourier", "traefik"):
        problem = f"{name} must differ from knative_stack_ingress_node_port ({other})"
    return problem


def _manifest_problems(v: dict) -> list[str]:
    """The manifests a run applies, looked for in knative_stack_manifest_dir (a valid, non-empty path)."""
    directory = v["knative_stack_manifest_dir"]
    files = [os.path.expanduser(f"{directory}/{file}") for file, applied in MANIFEST_FILES if applied(v)]
    missing = [file for file in files if not os.path.isfile(file)]
    if not os.path.isdir(os.path.expanduser(directory)):
        return [f"knative_stack_manifest_dir must be a directory on this host, got {to_json(directory)}"]
    if missing:
        return [
            "knative_stack_manifest_dir must hold the manifests to apply (see the role README), missing: "
            + ", ".join(os.path.basename(file) for file in missing)
        ]
    return []


def knative_stack_input_problems(variables: dict, needs_manifests: bool = True) -> list[str]:
    """One message per wrong variable of the knative_stack role, in the order of its defaults.

    When all are right, ``needs_manifests`` and knative_stack_manifest_dir is set, the message
    is about that directory instead: not one, or without some of the manifests the run applies.
    """
    v = variables
    ingress = v["knative_stack_ingress"] if is_string(v["knative_stack_ingress"]) else ""
    problems = [
        _text(
            "knative_stack_serving_version",
            v["knative_stack_serving_version"],
            _RE_KNATIVE_TAG,
            _KNATIVE_TAG,
            longest=64,
        ),
        _kourier_version(v, ingress),
        _text("knative_stack_tekton_version", v["knative_stack_tekton_version"], _RE_TAG, _TAG, longest=64),
        _traefik_version(v, ingress),
        _text(
            "knative_stack_local_path_version",
            v["knative_stack_local_path_version"],
            _RE_TAG,
            "a release tag such as v0.0.30",
            longest=64,
        ),
    ]
    for part in ("serving", "kourier", "tekton", "local_path"):
        name = f"knative_stack_{part}_release_url"
        problems.append(_text(name, v[name], _RE_URL, _URL, longest=2048))
    for part in ("serving", "kourier", "tekton", "local_path"):
        name = f"knative_stack_{part}_checksum"
        problems.append(_text(name, v[name], _RE_CHECKSUM, _CHECKSUM, empty=True, longest=2048))
    problems += [
        _text("knative_stack_manifest_dir", v["knative_stack_manifest_dir"], "", "a path", empty=True, longest=4096),
        _text("knative_stack_cache_dir", v["knative_stack_cache_dir"], "", "a path", longest=4096),
        _boolean("knative_stack_install_serving", v["knative_stack_install_serving"]),
        _choice("knative_stack_ingress", v["knative_stack_ingress"], INGRESSES),
        _text(
            "knative_stack_traefik_image",
            v["knative_stack_traefik_image"],
            _RE_IMAGE_REFERENCE,
            "an image reference ([host[:port]/]path[:tag][@digest], the path in lowercase)",
            longest=512,
        ),
        _boolean("knative_stack_install_tekton", v["knative_stack_install_tekton"]),
        _choice("knative_stack_pvc_provisioner", v["knative_stack_pvc_provisioner"], PVC_PROVISIONERS),
        _boolean("knative_stack_pvc_default_class", v["knative_stack_pvc_default_class"]),
        _field_manager(v),
        _integer("knative_stack_wait_timeout", v["knative_stack_wait_timeout"], 1, 86400),
        _text(
            "knative_stack_ingress_class",
            v["knative_stack_ingress_class"],
            _RE_DNS1123_SUBDOMAIN,
            "a KIngress class such as kourier.ingress.networking.knative.dev (a DNS-1123 subdomain)",
            empty=True,
        ),
        _text("knative_stack_domain", v["knative_stack_domain"], _RE_DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN, empty=True),
        _boolean("knative_stack_enable_pvc", v["knative_stack_enable_pvc"]),
        _features(v),
        _node_port("knative_stack_ingress_node_port", v["knative_stack_ingress_node_port"]),
        _hub_name(v),
        _text(
            "knative_stack_hub_namespace",
            v["knative_stack_hub_namespace"],
            _RE_DNS1123_LABEL,
            'a DNS-1123 label (at most 63 lowercase letters, digits and "-", starting and ending with a letter or'
            " digit)",
        ),
        _integer("knative_stack_hub_port", v["knative_stack_hub_port"], 1, 65535),
        _hub_node_port(v, ingress),
        _text("knative_stack_hub_pull_host", v["knative_stack_hub_pull_host"], _RE_HOST_PORT, _HOST_PORT, empty=True),
        _hosts("knative_stack_skip_tag_resolution", v["knative_stack_skip_tag_resolution"]),
    ]
    problems = [problem for problem in problems if problem]
    if problems or not needs_manifests or v["knative_stack_manifest_dir"] == "":
        return problems
    return _manifest_problems(v)


class FilterModule:
    def filters(self) -> dict:
        return {"knative_stack_input_problems": knative_stack_input_problems}
