# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: registry_input_problems
short_description: What is wrong with the knlab.serverless.registry role's variables
version_added: 0.1.0
author:
  - knlab serverless developers (@knlab)
description:
  - Checks every variable of the main entry point of the M(knlab.serverless.registry) role the way
    the cluster and the role would judge it (Knative Service and Kubernetes names, the image
    reference, the port, env names, label and annotation keys and values, the claim's size and
    access modes, host overrides, the S3 storage settings and the scale bounds) and returns one
    sentence per variable that is wrong.
  - The role's first task fails with these sentences before any request. Types are checked again
    here because the role's argument spec converts loosely (a list passes as a str option).
  - Integers and booleans may come as text, as C(-e name=value) gives them.
options:
  _input:
    description:
      - The role's variables, C(registry_name) to C(registry_autoscaling_metric),
        C(registry_notifications_secret) and C(registry_log_level), by name, and
        C(_registry_owned_labels) (the labels the role sets itself, from its C(vars/main.yml)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the hub's settings before the first request
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "registry: {{ problems | join('; ') }}"
  vars:
    problems: >-
      {{ {'registry_name': registry_name, 'registry_port': registry_port, '_registry_owned_labels': {}}
         | knlab.serverless.registry_input_problems }}
"""

RETURN = r"""
_value:
  description: One message per wrong variable, each naming it; empty when all are right.
  type: list
  elements: str
"""


# After the documentation, as ansible-test's validate-modules wants it.
from typing import Any  # noqa: E402

from ansible_collections.knlab.serverless.plugins.plugin_utils._role_inputs import (  # noqa: E402
    bool_like,
    got,
    is_integer,
    is_mapping,
    is_number,
    is_sequence,
    is_string,
    match,
    rejected,
    search,
    to_int,
)

# The patterns are the ones Kubernetes and Knative apply (apimachinery's validation package,
# distribution's reference grammar), as the role's Jinja check had them. `match` anchors at the
# start only, so every pattern ends with \Z ($ would accept a trailing newline).
_RE_DNS1123_LABEL = r"(?=.{1,63}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z"
_RE_DNS1035_LABEL = r"(?=.{1,63}\Z)[a-z]([-a-z0-9]*[a-z0-9])?\Z"
_RE_DNS1123_SUBDOMAIN = r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"
# host[:port]: DNS labels of at most 63 characters (or an IPv6 address in brackets), port 1-65535.
_RE_HOST_PORT = (
    r"(?!.*[-a-zA-Z0-9]{64})(?=[^:]{1,253}(:|\Z)|\[)"
    r"([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?\Z"
)
_RE_IMAGE_REFERENCE = (
    r"(([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9]))*"
    r"(:[0-9]{1,5})?/|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?/)?"
    r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?\Z"
)
# A Kubernetes quantity greater than 0 (a digit 1-9 somewhere in the number).
_RE_QUANTITY = r"\+?(?=[0-9.]*[1-9])([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][-+]?[0-9]+)?\Z"
# A key of a Secret (a file name under /auth): no path, no "..".
_RE_SECRET_KEY = r"(?=.{1,253}\Z)(?!.*\.\.)(?!\.\Z)[-._a-zA-Z0-9]+\Z"
_RE_ENV_NAME = r"(?!\.\.)(?!\.\Z)[-._a-zA-Z][-._a-zA-Z0-9]*\Z"
# Label and annotation keys: an optional DNS subdomain prefix and "/", then a name part.
_RE_QUALIFIED_NAME = (
    r"((?=[^/]{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(?=[^/]{1,63}\Z)([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z"
)
_RE_LABEL_VALUE = r"((?=.{1,63}\Z)([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z"
# The realm is quoted in the WWW-Authenticate header.
_RE_REALM = r'[^"\\]{1,256}\Z'
_RE_CONTROL = r"[\x00-\x1f\x7f]"
# Integers may also come as the text of `-e name=value` (digits only: no sign).
_RE_DIGITS = r"[0-9]{1,10}\Z"
_TRUE_WORDS = ("true", "yes")
_ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_WRITABLE_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod")
# Knative's queue-proxy and profiling ports.
_RESERVED_PORTS = (8008, 8012, 8013, 8022, 9090, 9091)
_KNATIVE_ENV = ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION")
_VISIBILITY_LABEL = "networking.knative.dev/visibility"
_SCALE_ANNOTATIONS = (
    "autoscaling.knative.dev/min-scale",
    "autoscaling.knative.dev/max-scale",
    "autoscaling.knative.dev/minScale",
    "autoscaling.knative.dev/maxScale",
)
_AUTOSCALING_ANNOTATIONS = {
    "registry_autoscaling_target": "autoscaling.knative.dev/target",
    "registry_autoscaling_metric": "autoscaling.knative.dev/metric",
}
_ANNOTATIONS_MAX = 262144
_STORAGES = ("filesystem", "s3")
_METRICS = ("concurrency", "rps")
# What registry_storage=s3 sets itself (the keys and the HTTP secret from Secrets): registry_env
# may add other REGISTRY_STORAGE_S3_* settings (chunksize, storageclass, ...), not these.
_S3_OWNED_ENV = (
    "REGISTRY_STORAGE",
    "REGISTRY_STORAGE_S3_ACCESSKEY",
    "REGISTRY_STORAGE_S3_SECRETKEY",
    "REGISTRY_HTTP_SECRET",
)
# S3's bucket naming rules: 3-63 lowercase letters, digits, "." and "-", a letter or digit at each end.
_RE_BUCKET = r"(?=.{3,63}\Z)(?!.*\.\.)[a-z0-9][a-z0-9.-]*[a-z0-9]\Z"
_RE_REGION = r"[A-Za-z0-9][-A-Za-z0-9_.]{0,62}\Z"
_RE_S3_ENDPOINT = r"https?://[^/?#]+/?\Z"
# A key prefix in the bucket: "/" and path parts of letters, digits and -_.~ (no "." or ".." part).
_RE_ROOT_DIRECTORY = r"(/(?!\.{1,2}(/|\Z))[-_.~A-Za-z0-9]+)+/?\Z"
_SCALE_MAX = 1000
# The variable the hub reads its notification endpoints from (a YAML list, distribution 2.8 and 3).
_NOTIFICATIONS_ENV = "REGISTRY_NOTIFICATIONS_ENDPOINTS"
_LOG_LEVEL_ENV = "REGISTRY_LOG_LEVEL"
_LOG_LEVELS = ("error", "warn", "info", "debug")

_DNS1035_LABEL = (
    'a DNS-1035 label (at most 63 lowercase letters, digits and "-", starting with a letter and ending with a'
    " letter or digit)"
)
_DNS1123_LABEL = (
    'a DNS-1123 label (at most 63 lowercase letters, digits and "-", starting and ending with a letter or digit)'
)
_DNS1123_SUBDOMAIN = 'a DNS-1123 subdomain (at most 253 characters: dot-separated lowercase letters, digits and "-")'
_HOST_PORT = "a host name or address with an optional :port (1-65535), each name part at most 63 characters"
_QUALIFIED_NAME = '[prefix/]name (an optional DNS subdomain and "/", then at most 63 letters, digits, "-", "_" and ".")'
_IMAGE = "an image reference ([host[:port]/]path[:tag][@digest], the path in lowercase)"
_ENV_NAME = 'environment variable names (letters, digits, "_", "-" and ".", not starting with a digit or "..")'
_LABEL_VALUE = 'label values (at most 63 letters, digits, "-", "_" and ".", starting and ending with a letter or digit)'
_QUANTITY = "a Kubernetes quantity greater than 0, such as 1Gi or 500M (quote a bare number)"
_SECRET_KEY = (
    'a Secret key (letters, digits, "-", "_" and ".", not "." and without ".."; it is a file name under /auth)'
)
_REALM = "text without double quotes or backslashes"
_BUCKET = 'an S3 bucket name (3 to 63 lowercase letters, digits, "." and "-", a letter or digit at each end)'
_REGION = 'a region name (at most 63 letters, digits, "-", "_" and ".")'
_S3_ENDPOINT = "an http:// or https:// URL of the S3 server with a host and an optional :port and no path"
_ROOT_DIRECTORY = (
    'a key prefix starting with "/" (path parts of letters, digits, "-", "_", "." and "~"; no "." or "..")'
)
_SECRET_ITEM = 'a Secret key (letters, digits, "-", "_" and ".", not "." and without "..")'


def _text(v: dict, name: str, pattern: str, rule: str, *, empty: bool = False, longest: int = 253) -> str:
    """A string: not empty (unless ``empty``), at most ``longest`` characters, no control characters."""
    value = v[name]
    if not is_string(value):
        return f"{name} must be a string, got {got(value)}"
    if value == "":
        return "" if empty else f"{name} must not be empty"
    if len(value) > longest:
        return f"{name} is {len(value)} characters long; at most {longest} are allowed"
    if search(value, _RE_CONTROL):
        return f"{name} must not contain control characters (newline, tab, NUL, ...), got {got(value)}"
    if not match(value, pattern):
        return f"{name} must be {rule}, got {got(value)}"
    return ""


def _integer(v: dict, name: str, low: int, high: int) -> str:
    """An integer or its digits (no sign), from ``low`` to ``high``."""
    value = v[name]
    if not (is_integer(value) or (is_string(value) and match(value, _RE_DIGITS))) or not low <= to_int(value) <= high:
        return f"{name} must be an integer from {low} to {high}, got {got(value)}"
    return ""


def _boolean(v: dict, name: str) -> str:
    return "" if bool_like(v[name]) else f"{name} must be a boolean (true or false), got {got(v[name])}"


def _is_true(value: Any) -> bool:
    """``value | string | lower in ['true', 'yes']``."""
    return str(value).lower() in _TRUE_WORDS


def _keys(name: str, value: dict, pattern: str, rule: str) -> str:
    """The keys (as text) that do not match ``pattern``."""
    bad = rejected((str(key) for key in value), lambda key: match(key, pattern))
    return f"{name} keys must be {rule}, got {got(bad)}" if bad else ""


def _scalars(name: str, value: dict, *, nullable: bool = False) -> str:
    """Values that are neither strings nor numbers (a bool is a number), nor null when ``nullable``."""
    others = [item for item in value.values() if not (is_string(item) or is_number(item))]
    if nullable:
        others = [item for item in others if item is not None]
    if others:
        return f"{name} values must be strings, numbers or booleans{' (or null)' if nullable else ''}, got {got(value)}"
    return ""


def _port(v: dict) -> str:
    value = v["registry_port"]
    problem = _integer(v, "registry_port", 1, 65535)
    if problem or to_int(value) not in _RESERVED_PORTS:
        return problem
    return (
        f"registry_port {value} is reserved by Knative (its queue-proxy and profiling ports:"
        f" {', '.join(str(port) for port in _RESERVED_PORTS)})"
    )


def _env(v: dict) -> str:
    value = v["registry_env"]
    if not is_mapping(value):
        return f"registry_env must be a dict of variable name: value, got {got(value)}"
    problem = _keys("registry_env", value, _RE_ENV_NAME, _ENV_NAME) or _scalars("registry_env", value, nullable=True)
    if problem:
        return problem
    reserved = [key for key in value if key in _KNATIVE_ENV]
    if reserved:
        return f"registry_env must not set {', '.join(reserved)}: Knative sets these itself"
    owned = [key for key in value if key.upper() in _S3_OWNED_ENV]
    if v.get("registry_storage") == "s3" and owned:
        return (
            f"registry_env must not set {', '.join(owned)} with registry_storage=s3: the role sets these (the keys"
            " from registry_s3_credentials_secret, the HTTP secret from registry_http_secret)"
        )
    address = f":{v['registry_port']}"
    if "REGISTRY_HTTP_ADDR" in value and value["REGISTRY_HTTP_ADDR"] != address:
        return (
            f'registry_env must not set REGISTRY_HTTP_ADDR to anything but "{address}", got'
            f" {got(value['REGISTRY_HTTP_ADDR'])}: set registry_port instead, the port Knative sends requests to"
        )
    return ""


def _notifications(v: dict) -> str:
    """registry_notifications_secret: a Secret name or empty; the env variable it sets is then the role's."""
    problem = _text(v, "registry_notifications_secret", _RE_DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN, empty=True)
    if problem or not v.get("registry_notifications_secret"):
        return problem
    env = v.get("registry_env")
    if is_mapping(env) and any(str(key).upper() == _NOTIFICATIONS_ENV for key in env):
        return (
            f"registry_env must not set {_NOTIFICATIONS_ENV} together with registry_notifications_secret:"
            " the role sets it from that Secret"
        )
    return ""


def _log_level(v: dict) -> str:
    """registry_log_level: empty (the role's choice) or a level distribution reads; not also in registry_env."""
    value = v["registry_log_level"]
    if value == "":
        return ""
    if not is_string(value) or value not in _LOG_LEVELS:
        return f"registry_log_level must be empty or one of {', '.join(_LOG_LEVELS)}, got {got(value)}"
    env = v.get("registry_env")
    if is_mapping(env) and any(str(key).upper() == _LOG_LEVEL_ENV for key in env):
        return (
            f"registry_env must not set {_LOG_LEVEL_ENV} together with registry_log_level:"
            " the role sets it from that option"
        )
    return ""


def _annotation_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _annotations(v: dict) -> str:
    value = v["registry_annotations"]
    if not is_mapping(value):
        return f"registry_annotations must be a dict of key: value, got {got(value)}"
    name = "registry_annotations"
    problem = _keys(name, value, _RE_QUALIFIED_NAME, _QUALIFIED_NAME) or _scalars(name, value)
    if problem:
        return problem
    scaling = [key for key in value if key in _SCALE_ANNOTATIONS]
    if scaling:
        return (
            f"registry_annotations must not set {', '.join(scaling)}: the role runs exactly one replica"
            " (min-scale = max-scale = 1) unless registry_min_scale and registry_max_scale say otherwise"
        )
    both = [
        f"{key} (registry_{option.removeprefix('registry_')} sets it)"
        for option, key in _AUTOSCALING_ANNOTATIONS.items()
        if key in value and v.get(option) not in (None, "", 0, "0")
    ]
    if both:
        return f"registry_annotations must not set {', '.join(both)}"
    # Kubernetes adds up the bytes of the keys and the values (apimachinery's ValidateAnnotationsSize).
    size = sum(len(str(key).encode("utf-8", "surrogateescape")) for key in value) + sum(
        len(_annotation_text(item).encode("utf-8", "surrogateescape")) for item in value.values()
    )
    if size > _ANNOTATIONS_MAX:
        return f"registry_annotations hold {size} bytes; Kubernetes allows at most {_ANNOTATIONS_MAX}"
    return ""


def _labels(v: dict) -> str:
    value = v["registry_labels"]
    if not is_mapping(value):
        return f"registry_labels must be a dict of key: value, got {got(value)}"
    name = "registry_labels"
    problem = _keys(name, value, _RE_QUALIFIED_NAME, _QUALIFIED_NAME) or _scalars(name, value)
    if problem:
        return problem
    bad = rejected((str(item) for item in value.values()), lambda item: match(item, _RE_LABEL_VALUE))
    if bad:
        return f"registry_labels values must be {_LABEL_VALUE}, got {got(bad)}"
    role_labels = [*v["_registry_owned_labels"], _VISIBILITY_LABEL]
    owned = [key for key in value if key in role_labels]
    if owned:
        return (
            f"registry_labels must not set {', '.join(owned)}: the role sets these (use registry_cluster_local for"
            " the visibility)"
        )
    return ""


def _access_modes(v: dict) -> str:
    value = v["registry_pvc_access_modes"]
    name = "registry_pvc_access_modes"
    if is_string(value) or is_mapping(value) or not is_sequence(value):
        return f"{name} must be a list of access modes, got {got(value)}"
    if len(value) == 0:
        return f"{name} must not be empty"
    unknown = [mode for mode in value if mode not in _ACCESS_MODES]
    if unknown:
        return f"{name} must be among {', '.join(_ACCESS_MODES)}, got {got(unknown)}"
    # Every mode is one of the names above here, so a set finds the repeated ones.
    if len(set(value)) != len(value):
        return f"{name} lists a mode more than once, got {got(value)}"
    if "ReadWriteOncePod" in value and len(value) > 1:
        return f"{name} may not combine ReadWriteOncePod with other modes (Kubernetes refuses it)"
    if (
        _is_true(v["registry_persistence"])
        and _is_true(v["registry_pvc_create"])
        and not [mode for mode in value if mode in _WRITABLE_MODES]
    ):
        return (
            f"{name} must include a writable mode ({', '.join(_WRITABLE_MODES)}): the registry writes its images"
            " to the claim"
        )
    return ""


def _storage(v: dict) -> str:
    value = v["registry_storage"]
    if value not in _STORAGES:
        return f"registry_storage must be one of {', '.join(_STORAGES)}, got {got(value)}"
    if value == "s3" and _is_true(v["registry_persistence"]):
        return (
            "registry_storage=s3 and registry_persistence=true cannot be combined: with s3 the hub keeps its images"
            " in the bucket and would never use the claim (set one of them)"
        )
    return ""


def _s3_required(v: dict, name: str, problem: str) -> str:
    """With s3 storage, ``name`` must not be empty (its own rule was checked by ``problem``)."""
    if problem or v["registry_storage"] != "s3" or v[name] != "":
        return problem
    return f"{name} must be set with registry_storage=s3"


def _s3_endpoint(v: dict) -> str:
    name = "registry_s3_endpoint"
    problem = _text(v, name, _RE_S3_ENDPOINT, _S3_ENDPOINT, empty=True, longest=512)
    if problem or v[name] == "":
        return problem
    host = v[name].split("://", 1)[1].rstrip("/")
    if not match(host, _RE_HOST_PORT):
        return f"{name} must be {_S3_ENDPOINT}, got {got(v[name])}"
    return ""


def _scale(v: dict) -> list[str]:
    """min-scale 0 or max-scale other than 1 only where the images outlive a pod, or are shared."""
    low = _integer(v, "registry_min_scale", 0, _SCALE_MAX)
    high = _integer(v, "registry_max_scale", 0, _SCALE_MAX)
    if low or high:
        return [low, high]
    s3 = v["registry_storage"] == "s3"
    minimum, maximum = to_int(v["registry_min_scale"]), to_int(v["registry_max_scale"])
    if maximum != 1 and not s3:
        return [
            "",
            f"registry_max_scale must be 1 unless registry_storage=s3, got {maximum}: each replica would keep"
            " images of its own, and a pull could reach one that never got the push",
        ]
    if minimum == 0 and not (s3 or _is_true(v["registry_persistence"])):
        return [
            "registry_min_scale 0 needs registry_storage=s3 or registry_persistence=true: a hub that scales to zero"
            " loses the images kept in its pod",
            "",
        ]
    if maximum and minimum > maximum:
        return [f"registry_min_scale ({minimum}) must not be more than registry_max_scale ({maximum})", ""]
    return ["", ""]


def _metric(v: dict) -> str:
    value = v["registry_autoscaling_metric"]
    if value == "" or value in _METRICS:
        return ""
    return (
        f"registry_autoscaling_metric must be empty (Knative's default) or one of {', '.join(_METRICS)},"
        f" got {got(value)}"
    )


def registry_input_problems(variables: dict) -> list[str]:
    """One message per wrong variable of the registry role's main entry point, in the order they always had."""
    v = variables
    problems = [
        _text(v, "registry_name", _RE_DNS1035_LABEL, _DNS1035_LABEL),
        _text(v, "registry_namespace", _RE_DNS1123_LABEL, _DNS1123_LABEL),
        _text(v, "registry_image", _RE_IMAGE_REFERENCE, _IMAGE, longest=512),
        _port(v),
        _boolean(v, "registry_cluster_local"),
        _env(v),
        _annotations(v),
        _labels(v),
        _integer(v, "registry_wait_timeout", 1, 86400),
        _boolean(v, "registry_persistence"),
        _text(v, "registry_pvc_name", _RE_DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN),
        _boolean(v, "registry_pvc_create"),
        _text(v, "registry_pvc_size", _RE_QUANTITY, _QUANTITY, longest=64),
        _text(v, "registry_pvc_storage_class", _RE_DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN, empty=True),
        _access_modes(v),
        _boolean(v, "registry_check_feature_flags"),
        _boolean(v, "registry_allow_storage_change"),
        _text(v, "registry_knative_namespace", _RE_DNS1123_LABEL, _DNS1123_LABEL),
        _text(v, "registry_auth_secret", _RE_DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN, empty=True),
        _text(v, "registry_auth_secret_key", _RE_SECRET_KEY, _SECRET_KEY),
        _text(v, "registry_auth_realm", _RE_REALM, _REALM, longest=256),
        _text(v, "registry_push_host_override", _RE_HOST_PORT, _HOST_PORT, empty=True),
        _text(v, "registry_pull_host_override", _RE_HOST_PORT, _HOST_PORT, empty=True),
        _storage(v),
        _s3_endpoint(v),
        _s3_required(v, "registry_s3_bucket", _text(v, "registry_s3_bucket", _RE_BUCKET, _BUCKET, empty=True)),
        _text(v, "registry_s3_region", _RE_REGION, _REGION),
        _text(v, "registry_s3_credentials_secret", _RE_DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN, empty=True),
        _text(v, "registry_s3_access_key_item", _RE_SECRET_KEY, _SECRET_ITEM),
        _text(v, "registry_s3_secret_key_item", _RE_SECRET_KEY, _SECRET_ITEM),
        _boolean(v, "registry_s3_force_path_style"),
        _boolean(v, "registry_s3_skip_verify"),
        _boolean(v, "registry_s3_redirect"),
        _text(v, "registry_s3_root_directory", _RE_ROOT_DIRECTORY, _ROOT_DIRECTORY, empty=True),
        _text(v, "registry_http_secret", _RE_DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN),
        *_scale(v),
        _integer(v, "registry_autoscaling_target", 0, 100000),
        _metric(v),
        # Not passed by callers older than the option: absent means "".
        _notifications({**v, "registry_notifications_secret": v.get("registry_notifications_secret", "")}),
        _log_level({**v, "registry_log_level": v.get("registry_log_level", "")}),
    ]
    return [problem for problem in problems if problem]


class FilterModule:
    def filters(self) -> dict:
        return {"registry_input_problems": registry_input_problems}
