# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drive one module action and turn every failure into a one-line ``fail_json``.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._client import AUTH_ARG_SPEC
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError


def argument_spec(**options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A module's own options plus kubernetes.core's auth options (a fresh copy each call)."""
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(options)
    return spec


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
