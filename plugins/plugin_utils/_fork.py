# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's own modules in a fork of the controller when the task runs on the controller.

Private to knlab.serverless: not a public API.

Why: a module task normally costs a new Python process that imports ``ansible.module_utils.basic``
and the module's utilities from the AnsiballZ zip, compiling every file again (zip imports keep no
bytecode). That start-up is 0.2-0.5 s per task here, most of an unchanged re-run
(benchmarks/RESULTS.md). When the module would run on this very machine, with this very Python,
as this very user, a ``fork()`` of the controller's worker gives the same result without it: the
child already has Ansible's module utilities imported from the installed, compiled copy.

What stays exactly as Ansible does it: the module's arguments (``_update_module_args``: check mode,
diff, no_log, verbosity ...), the serialization profile, the module's own code and its exit through
``exit_json``/``fail_json``, and the parsing and cleaning of its JSON result (``_execute_module``
after the command). Only the process that runs the module changes: a forked child instead of
``<interpreter>`` reading the AnsiballZ payload.

When it is used (all must hold; otherwise the module runs the normal way):
- the module is one of this collection's (``knlab.serverless.*``), a new-style Python module;
- the connection is the controller's own (``local``), without become, and the task is not async;
- the host's ``ansible_python_interpreter`` is the controller's Python (``sys.executable``), as
  Ansible sets it for the implicit localhost; with interpreter discovery, the module runs the normal
  way;
- the task sets no ``environment`` (the child inherits the controller's);
- ``KNLAB_SERVERLESS_FORK`` is not ``0``/``false``/``no``/``off``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import selectors
import signal
import sys
from collections.abc import Callable
from typing import Any

FORK_ENV = "KNLAB_SERVERLESS_FORK"
LOCAL_TRANSPORTS = ("local", "ansible.builtin.local", "ansible.legacy.local")
COLLECTION = "knlab.serverless."
MODULES = "ansible_collections.knlab.serverless.plugins.modules."
# The collection's modules define no METADATA, so Ansible sends their arguments and reads their
# results with its 'legacy' serialization profile (tests/unit/plugins/plugin_utils/test_fork.py checks).
PROFILE = "legacy"


def same_python(interpreter: str) -> bool:
    """The very path of this Python (a symlink to the same binary may be another environment's)."""
    try:
        return os.path.abspath(interpreter) == os.path.abspath(sys.executable)
    except (OSError, ValueError):
        return False


def _become_a_module_process(cwd: str) -> None:
    """In the child: undo what the controller set up that a module's own process would not have."""
    # The exit handlers registered so far are the controller's (its temporary directory's removal
    # among them): the child runs only those the module registers, as a process of its own would.
    atexit._clear()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A module process is a target, not the controller: its warnings and deprecations go into its
    # result (not to the controller's Display, whose queue belongs to the worker), and tracebacks
    # follow the module's rules.
    from ansible.module_utils import _internal  # noqa: PLC0415
    from ansible.module_utils._internal import _traceback  # noqa: PLC0415

    _internal.is_controller = False
    _internal.get_controller_serialize_map = dict
    _internal.import_controller_module = lambda _name: None
    _traceback._is_traceback_enabled = _traceback._is_module_traceback_enabled
    # No log handlers, as in a new Python (ANSIBLE_LOG_PATH configures the controller's).
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    # The working directory a module gets from the local connection; AnsiballZ's fallbacks after it.
    for directory in (cwd, os.path.expanduser("~"), "/"):
        try:
            os.chdir(directory)
            break
        except OSError:
            continue
    from ansible_collections.knlab.serverless.plugins.module_utils._kubeconfig import (  # noqa: PLC0415
        forget_inherited_temp_files,
    )

    forget_inherited_temp_files()


def run_in_fork(
    module_fqn: str,
    json_params: bytes,
    profile: str,
    *,
    cwd: str = "",
    started: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run a module in a forked child; its exit code, stdout and stderr as ``_low_level_execute_command`` gives them.

    The child runs in ``cwd`` (else the home directory, else /). ``started`` is called in the parent once
    the child exists. Should the parent be interrupted (a task timeout, Ctrl-C), the child is killed.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its result is what the tests check
        atexit._clear()  # first: nothing below may run the controller's exit handlers
        code = 1
        try:
            os.close(out_r)
            os.close(err_r)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as long as the child
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            _become_a_module_process(cwd)
            from ansible.module_utils._internal._ansiballz import _loader  # noqa: PLC0415

            # The action plugin imported the module in the controller; runpy runs it again as
            # __main__ and would warn (an error under -W error) about the copy in sys.modules.
            sys.modules.pop(module_fqn, None)
            _loader.run_module(
                json_params=json_params, profile=profile, module_fqn=module_fqn, modlib_path="", extensions={}
            )
        except SystemExit as ended:
            code = ended.code if isinstance(ended.code, int) else (0 if ended.code is None else 1)
        except BaseException:  # whatever happens, the child must not return into Ansible
            code = 1
        finally:
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(out_w)
    os.close(err_w)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    finished = False
    try:
        if started is not None:
            started()
        with selectors.DefaultSelector() as selector:
            for fd in chunks:
                selector.register(fd, selectors.EVENT_READ)
            open_fds = set(chunks)
            while open_fds:
                for key, _events in selector.select():
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
                        open_fds.discard(key.fd)
        _pid, status = os.waitpid(pid, 0)
        finished = True
    finally:
        os.close(out_r)
        os.close(err_r)
        if not finished:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "stdout": b"".join(chunks[out_r]).decode("utf-8", "surrogateescape"),
        "stderr": b"".join(chunks[err_r]).decode("utf-8", "surrogateescape"),
    }
