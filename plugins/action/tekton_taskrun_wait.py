# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the tekton_taskrun_wait module, and prints the build's progress while it waits.

See plugin_utils/_progress.py for when progress is shown, and why an action plugin.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.knlab.serverless.plugins.plugin_utils._action import FollowingAction
from ansible_collections.knlab.serverless.plugins.plugin_utils._progress import TaskRunFollower


class ActionModule(FollowingAction):
    def follower(self, client: Any, say: Any) -> TaskRunFollower | None:
        args = self._task.args
        if not args.get("name") or not args.get("namespace"):
            return None
        return TaskRunFollower(client, say, str(args["namespace"]), str(args["name"]))
