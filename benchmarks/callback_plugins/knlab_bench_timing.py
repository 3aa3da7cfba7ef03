# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark callback: the wall-clock moment each task's result reached the controller.

The wait-latency benchmark needs the moment a waiting task returned, measured in the process that
runs the play and not including Ansible's start-up. ``v2_runner_on_ok``/``v2_runner_on_failed`` run
in the controller as soon as the worker hands back the module's result, so ``time.time()`` there is
that moment. One JSON line per task start and per task result goes to the file named by
``KNLAB_BENCH_TIMING_FILE``.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: knlab_bench_timing
type: aggregate
short_description: record when each task's result arrived (knlab.serverless benchmarks)
description:
  - Appends one JSON line per task start and per task result to the file in E(KNLAB_BENCH_TIMING_FILE).
requirements:
  - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "knlab_bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("KNLAB_BENCH_TIMING_FILE")

    def _record(self, result, status: str) -> None:
        ended = time.time()  # first, so nothing below adds to the measured moment
        if not self._path:
            return
        data = result._result
        entry = {
            "time": ended,
            "task": result._task.get_name(),
            "status": status,
            "changed": bool(data.get("changed")),
            "duration": data.get("duration"),
            "msg": str(data.get("msg", ""))[:300],
        }
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        if self._path:
            with open(self._path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"time": time.time(), "task": task.get_name(), "status": "start"}) + "\n")

    def v2_runner_on_ok(self, result) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._record(result, "failed")
