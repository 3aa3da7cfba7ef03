# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drive one module action and turn every failure into a one-line ``fail_json``.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.errors import NoLogError
from ansible_collections.knlab.serverless.plugins.module_utils._client import AUTH_ARG_SPEC
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError


def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A module's own options plus kubernetes.core's auth options (a fresh copy each call)."""
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(options)
    return spec


class ServerlessModule(AnsibleModule):
    """``AnsibleModule`` that refuses what ansible-core would quietly convert, and names the option.

    - A list, dict or boolean given for a ``str`` or ``path`` option (ansible-core turns
      ``["a"]`` into ``"['a']"`` with only a warning), or a boolean for an ``int`` or ``float``
      option (``port: true`` would be sent as ``true``), fails with the option's name.
    - A value that is not a dict for a dict option with suboptions fails with ansible-core's
      message that names the option, not the bare "dictionary requested" it reports first.

    Both happen while the module is built, before any request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._raw_params: dict[str, Any] = {}
        self._validating = True
        super().__init__(*args, **kwargs)
        self._validating = False
        problem = strict_type_problem(self.argument_spec, self._raw_params)
        if problem:
            self.fail_json(msg=problem)

    def _load_params(self) -> None:
        super()._load_params()
        self._raw_params = copy.deepcopy(self.params)

    def fail_json(self, msg: str, **kwargs: Any) -> None:  # type: ignore[override]
        if self._validating:
            msg = _named_validation_message(getattr(self, "validation_result", None), msg)
        super().fail_json(msg=msg, **kwargs)


def _named_validation_message(result: Any, msg: str) -> str:
    """Skip the no_log scan's bare "dictionary requested" error for the next one, which names the option."""
    errors = list(getattr(getattr(result, "errors", None), "errors", None) or [])
    if not errors or not isinstance(errors[0], NoLogError):
        return msg
    named = next((error for error in errors if not isinstance(error, NoLogError)), None)
    return str(named) if named is not None else msg


_STRING_TYPES = ("str", "path")
_NUMBER_TYPES = ("int", "float")


def strict_type_problem(spec: Mapping[str, Any], params: Any, where: str = "") -> str | None:
    """The first option whose raw value ansible-core would have converted silently, as a message."""
    if not isinstance(params, Mapping):
        return None
    for option, rules in spec.items():
        value = params.get(option)
        if value is None:
            continue
        name = f"{where}{option}"
        kind = rules.get("type", "str")
        if kind in _STRING_TYPES and isinstance(value, (list, dict, bool)):
            return f"{name} must be a string, got {_type_name(value)}"
        if kind in _NUMBER_TYPES and isinstance(value, (bool, list, dict)):
            return f"{name} must be a number, got {_type_name(value)}"
        if kind == "list" and isinstance(value, list) and rules.get("elements") in _STRING_TYPES:
            for index, item in enumerate(value):
                if isinstance(item, (list, dict, bool)) or item is None:
                    return f"{name}[{index}] must be a string, got {_type_name(item)}"
        suboptions = rules.get("options")
        if suboptions:
            items = value if kind == "list" and isinstance(value, list) else [value]
            for index, item in enumerate(items):
                prefix = f"{name}[{index}]." if kind == "list" else f"{name}."
                problem = strict_type_problem(suboptions, item, prefix)
                if problem:
                    return problem
    return None


def _type_name(value: Any) -> str:
    names = {list: "a list", dict: "a dict", bool: "a boolean", type(None): "nothing"}
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
