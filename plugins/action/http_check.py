# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the http_check module; in a fork of the controller when the task runs there (see plugin_utils/_fork.py)."""

from __future__ import annotations

from ansible_collections.knlab.serverless.plugins.modules import http_check
from ansible_collections.knlab.serverless.plugins.plugin_utils._action import ModuleAction


class ActionModule(ModuleAction):
    # Ansible's strategy loads the action plugin in the controller before it forks the worker:
    # importing the module here means the fork that runs it finds its code loaded.
    module = http_check
