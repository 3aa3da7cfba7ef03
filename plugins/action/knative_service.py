# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the knative_service module, and prints the rollout's progress while it waits for Ready.

See plugin_utils/_progress.py for when progress is shown, and why an action plugin.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._knative import validate
from ansible_collections.knlab.serverless.plugins.modules.knative_service import OPTIONS
from ansible_collections.knlab.serverless.plugins.plugin_utils._action import FollowingAction, validate_like_the_module
from ansible_collections.knlab.serverless.plugins.plugin_utils._progress import RolloutFollower


class ActionModule(FollowingAction):
    def validated(self) -> dict[str, Any] | None:
        return validate_like_the_module(
            self._task.args, OPTIONS, validate, required_if=[("state", "present", ["image"])]
        )

    def follower(self, client: Any, say: Any, params: dict[str, Any]) -> RolloutFollower | None:
        if not params["wait"] or params["state"] != "present":
            return None
        return RolloutFollower(client, say, params["namespace"], params["name"])
