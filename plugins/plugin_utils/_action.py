# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of the collection's action plugins: modules run in a fork of the controller when they can
(``_fork.py``), and waits show their progress (``_progress.py``).

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.json import Direction, get_module_encoder
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible_collections.knlab.serverless.plugins.module_utils._kubeconfig import remove_temp_files
from ansible_collections.knlab.serverless.plugins.plugin_utils._fork import (
    COLLECTION,
    FORK_ENV,
    LOCAL_TRANSPORTS,
    MODULES,
    PROFILE,
    run_in_fork,
    same_python,
)
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


class ForkingAction(ActionBase):
    """Runs the task's module as Ansible would, in a fork of the worker when it can (``_fork.py``).

    ``_execute_module`` decides once per module run (``_fork_plan``); the three steps of Ansible's own
    ``_execute_module`` that would start a new Python take the plan: no temporary directory
    (``_is_pipelining_enabled``), no AnsiballZ payload (``_configure_module``), and a fork instead of
    the command (``_low_level_execute_command``). Everything else is Ansible's code.
    """

    _supports_check_mode = True
    _supports_async = True

    _knlab_plan: tuple[str, str] | None = None  # the module's Python name and file, while it runs in a fork
    _knlab_args: dict[str, Any] | None = None  # its arguments, once Ansible has added its own

    def fork_wanted(self) -> bool:
        """Whether this task may run its module in a fork (the conditions Ansible's own choice does not decide)."""
        if os.environ.get(FORK_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
            return False
        if self._task.async_val or self._play_context.become or any(self._task.environment or ()):
            return False
        if C.DEFAULT_KEEP_REMOTE_FILES:  # someone wants the AnsiballZ payload to debug with
            return False
        return getattr(self._connection, "transport", "") in LOCAL_TRANSPORTS

    def _execute_module(self, module_name: Any = None, module_args: Any = None, *args: Any, **kwargs: Any) -> Any:
        task_vars = kwargs.get("task_vars") or (args[1] if len(args) > 1 else None) or {}
        self._knlab_plan = self._fork_plan(module_name or self._task.action, task_vars)
        try:
            return super()._execute_module(module_name, module_args, *args, **kwargs)
        finally:
            self._knlab_plan = self._knlab_args = None

    def _fork_plan(self, module_name: str, task_vars: dict[str, Any]) -> tuple[str, str] | None:
        """The module's Python name and file when it may run in a fork (see ``_fork.py``), else None."""
        if not self.fork_wanted():
            return None
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(
            module_name, collection_list=self._task.collections
        )
        resolved = getattr(found, "plugin_resolved_name", "") or ""
        path = getattr(found, "plugin_resolved_path", "") or ""
        if resolved.startswith(COLLECTION):
            resolved = "ansible_collections." + resolved.replace(COLLECTION, COLLECTION + "plugins.modules.", 1)
        if not (getattr(found, "resolved", False) and resolved.startswith(MODULES) and path.endswith(".py")):
            return None
        host_vars = task_vars
        if self._task.delegate_to:
            host_vars = (task_vars.get("ansible_delegated_vars") or {}).get(self._task.delegate_to) or {}
        interpreter = host_vars.get("ansible_python_interpreter")
        if not interpreter:
            return None  # interpreter discovery decides: the normal way
        try:
            interpreter = str(self._templar.template(interpreter))
        except Exception:  # let Ansible's own path report a bad interpreter setting
            return None
        if not same_python(interpreter.strip()):
            return None
        return resolved, path

    def _is_pipelining_enabled(self, module_style: str, wrap_async: bool = False) -> bool:
        if self._knlab_plan is not None and module_style == "new" and not wrap_async:
            return True  # the fork needs no temporary file
        return super()._is_pipelining_enabled(module_style, wrap_async)

    def _configure_module(self, module_name: Any, module_args: Any, task_vars: Any) -> Any:
        if self._knlab_plan is None:
            return super()._configure_module(module_name, module_args, task_vars)
        self._knlab_args = module_args
        # Everything _execute_module reads; no AnsiballZ payload: the fork runs the installed module.
        bits = SimpleNamespace(
            module_style="new", shebang=f"#!{sys.executable}", b_module_data=b"", serialization_profile=PROFILE
        )
        return bits, self._knlab_plan[1]

    def _low_level_execute_command(self, cmd: Any, sudoable: bool = True, in_data: Any = None, **kwargs: Any) -> Any:
        if self._knlab_plan is None or self._knlab_args is None or in_data is None:
            return super()._low_level_execute_command(cmd, sudoable=sudoable, in_data=in_data, **kwargs)
        module_fqn, module_args = self._knlab_plan[0], self._knlab_args
        self._knlab_args = None  # one module run per plan
        encoder = get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)
        try:
            json_params = json.dumps({"ANSIBLE_MODULE_ARGS": module_args}, cls=encoder).encode()
        except TypeError as err:  # as Ansible words it for a module it runs itself
            raise AnsibleError(f"Failed to serialize arguments for the {self._task.action!r} module.") from err
        display.vvv(f"knlab.serverless: running {module_fqn} in a fork of the controller ({FORK_ENV}=0: a new process)")
        # The local connection runs a module in the playbook's directory.
        cwd = self._loader.get_basedir() or ""
        return run_in_fork(module_fqn, json_params, PROFILE, cwd=cwd, started=self.module_started)

    def module_started(self) -> None:
        """Called in the worker right after the module's child started (a hook for followers)."""


class ModuleAction(ForkingAction):
    """The action of a module with nothing to add: Ansible's ``normal`` action, with the fork."""

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # no longer used by ansible-core
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result


class FollowingAction(ForkingAction):
    """An action that runs its module unchanged, with a ``Follower`` beside it when ``wanted``.

    The follower starts once the module is about to run: after the fork when the module runs in one
    (``_fork.py``), so that the child never inherits the follower's thread.
    """

    _knlab_follower: Follower | None = None

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
        self._knlab_follower = follower
        try:
            result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        finally:
            self._knlab_follower = None
            if follower is not None and follower.started:
                follower.stop()
            # The follower's client may have written the kubeconfig's certificates and keys to temp
            # files; Ansible's worker ends with os._exit, which skips the exit handler that removes them.
            remove_temp_files()
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _configure_module(self, module_name: Any, module_args: Any, task_vars: Any) -> Any:
        configured = super()._configure_module(module_name, module_args, task_vars)
        if self._knlab_plan is None:  # the module runs in its own process, which starts next
            self.module_started()
        return configured

    def module_started(self) -> None:
        follower = self._knlab_follower
        if follower is not None and not follower.started:
            follower.start()
