# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the roles' input checks are made of, in Python instead of Jinja.

Each role's ``tasks/validate.yml`` is one ``assert`` over a list of problems, one sentence per
variable that is wrong. The list used to be one large Jinja expression per role; ansible-core
compiles every template of a task again for each task run (about 30 templates per check), which
made each check cost 0.1-0.15 s of every run. The checks now live in ``plugins/filter``
(``<role>_input_problems``), built from these pieces; the messages are the same sentences.

The helpers keep the meaning the Jinja tests had, so that a value is judged as before:
``is string``, ``is integer`` (a bool is not one), ``is number`` (a bool is one), ``is boolean``,
``is mapping``, ``is sequence``, ``is match`` (``re.match`` on the text), the ``int`` filter
and ``to_json | truncate(80, true)`` for the value shown in a message.

Private to knlab.serverless: not a public API. No controller imports, so units can load it.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

# Jinja's truncate keeps a string that is at most this much longer than the length asked for.
_TRUNCATE_LEEWAY = 5

# Patterns shared by the roles (Kubernetes' apimachinery validation, the docker reference grammar).
# Each is used with re.match; the ones meant for whole values end in \Z ($ would accept a
# trailing newline).
RE_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
RE_DNS_SUBDOMAIN = rf"{RE_DNS_LABEL}(?:[.]{RE_DNS_LABEL})*"
RE_HOST_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?(?:[.][A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?)*"
RE_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# A host name, IPv4 or [IPv6] address (the docker reference grammar's domain), and an optional port.
RE_HOST = rf"(?:{RE_HOST_NAME}|\[[0-9A-Fa-f:.]+\])(?::{RE_PORT})?"
RE_DIGEST = r"(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})"
RE_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
RE_REPOSITORY = rf"{RE_PATH_COMPONENT}(?:/{RE_PATH_COMPONENT})*"
RE_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
RE_INT = r"[-+]?[0-9]{1,10}\Z"
# Label and annotation keys: an optional DNS subdomain prefix and "/", then the name part.
RE_QUALIFIED_KEY = (
    rf"(?:(?=[^/]{{1,253}}/){RE_DNS_SUBDOMAIN}/)?(?=[^/]{{1,63}}\Z)[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?\Z"
)
RE_LABEL_VALUE = r"(?=.{0,63}\Z)(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z"
# A whole image reference ([host[:port]/]repository[:tag][@digest], at most 600 characters), and its
# tag at the end: the name before tag and digest may hold at most 255 (image_name_too_long).
RE_IMAGE = rf"(?=.{{1,600}}\Z)(?:{RE_HOST}/)?{RE_REPOSITORY}(?::{RE_TAG})?(?:@{RE_DIGEST})?\Z"
RE_IMAGE_TAIL = rf":{RE_TAG}\Z"
KEY_RULE = (
    "(an optional DNS subdomain prefix of at most 253 characters and /, then at most 63"
    " letters, digits, hyphens, underscores and dots, starting and ending with a letter or digit)"
)
BOOL_WORDS = ("true", "false", "yes", "no")


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def is_string(value: Any) -> bool:
    return isinstance(value, str)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Jinja's ``number`` test: a bool counts as a number."""
    return isinstance(value, numbers.Number)


def is_boolean(value: Any) -> bool:
    return value is True or value is False


def is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_sequence(value: Any) -> bool:
    """Jinja's ``sequence`` test: anything with a length and items (strings and dicts included)."""
    try:
        len(value)
        value.__getitem__  # noqa: B018 - the attribute's presence is the test
    except Exception:  # any failure means "not a sequence", as in Jinja
        return False
    return True


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def match(value: Any, pattern: str) -> bool:
    """Ansible's ``match`` test: ``re.match`` on the value's text."""
    return _compiled(pattern).match(_text(value)) is not None


def search(value: Any, pattern: str) -> bool:
    """Ansible's ``search`` test."""
    return _compiled(pattern).search(_text(value)) is not None


def to_int(value: Any) -> int:
    """Jinja's ``int`` filter: the number, or 0 when the value is not one."""
    try:
        if isinstance(value, str):
            return int(value, 10)
        return int(value)
    except (TypeError, ValueError, OverflowError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return 0


def truncate(text: str, length: int) -> str:
    """Jinja's ``truncate(length, true)``: cut words, end with ``...``, leeway 5."""
    if len(text) <= length + _TRUNCATE_LEEWAY:
        return text
    return text[: length - 3] + "..."


def to_json(value: Any) -> str:
    return json.dumps(value, default=_text)


def got(value: Any, length: int = 80) -> str:
    """The value as a message shows it: its JSON, at most ``length`` characters."""
    return truncate(to_json(value), length)


def int_like(value: Any) -> bool:
    """An integer, or the text of one (as ``-e name=value`` gives it)."""
    return is_integer(value) or (is_string(value) and match(value, RE_INT))


def int_in(value: Any, low: int, high: int) -> bool:
    return int_like(value) and low <= to_int(value) <= high


def bool_like(value: Any) -> bool:
    """A boolean, or one of the words Ansible reads as one."""
    return is_boolean(value) or (is_string(value) and value.lower() in BOOL_WORDS)


def rejected(items: Iterable[Any], test: Callable[[Any], bool]) -> list[Any]:
    """``items | reject(test) | list``."""
    return [item for item in items if not test(item)]


# -- Added for the knative_stack role (knative_stack_input_problems); to_bool is the registry's too ---
# Kept apart from the pieces above so that the additions of other roles merge cleanly.

# Integers given as text without a sign: the knative_stack role reads "+5" and "-0" as no integer.
RE_UNSIGNED_INT = r"[0-9]{1,10}\Z"
# Ansible's bool filter: the words it reads as true and as false (after lower()).
_BOOL_TRUE = frozenset(("yes", "on", "true", "1"))
_BOOL_FALSE = frozenset(("no", "off", "false", "0"))


def uint_like(value: Any) -> bool:
    """An integer, or the text of one without a sign (at most 10 digits), as ``-e name=value`` gives it.

    The same as ``int_like`` except that text with a ``+`` or ``-`` is not one.
    """
    return is_integer(value) or (is_string(value) and match(value, RE_UNSIGNED_INT))


def to_bool(value: Any) -> bool:
    """Ansible's ``bool`` filter (without its deprecation warning for values it does not know).

    Text is read case-insensitively (yes/on/true/1, no/off/false/0), integers and bools by their
    text; anything else is true only when it equals 1.
    """
    if isinstance(value, str):
        value = value.lower()
    elif isinstance(value, int):
        value = str(value).lower()
    try:
        if value in _BOOL_TRUE:
            return True
        if value in _BOOL_FALSE:
            return False
        return bool(value == 1)
    except TypeError:  # unhashable (a list, a dict): the filter says False
        return False


# -- Added for the build role (build_input_problems, build_source_problems) ------------------------

# A ConfigMap or Secret key, as Kubernetes' IsConfigMapKey has it: at most 253 letters, digits,
# -, _ and ., neither . nor starting with .. (a file name in a ConfigMap volume, too).
RE_CONFIGMAP_KEY = r"(?![.][.])(?![.]\Z)[-._a-zA-Z0-9]{1,253}\Z"


def jinja_sorted(items: Iterable[Any]) -> list[Any]:
    """``items | sort``: Jinja's sort ignores the case of text by default (and is stable)."""
    return sorted(items, key=lambda item: item.lower() if isinstance(item, str) else item)


def image_reference(value: str) -> bool:
    """A valid image reference whose name (without tag and digest) is at most 255 characters."""
    return match(value, RE_IMAGE) and len(re.sub(RE_IMAGE_TAIL, "", re.sub("@.*", "", value))) <= 255


def label_dict_problem(name: str, value: Any) -> str:
    """What is wrong with a dict of Kubernetes labels (keys and values), as one sentence, or ''."""
    if not is_mapping(value) or rejected(value.keys(), is_string) or rejected(value.values(), is_string):
        return f"{name} must be a dict of label keys to string label values, got {got(value)}"
    bad = rejected(value.keys(), lambda key: match(key, RE_QUALIFIED_KEY))
    if bad:
        return f"{name} has invalid keys {KEY_RULE}: {got(bad, 200)}"
    bad = [key for key, item in value.items() if not match(item, RE_LABEL_VALUE)]
    if bad:
        return (
            f"{name} has invalid values (at most 63 letters, digits, hyphens, underscores and dots, starting"
            f" and ending with a letter or digit) for {got(bad, 200)}"
        )
    return ""
