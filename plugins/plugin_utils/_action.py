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

display = Display()


class FollowingAction(ActionBase):
    """An action that runs its module unchanged, with a ``Follower`` beside it when ``wanted``."""

    _supports_check_mode = True
    _supports_async = True

    def follower(self, client: Any, say: Callable[[str], None]) -> Follower | None:
        raise NotImplementedError

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # no longer used by ansible-core
        follower = None
        if wanted(self):
            client = client_for(self._task.args)
            follower = self.follower(client, display.display) if client is not None else None
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
