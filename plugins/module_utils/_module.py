# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drive one module action and turn every failure into a one-line ``fail_json``.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import copy
import re
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.errors import NoLogError
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError


def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A module's own options plus kubernetes.core's auth options (a fresh copy each call)."""
    # Here, not at the top: registry_image_info uses this module but no Kubernetes client, and
    # _client's imports (urllib3 among them) cost a module run about 0.1 s.
    from ansible_collections.knlab.serverless.plugins.module_utils._client import AUTH_ARG_SPEC  # noqa: PLC0415

    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(options)
    return spec


class ServerlessModule(AnsibleModule):
    """``AnsibleModule`` that refuses what ansible-core would quietly convert, and names the option.

    - The raw arguments are checked against the spec's types first (``strict_type_problem``):
      ansible-core would turn ``["a"]`` into ``"['a']"`` for a string with only a warning, send
      ``port: true`` as ``true``, read ``"1e3"`` as 1000, make ``[5]`` of ``5`` for a list, and
      crash with "argument of type 'int' is not iterable" for an int given to a dict option with
      suboptions. Such a call fails with the option's name instead.
    - A string that is not a dict for a dict option with suboptions fails with ansible-core's
      message that names the option, not the bare "dictionary requested" it reports first.

    Both happen while the module is built, before any request.
    """

    def __init__(self, argument_spec: dict[str, Any], **kwargs: Any) -> None:
        self._validating = True
        problem = strict_type_problem(argument_spec, load_raw_params())
        if problem:
            # Build the module from a spec that takes every option as it is (secrets still
            # masked), only to fail the way Ansible expects: one JSON result, no traceback.
            super().__init__(argument_spec=_permissive(argument_spec), supports_check_mode=True)
            self.fail_json(msg=problem)
        super().__init__(argument_spec=argument_spec, **kwargs)
        self._validating = False

    def fail_json(self, msg: str, **kwargs: Any) -> None:  # type: ignore[override]
        if self._validating:
            msg = _named_validation_message(getattr(self, "validation_result", None), msg)
        super().fail_json(msg=msg, **kwargs)


def load_raw_params() -> dict[str, Any]:
    """The module's arguments as Ansible sent them, before any conversion (a fresh copy)."""
    return copy.deepcopy(basic._load_params())


def _permissive(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        option: {"type": "raw", "no_log": bool(rules.get("no_log")), "aliases": list(rules.get("aliases") or [])}
        for option, rules in spec.items()
    }


def _named_validation_message(result: Any, msg: str) -> str:
    """Skip the no_log scan's bare "dictionary requested" error for the next one, which names the option."""
    errors = list(getattr(getattr(result, "errors", None), "errors", None) or [])
    if not errors or not isinstance(errors[0], NoLogError):
        return msg
    named = next((error for error in errors if not isinstance(error, NoLogError)), None)
    return str(named) if named is not None else msg


_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_FLOAT_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_CONTAINERS = (list, dict)


def strict_type_problem(spec: Mapping[str, Any], params: Any, where: str = "") -> str | None:
    """The first option whose raw value ansible-core would have converted silently, as a message."""
    if not isinstance(params, Mapping):
        return None
    for option, rules in spec.items():
        names = [option, *(rules.get("aliases") or [])]
        given = next((name for name in names if params.get(name) is not None), None)
        if given is None:
            continue
        problem = _value_problem(f"{where}{given}", rules, params[given])
        if problem:
            return problem
    return None


def _value_problem(name: str, rules: Mapping[str, Any], value: Any) -> str | None:
    kind = rules.get("type", "str")
    if kind in ("str", "path") and isinstance(value, (*_CONTAINERS, bool)):
        return f"{name} must be a string, got {_type_name(value)}"
    if kind == "int" and (
        isinstance(value, (*_CONTAINERS, bool))
        or (isinstance(value, float) and not value.is_integer())
        or (isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value))
    ):
        return f"{name} must be a whole number, got {_type_name(value)}"
    if kind == "float" and (
        isinstance(value, (*_CONTAINERS, bool)) or (isinstance(value, str) and not _FLOAT_TEXT.fullmatch(value))
    ):
        return f"{name} must be a number, got {_type_name(value)}"
    if kind == "bool" and isinstance(value, _CONTAINERS):
        return f"{name} must be true or false, got {_type_name(value)}"
    if kind == "dict" and isinstance(value, (list, bool, int, float)):
        return f"{name} must be a dict, got {_type_name(value)}"
    if kind == "list":
        if isinstance(value, (dict, bool, int, float)):
            return f"{name} must be a list, got {_type_name(value)}"
        if isinstance(value, list):
            return _elements_problem(name, rules, value)
    if kind == "dict" and isinstance(value, Mapping) and rules.get("options"):
        return strict_type_problem(rules["options"], value, f"{name}.")
    return None


def _elements_problem(name: str, rules: Mapping[str, Any], items: list[Any]) -> str | None:
    elements = rules.get("elements")
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if elements in ("str", "path") and (item is None or isinstance(item, (*_CONTAINERS, bool))):
            return f"{where} must be a string, got {_type_name(item)}"
        if elements == "dict":
            if not isinstance(item, (Mapping, str)):
                return f"{where} must be a dict, got {_type_name(item)}"
            if isinstance(item, Mapping) and rules.get("options"):
                problem = strict_type_problem(rules["options"], item, f"{where}.")
                if problem:
                    return problem
    return None


def _type_name(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else "a string"
    names = {list: "a list", dict: "a dict", bool: "a boolean", type(None): "nothing", float: "a fraction"}
    return names.get(type(value), type(value).__name__)


def one_line(text: object) -> str:
    """Collapse whitespace so a message stays on one line in Ansible's output."""
    return " ".join(str(text).split())


def run(module: Any, action: Callable[[Any], dict]) -> None:
    """``exit_json`` with what ``action(module)`` returns, or ``fail_json`` with why it failed.

    ``ServerlessError`` (``ApiError``, wait failures, missing libraries, validation) carries the
    message and any extra result keys. Anything else is a bug: the user still gets one line, and
    the traceback goes to the ``exception`` key that Ansible shows with ``-vvv``.
    """
    try:
        result = action(module)
    except ServerlessError as err:
        module.fail_json(msg=one_line(err.msg), **err.result)
    except Exception as err:
        module.fail_json(msg=one_line(f"Unexpected {type(err).__name__}: {err}"), exception=traceback.format_exc())
    else:
        module.exit_json(**result)
