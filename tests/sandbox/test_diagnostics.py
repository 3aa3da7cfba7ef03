"""What a failing sandbox test shows: SIGUSR1/SIGUSR2 make the server log where it waits, and keep it running."""

from __future__ import annotations

import time

from conftest import Sandbox

WAIT = 20


def wait_for_log(sandbox: Sandbox, text: str) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        log = sandbox.server_log(200_000)
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in server.log:\n{sandbox.server_log()}")


def test_diagnostics_show_the_waiting_tasks_and_threads_and_leave_the_server_up(start_sandbox) -> None:
    sb = start_sandbox()
    report = sb.diagnostics()

    assert f"server pid {sb.process.pid}" in report
    log = wait_for_log(sb, "Current thread")  # faulthandler's dump (SIGUSR2) comes after the task dump
    stacks = log[log.index("stacks on request (SIGUSR1)") :]
    # The controllers' watch loops, down to the line where each waits, and the event loop's thread.
    assert "Task TektonController:" in stacks and "in _watch" in stacks
    assert "Async generator ResourceAPI.watch:" in stacks
    assert "Thread MainThread:" in stacks
    assert "--- requests.log (last" in report
    status, _, _ = sb.request("GET", "/readyz")
    assert status == 200 and sb.process.poll() is None
