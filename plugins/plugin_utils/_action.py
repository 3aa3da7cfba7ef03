# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of the action plugins that show a wait's progress (see ``_progress.py`` for why).

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible_collections.knlab.serverless.plugins.plugin_utils._progress import Follower, client_for, wanted


def validate_like_the_module(
    args: dict[str, Any], options: dict[str, Any], check: Callable[[dict[str, Any]], None], **spec_kwargs: Any
) -> dict[str, Any] | None:
    """``args`` through the module's argument spec and its own ``check``; None when either refuses."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: PLC0415
    from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError  # noqa: PLC0415
    from ansible_collections.knlab.serverless.plugins.module_utils._module import (  # noqa: PLC0415
        argument_spec,
        strict_type_problem,
    )

    spec = argument_spec(**options)
    try:
        if strict_type_problem(spec, args):
            return None
        checked = ArgumentSpecValidator(spec, **spec_kwargs).validate(dict(args))
        if checked.error_messages:
            return None
        params = checked.validated_parameters
        check(params)
    except (ServerlessError, TypeError, ValueError):
        return None
    return params


display = Display()


class FollowingAction(ActionBase):
    """An action that runs its module unchanged, with a ``Follower`` beside it when ``wanted``."""

    _supports_check_mode = True
    _supports_async = True

    def follower(self, client: Any, say: Callable[[str], None], params: dict[str, Any]) -> Follower | None:
        """The follower for the module's validated ``params`` (None: nothing to follow)."""
        raise NotImplementedError

    def validated(self) -> dict[str, Any] | None:
        """The task's arguments as the module will see them, or None when the module will refuse them.

        Bad input must fail before any request (docs/RELIABILITY.md): the follower starts only for
        arguments that pass the module's own checks, so an invalid call sends nothing from here either.
        """
        raise NotImplementedError

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # no longer used by ansible-core
        follower = None
        params = self.validated() if wanted(self) else None
        if params is not None:
            client = client_for(params)
            follower = self.follower(client, display.display, params) if client is not None else None
        wrap_async = self._task.async_val and not self._connection.has_native_async
        try:
            if follower is not None:
                follower.start()
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        finally:
            if follower is not None:
                follower.stop()
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
