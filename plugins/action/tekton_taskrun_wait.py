# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the tekton_taskrun_wait module, and prints the build's progress while it waits.

See plugin_utils/_progress.py for when progress is shown, and why an action plugin.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._tekton import validate_wait_options
from ansible_collections.knlab.serverless.plugins.modules.tekton_taskrun_wait import OPTIONS
from ansible_collections.knlab.serverless.plugins.plugin_utils._action import FollowingAction, validate_like_the_module
from ansible_collections.knlab.serverless.plugins.plugin_utils._progress import TaskRunFollower


def _check(params: dict[str, Any]) -> None:
    validate_wait_options(params["namespace"], params["name"], params["timeout"], params["log_lines"])


class ActionModule(FollowingAction):
    def validated(self) -> dict[str, Any] | None:
        return validate_like_the_module(self._task.args, OPTIONS, _check)

    def follower(self, client: Any, say: Any, params: dict[str, Any]) -> TaskRunFollower | None:
        return TaskRunFollower(client, say, params["namespace"], params["name"])
