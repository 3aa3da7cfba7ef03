# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live progress for the waits, shown by the action plugins while the module runs.

A module cannot print before it exits, so the action plugins of ``tekton_taskrun_wait`` and
``knative_service`` run the module as usual and, beside it, a follower thread on the controller
that reads the same objects and prints what changes: the steps of a build and their log lines, the
revision of a rollout, its conditions, its pods' waiting reasons and the URL.

The follower only looks; the module alone decides the result. It runs when the module runs on the
controller itself (a local connection, the usual ``hosts: localhost`` play): a task delegated to
another host reaches the API server from there, with what that host has, and runs without it.
Anything the follower cannot do (no client, an error) ends the follower quietly, never the task.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any

# Set to 0/false/no to run the waits without progress lines. A JSON stdout callback
# (ansible.posix.json, jsonl) gets none either: they would break its document.
PROGRESS_ENV = "KNLAB_SERVERLESS_PROGRESS"
POLL_SECONDS = 1.0
LOCAL_TRANSPORTS = ("local", "ansible.builtin.local")
# Terminal colour codes in a log (kaniko's logrus colours its levels): not for a play's output.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def wanted(action: Any) -> bool:
    """Whether the task runs where the controller can follow it, and nobody turned progress off."""
    if os.environ.get(PROGRESS_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    task, connection = action._task, action._connection
    if task.async_val or action._play_context.check_mode:
        return False
    if _machine_readable_output():
        return False
    return getattr(connection, "transport", "") in LOCAL_TRANSPORTS


def _machine_readable_output() -> bool:
    """Whether stdout is a JSON document (ansible.posix.json, jsonl): progress lines would break it."""
    from ansible import constants as C  # noqa: PLC0415 - controller-only, and only when a task runs

    callback = str(C.config.get_config_value("DEFAULT_STDOUT_CALLBACK") or "")
    return callback.rsplit(".", 1)[-1] in ("json", "jsonl")


def client_for(params: dict[str, Any]) -> Any:
    """A read-only client from the module's auth options and the controller's K8S_AUTH_* environment.

    None when it cannot be built: the module then reports the problem itself.
    """
    try:
        from ansible_collections.knlab.serverless.plugins.module_utils._client import (  # noqa: PLC0415
            client_from_params,
        )

        return client_from_params(params)
    except Exception:  # no progress is better than a task that fails for it
        return None


class Follower(threading.Thread):
    """Polls what the wait waits for and prints the changes, until ``stop``."""

    def __init__(self, client: Any, say: Callable[[str], None], label: str) -> None:
        super().__init__(name=f"knlab-progress-{label}", daemon=True)
        self.client = client
        self.say = say
        self.label = label
        self.stopping = threading.Event()
        self.last: dict[str, Any] = {}

    def emit(self, text: str) -> None:
        self.say(f"[{self.label}] {text}")

    def changed(self, key: str, value: Any) -> bool:
        """True (and remembered) when ``value`` differs from what was printed for ``key``."""
        if self.last.get(key) == value:
            return False
        self.last[key] = value
        return True

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.poll()
                self.stopping.wait(POLL_SECONDS)
            self.poll()  # the last state, as the module saw it end
        except Exception:  # the follower only looks; it never fails the task
            pass

    def poll(self) -> None:
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return self.ident is not None

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def _conditions_text(obj: dict[str, Any]) -> str:
    parts = []
    for condition in (obj.get("status") or {}).get("conditions") or []:
        text = f"{condition.get('type')}={condition.get('status')}"
        if condition.get("reason"):
            text += f" ({condition['reason']})"
        parts.append(text)
    return ", ".join(parts) or "no conditions yet"


class TaskRunFollower(Follower):
    """A build: the TaskRun, each step's state as it changes, and the step logs as they grow."""

    def __init__(self, client: Any, say: Callable[[str], None], namespace: str, name: str) -> None:
        super().__init__(client, say, name)
        self.namespace = namespace
        self.name = name
        self.printed: dict[str, int] = {}  # container -> log lines printed

    def poll(self) -> None:
        run = self.client.get_or_none("tekton.dev/v1", "TaskRun", self.name, self.namespace)
        if run is None:
            return
        status = run.get("status") or {}
        succeeded = next((c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), {})
        state = f"{succeeded.get('status', 'Unknown')} ({succeeded.get('reason') or 'Pending'})"
        if self.changed("run", state):
            self.emit(f"TaskRun {self.namespace}/{self.name}: Succeeded={state}")
        pod = status.get("podName")
        for step in status.get("steps") or []:
            name = step.get("name") or ""
            container = step.get("container") or f"step-{name}"
            phase = next((key for key in ("terminated", "running", "waiting") if key in step), "pending")
            detail = step.get(phase) or {}
            reason = detail.get("reason") or ""
            if phase == "terminated":
                reason = f"exit code {detail.get('exitCode')}" + (f", {reason}" if reason else "")
            if self.changed(f"step/{name}", (phase, reason)):
                self.emit(f"step {name}: {phase}" + (f" ({reason})" if reason else ""))
            if pod and phase in ("running", "terminated"):
                self._log(pod, name, container, final=phase == "terminated")

    def _log(self, pod: str, step: str, container: str, *, final: bool) -> None:
        if final and self.printed.get(container) == -1:
            return  # read to its end already
        try:
            text = self.client.pod_log(pod, self.namespace, container=container)
        except Exception:  # a log that cannot be read (yet) is skipped
            return
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        lines = text.split("\n")
        complete = lines if final else lines[:-1]  # the last piece may still be written
        start = max(self.printed.get(container, 0), 0)
        for raw in complete[start:]:
            line = _ANSI.sub("", raw).rstrip()
            if line.strip():
                self.say(f"[{self.name}/{step}] {line}")
        self.printed[container] = -1 if final else len(complete)


class RolloutFollower(Follower):
    """A rollout: the revision, the Service's conditions, its pods' waiting reasons, the URL."""

    def __init__(self, client: Any, say: Callable[[str], None], namespace: str, name: str) -> None:
        super().__init__(client, say, name)
        self.namespace = namespace
        self.name = name

    def poll(self) -> None:
        service = self.client.get_or_none("serving.knative.dev/v1", "Service", self.name, self.namespace)
        if service is None:
            return
        status = service.get("status") or {}
        current = int(status.get("observedGeneration") or 0) >= int(
            (service.get("metadata") or {}).get("generation") or 0
        )
        revision = status.get("latestCreatedRevisionName") if current else None
        if revision and self.changed("revision", revision):
            self.emit(f"rolling out revision {revision}")
        if self.changed("conditions", _conditions_text(service)):
            self.emit(_conditions_text(service))
        if revision:
            self._pods(revision)
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if current and ready.get("status") == "True" and self.changed("url", status.get("url")):
            self.emit(f"ready: {status.get('url')} (revision {status.get('latestReadyRevisionName')})")

    def _pods(self, revision: str) -> None:
        pods, _version = self.client.list(
            "v1", "Pod", self.namespace, label_selector=f"serving.knative.dev/revision={revision}"
        )
        for pod in pods:
            name = (pod.get("metadata") or {}).get("name") or ""
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                state = status.get("state") or {}
                phase = next(iter(state), "unknown")
                reason = (state.get(phase) or {}).get("reason") or ""
                shown = f"{phase} ({reason})" if reason else phase
                if status.get("ready"):
                    shown += ", ready"
                if self.changed(f"pod/{name}/{status.get('name')}", shown):
                    self.emit(f"pod {name}: {status.get('name')} {shown}")
