# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the knative_service module, and prints the rollout's progress while it waits for Ready.

See plugin_utils/_progress.py for when progress is shown, and why an action plugin.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.knlab.serverless.plugins.plugin_utils._action import FollowingAction
from ansible_collections.knlab.serverless.plugins.plugin_utils._progress import RolloutFollower


class ActionModule(FollowingAction):
    def follower(self, client: Any, say: Any) -> RolloutFollower | None:
        args = self._task.args
        try:
            waits = boolean(args.get("wait", True), strict=True) and args.get("state", "present") == "present"
        except TypeError:
            return None  # the module refuses the value itself, with its own message
        if not waits or not args.get("name"):
            return None
        return RolloutFollower(client, say, str(args.get("namespace") or "default"), str(args["name"]))
