# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input rules shared by the modules' option checks: names, keys, image references, paths.

The rules are the ones Kubernetes, Knative and Tekton apply (apimachinery's validation package,
distribution's reference grammar, Go's ``path.Clean``), so a value refused here would have been
refused by the cluster, only later and after a request. Each caller words its own error (what the
value is for matters to the user); the rule itself lives here once. Every pattern is applied
with ``fullmatch``: a ``$`` anchor would also accept a value with a trailing newline.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError

# RFC 1123 label as Kubernetes checks it (IsDNS1123Label): namespaces, volume names.
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# RFC 1035 label (IsDNS1035Label): Knative Service names, which become DNS names under a domain.
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Label values and the name part of label and annotation keys (IsQualifiedName, IsValidLabelValue).
QUALIFIED_NAME_MAX = 63
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
# Kubernetes' portable rule for environment variable names (IsEnvVarName).
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
# Annotations: all keys and values of one object together (TotalAnnotationSizeLimitB).
ANNOTATIONS_MAX_BYTES = 256 * 1024
# int32 fields (scale bounds, containerConcurrency, ports) cannot hold more.
INT32_MAX = 2**31 - 1
# No wait the modules run may be longer than a day: a larger value is a mistake in units, and
# Python's clocks and sockets refuse some of them outright (OverflowError).
MAX_WAIT_SECONDS = 86400
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# distribution/reference: [host[:port]/]path[:tag][@digest]
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<host>{_HOST})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?"
)
IMAGE_NAME_MAX = 255


class InvalidOption(ServerlessError):
    """An option the cluster would reject, or that cannot be honoured; found before any request."""


def is_dns1123_label(value: Any) -> bool:
    """At most 63 lowercase letters, digits and '-', starting and ending with a letter or digit."""
    return isinstance(value, str) and 0 < len(value) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL.fullmatch(value))


def is_dns1035_label(value: Any) -> bool:
    """A DNS-1123 label that starts with a letter."""
    return isinstance(value, str) and 0 < len(value) <= DNS1123_LABEL_MAX and bool(_DNS1035_LABEL.fullmatch(value))


def is_dns1123_subdomain(value: Any, max_length: int = DNS1123_SUBDOMAIN_MAX) -> bool:
    """Dot-separated DNS-1123 labels, at most ``max_length`` characters in all."""
    return isinstance(value, str) and 0 < len(value) <= max_length and bool(_DNS1123_SUBDOMAIN.fullmatch(value))


def is_label_value(value: Any) -> bool:
    """Empty, or at most 63 letters, digits, '-', '_', '.', starting and ending alphanumeric."""
    return isinstance(value, str) and (value == "" or is_qualified_name_part(value))


def is_qualified_name_part(value: str) -> bool:
    return 0 < len(value) <= QUALIFIED_NAME_MAX and bool(_QUALIFIED_NAME.fullmatch(value))


def is_qualified_name(value: Any) -> bool:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then a name part."""
    if not isinstance(value, str):
        return False
    prefix, slash, name = value.rpartition("/")
    return is_qualified_name_part(name) and (not slash or is_dns1123_subdomain(prefix))


def is_env_var_name(value: Any) -> bool:
    """Letters, digits, '_', '-' and '.', not starting with a digit, and not '.', '..' or '..x'."""
    if not isinstance(value, str) or value == "." or value.startswith(".."):
        return False
    return bool(_ENV_VAR_NAME.fullmatch(value))


def has_control_characters(value: str) -> bool:
    return bool(_CONTROL.search(value))


def parse_image_reference(value: Any) -> dict[str, str | None] | None:
    """``{name, host, tag, digest}`` of an image reference, or None when it is not one.

    The repository path must be lowercase; a tag, when its ':' is there, must not be empty.
    """
    if not isinstance(value, str):
        return None
    match = _IMAGE_REFERENCE.fullmatch(value)
    if not match or len(match.group("name")) > IMAGE_NAME_MAX:
        return None
    return match.groupdict()


def clean_path(path: str) -> str:
    """Go's ``path.Clean``: the shortest equivalent path (``/dev/../`` is ``/``, ``/dev//log`` is ``/dev/log``)."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def check_string(option: str, value: Any, *, empty: bool = False, max_length: int | None = None) -> str:
    """``value`` as a string without control characters, or ``InvalidOption`` naming ``option``."""
    if not isinstance(value, str):
        raise InvalidOption(f"{option} must be a string, got {type(value).__name__}")
    if not value and not empty:
        raise InvalidOption(f"{option} must not be empty")
    if has_control_characters(value):
        raise InvalidOption(f"{option} must not contain control characters (newline, tab, NUL, ...): {value!r}")
    if max_length is not None and len(value) > max_length:
        raise InvalidOption(f"{option} is {len(value)} characters long; at most {max_length} are allowed")
    return value


def check_range(option: str, value: Any, low: float, high: float) -> Any:
    """``value`` as a finite number (never a bool) with ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOption(f"{option} must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidOption(f"{option} must be a finite number, got {value}")
    if not low <= value <= high:
        raise InvalidOption(f"{option} must be between {_number(low)} and {_number(high)}, got {_number(value)}")
    return value


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


def check_wait_seconds(option: str, value: Any) -> Any:
    """A wait's length in seconds: more than 0 and at most ``MAX_WAIT_SECONDS``."""
    check_range(option, value, 0, MAX_WAIT_SECONDS)
    if value <= 0:
        raise InvalidOption(f"{option} must be greater than 0, got {_number(value)}")
    return value


def scalar_text(value: Any, option: str) -> str:
    """A YAML scalar as the text a user typed (booleans as ``true``/``false``); containers are refused."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    raise InvalidOption(f"{option} must be a string, got {type(value).__name__}")


def check_labels(option: str, labels: Any) -> dict[str, str]:
    """Label keys and values as Kubernetes requires them, as strings."""
    if not isinstance(labels, dict):
        raise InvalidOption(f"{option} must be a dict of key: value")
    result: dict[str, str] = {}
    for key, raw in labels.items():
        if not is_qualified_name(key):
            raise InvalidOption(
                f"{option} key {key!r} is not a valid label key: an optional DNS subdomain prefix and '/', then "
                "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        value = scalar_text(raw, f"{option}.{key}")
        if not is_label_value(value):
            raise InvalidOption(
                f"{option}.{key} value {value!r} is not a valid label value: at most 63 letters, digits, '-', '_' "
                "or '.', starting and ending with a letter or digit"
            )
        result[key] = value
    return result


def check_annotations(option: str, annotations: Any) -> dict[str, str]:
    """Annotation keys as Kubernetes requires them; values are any text, at most 256 KiB in all."""
    if not isinstance(annotations, dict):
        raise InvalidOption(f"{option} must be a dict of key: value")
    result: dict[str, str] = {}
    size = 0
    for key, raw in annotations.items():
        if not is_qualified_name(key):
            raise InvalidOption(
                f"{option} key {key!r} is not a valid annotation key: an optional DNS subdomain prefix and '/', "
                "then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        value = scalar_text(raw, f"{option}.{key}")
        if "\x00" in value:
            raise InvalidOption(f"{option}.{key} must not contain NUL characters")
        size += len(key.encode()) + len(value.encode())
        result[key] = value
    if size > ANNOTATIONS_MAX_BYTES:
        raise InvalidOption(f"{option} hold {size} bytes; Kubernetes allows at most {ANNOTATIONS_MAX_BYTES}")
    return result
