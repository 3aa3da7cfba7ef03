# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why pods do not become ready: the findings a rollout wait reports before Knative does.

Knative reports a pod problem on the Revision only when the Deployment's progress deadline passes
(``progress-deadline``, 600 s by default; FACTS §1.6). The pods show it at once. ``pod_finding``
reads one pod and says what stops it, and whether that is final:

- final: an image the registry does not have (or refuses to give), an invalid image name, a
  container that crashed and crashed again after its restart, a container that runs but has not
  accepted a connection for ``listen_timeout`` seconds;
- not final (reported, the wait goes on): an image pull that fails for another reason (the
  registry may be starting), an unschedulable pod, a claim that is still Pending, a missing
  ConfigMap or Secret (someone may create it).

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import re
from collections import namedtuple
from typing import Any

# What a pod shows, in the words a person needs: the container and its image, the kubelet's
# reason and message, and whether waiting longer can help.
Finding = namedtuple("Finding", "final reason message pod container image restarts exit_code previous_log detail")
Finding.__new__.__defaults__ = ("",)  # detail: the kubelet's whole message, when the message shortens it

_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
_NEVER_PULLS = ("InvalidImageName", "ErrImageNeverPull")
# Answers of a registry that will not change by waiting: the manifest or repository is not there,
# or the credentials are refused. containerd words them as "not found", "manifest unknown",
# "401 Unauthorized", "403 Forbidden", "denied".
_FINAL_PULL = re.compile(
    r"not found|manifest unknown|name unknown|MANIFEST_UNKNOWN|NAME_UNKNOWN|\b40[134]\b|unauthorized|denied|forbidden",
    re.IGNORECASE,
)
_CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
SIDECAR = "queue-proxy"


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("containers") or [])


def serving_container(pod: dict[str, Any]) -> dict[str, Any]:
    """The app's container: the one with a port that is not Knative's queue-proxy (else the first)."""
    app = [c for c in _containers(pod) if c.get("name") != SIDECAR]
    with_port = [c for c in app if c.get("ports")]
    return (with_port or app or [{}])[0]


def _condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def _port(container: dict[str, Any]) -> int:
    ports = container.get("ports") or [{}]
    return int(ports[0].get("containerPort") or 8080)


def _exit_code(status: dict[str, Any]) -> int | None:
    for state in (status.get("state") or {}, status.get("lastState") or {}):
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") is not None:
            return int(terminated["exitCode"])
    return None


def _cause(text: str) -> str:
    """The innermost cause of a kubelet/containerd error chain ("a: b: c: not found" -> "not found")."""
    return text.rsplit(": ", 1)[-1].strip() or text


def _pull_finding(pod_name: str, name: str, image: str, status: dict[str, Any], waiting: tuple[str, str]) -> Finding:
    reason, text = waiting
    restarts = int(status.get("restartCount") or 0)
    final = reason in _NEVER_PULLS or bool(_FINAL_PULL.search(text))
    say = f"cannot pull image {image}" if final else f"has not pulled image {image} yet"
    message = f"container {name} {say}: " + (f"{_cause(text)} ({reason})" if text else reason)
    return Finding(final, reason, message, pod_name, name, image, restarts, None, False, text)


def _spec_image(pod: dict[str, Any], name: str) -> str:
    """The image as the pod asks for it (the status may show the resolved image ID instead)."""
    return next((str(c.get("image") or "") for c in _containers(pod) if c.get("name") == name), "")


def _waiting_finding(pod: dict[str, Any], status: dict[str, Any]) -> Finding | None:
    name = status.get("name") or ""
    image = _spec_image(pod, name) or status.get("image") or ""
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason, text = waiting.get("reason") or "", " ".join(str(waiting.get("message") or "").split())
    pod_name = (pod.get("metadata") or {}).get("name") or ""
    restarts = int(status.get("restartCount") or 0)
    if reason in _PULL_REASONS or reason in _NEVER_PULLS:
        return _pull_finding(pod_name, name, image, status, (reason, text))
    if reason == "CrashLoopBackOff":
        code = _exit_code(status)
        ended = f"exited with code {code}" if code is not None else "keeps exiting"
        times = "once" if restarts == 1 else f"{restarts} times"
        message = f"container {name} (image {image}) {ended} and was restarted {times} (CrashLoopBackOff)"
        # The first back-off may still end in a container that stays up; a crash after a restart
        # is a crash that repeats.
        return Finding(restarts >= 1, reason, message, pod_name, name, image, restarts, code, True)
    if reason in _CONFIG_REASONS:
        message = f"container {name} cannot start ({reason}" + (f": {text})" if text else ")")
        return Finding(False, reason, message, pod_name, name, image, restarts, None, False, text)
    return None


def pod_finding(pod: dict[str, Any], running_for: float, listen_timeout: float) -> Finding | None:
    """What keeps ``pod`` from being ready, or None when nothing does (yet).

    ``running_for`` is how long the app's container has been seen running without the pod being
    ready; past ``listen_timeout`` (when it is above 0) that is final.
    """
    metadata = pod.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    pod_name = metadata.get("name") or ""
    findings = [
        finding
        for finding in (_waiting_finding(pod, s) for s in status.get("containerStatuses") or [])
        if finding is not None
    ]
    if findings:
        return sorted(findings, key=lambda f: not f.final)[0]
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") == "False":
        reason = scheduled.get("reason") or "Unschedulable"
        text = " ".join(str(scheduled.get("message") or "").split())
        return Finding(False, reason, f"pod is not scheduled ({reason}: {text})", pod_name, "", "", 0, None, False)
    app = serving_container(pod)
    if listen_timeout > 0 and running_for >= listen_timeout and _condition(pod, "Ready").get("status") != "True":
        message = (
            f"container {app.get('name')} (image {app.get('image')}) has run for {running_for:.0f}s without "
            f"accepting connections on port {_port(app)}; does the app listen on another port, or need "
            "longer to start (wait_listen_timeout)?"
        )
        return Finding(True, "NotListening", message, pod_name, app.get("name"), app.get("image"), 0, None, False)
    return None


def app_running_unready(pod: dict[str, Any]) -> tuple[str, int] | None:
    """(container, restartCount) when the app's container runs while the pod is not ready."""
    if _condition(pod, "Ready").get("status") == "True":
        return None
    app = serving_container(pod).get("name")
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == app and (status.get("state") or {}).get("running") is not None:
            return app, int(status.get("restartCount") or 0)
    return None


def claim_names(pod: dict[str, Any]) -> list[str]:
    """The PersistentVolumeClaims the pod mounts."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return [
        v["persistentVolumeClaim"]["claimName"]
        for v in volumes
        if (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


def as_result(finding: Finding, log_tail: list[str], log_error: str | None) -> dict[str, Any]:
    """The ``diagnosis`` return value."""
    return {
        "pod": finding.pod,
        "container": finding.container,
        "image": finding.image,
        "reason": finding.reason,
        "message": finding.message,
        "detail": finding.detail,
        "final": finding.final,
        "restarts": finding.restarts,
        "exit_code": finding.exit_code,
        "log_tail": log_tail,
        "log_error": log_error,
    }
