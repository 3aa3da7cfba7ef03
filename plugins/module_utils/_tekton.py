# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tekton TaskRuns: request validation, the TaskRun body, idempotency lookup, the meaning of the
``Succeeded`` condition, the failing step and its log tail.

Private to knlab.serverless; not a public API.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._client import write_or_fallback
from ansible_collections.knlab.serverless.plugins.module_utils._errors import (
    ApiError,
    NotFound,
    ServerlessError,
)
from ansible_collections.knlab.serverless.plugins.module_utils._validation import (
    DNS1123_LABEL_MAX,
    check_labels,
    check_range,
    check_string,
    check_wait_seconds,
    has_control_characters,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    parse_image_reference,
)
from ansible_collections.knlab.serverless.plugins.module_utils._validation import (
    is_label_value as _is_label_value,
)
from ansible_collections.knlab.serverless.plugins.module_utils._validation import (
    scalar_text as _scalar_text,
)
from ansible_collections.knlab.serverless.plugins.module_utils._waiter import Verdict, WaitFailed, WaitTimeout, wait_for

API_VERSION = "tekton.dev/v1"
KIND = "TaskRun"

# The idempotency key is kept twice: as a label (what the lookup selects on, so it must be a
# valid label value) and, untouched, as an annotation (what a human reads, and what tells a real
# match from a hash collision).
IDEMPOTENCY_LABEL = "serverless.knlab.io/idempotency-key"
IDEMPOTENCY_ANNOTATION = "serverless.knlab.io/idempotency-key"
HASHED_KEY_PREFIX = "sha256-"

SPEC_STATUS_CANCELLED = "TaskRunCancelled"
SPEC_STATUS_PENDING = "TaskRunPending"
REASON_CANCELLED = "TaskRunCancelled"
REASON_PENDING = "TaskRunPending"

# What `run_state` reports. The idempotency lookup reuses a succeeded run, else one in progress.
STATE_NEW = "new"  # no Succeeded condition yet: the controller has not picked the run up
STATE_PENDING = "pending"
STATE_RUNNING = "running"
STATE_CANCELLING = "cancelling"
STATE_SUCCEEDED = "succeeded"
STATE_FAILED = "failed"
STATE_CANCELLED = "cancelled"
IN_PROGRESS_STATES = (STATE_RUNNING, STATE_PENDING, STATE_NEW)
FINISHED_STATES = (STATE_SUCCEEDED, STATE_FAILED, STATE_CANCELLED)

# Tekton's own rule for TaskRun and Task names (pkg/apis/validate.ObjectMetadata): a DNS-1123
# subdomain of at most 63 characters. The API server keeps at most 58 characters of generateName
# and appends 5 random ones, and the result must follow the same rule.
_GENERATE_NAME_MAX = 58
_LABEL_MAX = 63
# Tekton's param names (ValidateParameterTypes): letters, digits, '_', '-' and '.'.
_PARAM_NAME_RE = re.compile(r"[a-zA-Z_][-a-zA-Z0-9_.]*")
# The longest log tail a wait returns; a larger value is a mistake, and the API would send it all.
MAX_LOG_LINES = 10_000

# Go's time.ParseDuration grammar: "0", or one or more <decimal><unit> with an optional sign.
_GO_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek small letter mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_GO_DURATION_RE = re.compile(rf"[-+]?(0|({_GO_DURATION_PART})+)")
_GO_DURATION_PART_RE = re.compile(_GO_DURATION_PART)
_GO_DURATION_MAX_SECONDS = (2**63 - 1) / 1e9

WORKSPACE_SOURCES = (
    "emptyDir",
    "persistentVolumeClaim",
    "volumeClaimTemplate",
    "configMap",
    "secret",
    "projected",
    "csi",
)

# Terminated steps with these termination reasons did not fail by themselves: "Skipped" steps
# exit non-zero because an earlier step failed, "Continued" ones failed under onError: continue.
_NOT_FAILING_TERMINATIONS = ("Skipped", "Continued")
# When Tekton's controller fails a run (failTaskRun -> terminateStepsInPod), every step still running
# or waiting gets terminated{exitCode: 1, reason: <the run's reason>} and that termination reason,
# and the pod is deleted: the exit code is Tekton's, not the step's, and there is no log to read.
CONTROLLER_TERMINATIONS = {
    "TaskRunTimeout": "the run timed out",
    "TaskRunCancelled": "the run was cancelled",
    "TaskRunImagePullFailed": "a step image could not be pulled",
    "CreateContainerConfigError": "a container could not be configured",
}
# A waiting container with one of these reasons is just starting, not stuck.
_BENIGN_WAITING = ("PodInitializing", "ContainerCreating")
_STEP_EXIT_RE = re.compile(r'"step-(?P<name>[^"]+)" exited with code (?P<code>-?\d+)')


# ---------------------------------------------------------------------------------------------
# validation helpers


def validate_name(name: str, what: str = "name") -> str:
    if not is_dns1123_subdomain(name, DNS1123_LABEL_MAX):
        raise ServerlessError(
            f"{what} {name!r} is not a valid TaskRun name: use at most {DNS1123_LABEL_MAX} lowercase letters, digits, "
            "'-' and '.', starting and ending with a letter or digit"
        )
    return name


def validate_generate_name(prefix: str) -> str:
    # The name the API server makes is the prefix plus 5 letters and digits: judge that name.
    if not prefix or len(prefix) > _GENERATE_NAME_MAX or not is_dns1123_subdomain(prefix + "x0x0x"):
        raise ServerlessError(
            f"generate_name {prefix!r} is not a valid name prefix: use at most {_GENERATE_NAME_MAX} lowercase "
            "letters, digits, '-' and '.', starting with a letter or digit"
        )
    return prefix


def validate_namespace(namespace: str) -> str:
    if not is_dns1123_label(namespace):
        raise ServerlessError(f"namespace {namespace!r} is not a valid namespace name (DNS-1123 label)")
    return namespace


def go_duration_seconds(text: str, what: str = "timeout") -> float:
    """Seconds in a Go duration string (``1h30m``, ``90s``, ``0``); negative ones are refused."""
    value = text.strip() if isinstance(text, str) else text
    if not isinstance(value, str) or not _GO_DURATION_RE.fullmatch(value):
        raise ServerlessError(f"{what} {text!r} is not a Go duration such as 90s, 10m or 1h30m")
    negative = value.startswith("-")
    seconds = sum(float(number) * _GO_DURATION_UNITS[unit] for number, unit in _GO_DURATION_PART_RE.findall(value))
    if negative and seconds > 0:
        raise ServerlessError(f"{what} {text!r} is negative; use 0 for no timeout")
    if seconds > _GO_DURATION_MAX_SECONDS:
        raise ServerlessError(f"{what} {text!r} is longer than a Go duration can hold")
    return seconds


def is_label_value(value: str) -> bool:
    return _is_label_value(value)


def validate_label_key(key: Any) -> str:
    if not is_qualified_name(key):
        raise ServerlessError(
            f"label key {key!r} is not valid: an optional DNS subdomain prefix and '/', then at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return key


def scalar_text(value: Any, where: str) -> str:
    """Kubernetes and Tekton want strings; turn YAML scalars into the text a user typed."""
    return _scalar_text(value, where)


def normalize_labels(labels: dict[str, Any] | None) -> dict[str, str]:
    result = check_labels("labels", labels or {})
    if IDEMPOTENCY_LABEL in result:
        raise ServerlessError(f"labels must not set {IDEMPOTENCY_LABEL!r}: idempotency_key sets it")
    return result


def idempotency_label_value(key: str) -> str:
    """The label value for an idempotency key.

    A key that is already a valid label value is used as it is; any other key (too long, or with
    characters such as ':' in ``sha256:…``) becomes ``sha256-`` plus the first 56 hex digits of
    its SHA-256, which is exactly 63 characters.
    """
    if key and is_label_value(key):
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return HASHED_KEY_PREFIX + digest[: _LABEL_MAX - len(HASHED_KEY_PREFIX)]


# ---------------------------------------------------------------------------------------------
# the TaskRun body


def param_value(value: Any, name: str) -> str | list[str] | dict[str, str]:
    """A Tekton ParamValue: a string, an array of strings or an object of strings."""
    where = f"params.{name}"
    if isinstance(value, list):
        return [scalar_text(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(key): scalar_text(item, f"{where}.{key}") for key, item in value.items()}
    if value is None:
        raise ServerlessError(f"{where} has no value")
    return scalar_text(value, where)


def params_list(params: dict[str, Any] | None, where: str = "params") -> list[dict[str, Any]]:
    result = []
    for name, value in (params or {}).items():
        if not isinstance(name, str) or not _PARAM_NAME_RE.fullmatch(name):
            raise ServerlessError(
                f"{where} name {name!r} is not a valid Tekton param name: letters, digits, '_', '-' and '.', "
                "starting with a letter or '_'"
            )
        result.append({"name": name, "value": param_value(value, name)})
    return result


# What each workspace source must hold: (field, required) pairs; a source is a dict either way.
_WORKSPACE_SOURCE_NAMES = {"persistentVolumeClaim": "claimName", "configMap": "name", "secret": "secretName"}


def validate_workspaces(workspaces: list[Any] | None) -> list[dict[str, Any]]:
    seen: set[str] = set()
    for index, binding in enumerate(workspaces or []):
        where = f"workspaces[{index}]"
        if not isinstance(binding, dict):
            raise ServerlessError(f"{where} must be a dict (a Tekton WorkspaceBinding)")
        name = binding.get("name")
        if not is_dns1123_label(name):
            raise ServerlessError(f"{where} needs a name: a DNS-1123 label (lowercase letters, digits and '-')")
        where = f"{where} ({name})"
        if name in seen:
            raise ServerlessError(f"{where}: workspace {name!r} is bound twice")
        seen.add(name)
        sources = [key for key in WORKSPACE_SOURCES if key in binding]
        if len(sources) != 1:
            raise ServerlessError(
                f"{where} must set exactly one of {', '.join(WORKSPACE_SOURCES)} (got {', '.join(sources) or 'none'})"
            )
        source = binding[sources[0]]
        if not isinstance(source, dict):
            raise ServerlessError(f"{where}: {sources[0]} must be a dict, got {type(source).__name__}")
        key = _WORKSPACE_SOURCE_NAMES.get(sources[0])
        if key and not is_dns1123_subdomain(source.get(key)):
            raise ServerlessError(
                f"{where}: {sources[0]}.{key} must be the name of an object in the namespace "
                f"(a DNS-1123 subdomain), got {source.get(key)!r}"
            )
        sub_path = binding.get("subPath")
        if sub_path is not None and (
            not isinstance(sub_path, str) or sub_path.startswith("/") or ".." in sub_path.split("/")
        ):
            raise ServerlessError(f"{where}: subPath must be a relative path without '..'")
    return list(workspaces or [])


_KIND_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_RESOLVER_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def task_ref_body(task_ref: dict[str, Any]) -> dict[str, Any]:
    name, resolver = task_ref.get("name"), task_ref.get("resolver")
    if bool(name) == bool(resolver):
        raise ServerlessError("task_ref needs exactly one of name or resolver")
    if resolver:
        if not isinstance(resolver, str) or not _RESOLVER_RE.fullmatch(resolver) or len(resolver) > 63:
            raise ServerlessError(f"task_ref.resolver {resolver!r} is not a resolver name such as git or bundles")
        body: dict[str, Any] = {"resolver": resolver}
        if task_ref.get("params"):
            body["params"] = params_list(task_ref["params"], "task_ref.params")
        return body
    if task_ref.get("params"):
        raise ServerlessError("task_ref.params is only used with task_ref.resolver")
    validate_name(name, "task_ref.name")
    body = {"name": name}
    kind = task_ref.get("kind")
    if kind is not None:
        if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
            raise ServerlessError(f"task_ref.kind {kind!r} is not a kind such as Task")
        body["kind"] = kind
    return body


def task_spec_body(task_spec: Any) -> dict[str, Any]:
    if not isinstance(task_spec, dict):
        raise ServerlessError("task_spec must be a dict (a Tekton Task spec)")
    steps = task_spec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ServerlessError("task_spec.steps must be a non-empty list")
    template = task_spec.get("stepTemplate")
    template_image = template.get("image") if isinstance(template, dict) else None
    names: set[str] = set()
    for index, step in enumerate(steps):
        where = f"task_spec.steps[{index}]"
        if not isinstance(step, dict):
            raise ServerlessError(f"{where} must be a dict (a Tekton Step), got {type(step).__name__}")
        name = step.get("name")
        if name is not None:
            if not is_dns1123_label(name):
                raise ServerlessError(f"{where}.name {name!r} is not a valid step name (DNS-1123 label)")
            if name in names:
                raise ServerlessError(f"{where}.name {name!r} is used by more than one step")
            names.add(name)
        image = step.get("image")
        if image is None and not template_image and "ref" not in step:
            raise ServerlessError(f"{where} needs an image")
        if image is not None:
            _check_step_image(f"{where}.image", image)
    return task_spec


def _check_step_image(where: str, image: Any) -> None:
    """An image reference, or text with a Tekton substitution such as ``$(params.image)``."""
    if not isinstance(image, str) or not image or has_control_characters(image) or " " in image:
        raise ServerlessError(f"{where} {image!r} is not a valid image reference")
    if "$(" not in image and parse_image_reference(image) is None:
        raise ServerlessError(
            f"{where} {image!r} is not a valid image reference: [host[:port]/]repository[:tag][@digest], "
            "with a lowercase repository"
        )


@dataclass
class TaskRunRequest:
    """A validated ``tekton_taskrun`` request; building it checks every option before any API call."""

    namespace: str
    name: str | None = None
    generate_name: str | None = None
    task_ref: dict[str, Any] | None = None
    task_spec: dict[str, Any] | None = None
    params: list[dict[str, Any]] = field(default_factory=list)
    workspaces: list[dict[str, Any]] = field(default_factory=list)
    service_account: str | None = None
    timeout: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TaskRunRequest:
        name, generate_name = params.get("name"), params.get("generate_name")
        if bool(name) == bool(generate_name):
            raise ServerlessError("set exactly one of name or generate_name")
        task_ref, task_spec = params.get("task_ref"), params.get("task_spec")
        if (task_ref is None) == (task_spec is None):
            raise ServerlessError("set exactly one of task_ref or task_spec")
        timeout = params.get("timeout")
        if timeout is not None:
            check_string("timeout", timeout)
            go_duration_seconds(timeout)
        service_account = params.get("service_account")
        if service_account is not None and not is_dns1123_subdomain(service_account):
            raise ServerlessError(
                f"service_account {service_account!r} is not a valid ServiceAccount name (DNS-1123 subdomain)"
            )
        key = params.get("idempotency_key")
        if key is not None:
            check_string("idempotency_key", key, max_length=4096)
        return cls(
            namespace=validate_namespace(params.get("namespace")),
            name=validate_name(name) if name else None,
            generate_name=validate_generate_name(generate_name) if generate_name else None,
            task_ref=task_ref_body(task_ref) if task_ref is not None else None,
            task_spec=task_spec_body(task_spec) if task_spec is not None else None,
            params=params_list(params.get("params")),
            workspaces=validate_workspaces(params.get("workspaces")),
            service_account=service_account,
            timeout=timeout.strip() if timeout is not None else None,
            labels=normalize_labels(params.get("labels")),
            idempotency_key=key,
        )

    @property
    def idempotency_label(self) -> str | None:
        return idempotency_label_value(self.idempotency_key) if self.idempotency_key else None

    def body(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"namespace": self.namespace}
        if self.name:
            metadata["name"] = self.name
        else:
            metadata["generateName"] = self.generate_name
        labels = dict(self.labels)
        if self.idempotency_key:
            labels[IDEMPOTENCY_LABEL] = self.idempotency_label
            metadata["annotations"] = {IDEMPOTENCY_ANNOTATION: self.idempotency_key}
        if labels:
            metadata["labels"] = labels
        spec: dict[str, Any] = {}
        if self.task_ref is not None:
            spec["taskRef"] = self.task_ref
        else:
            spec["taskSpec"] = self.task_spec
        if self.params:
            spec["params"] = self.params
        if self.workspaces:
            spec["workspaces"] = self.workspaces
        if self.service_account:
            spec["serviceAccountName"] = self.service_account
        if self.timeout is not None:
            spec["timeout"] = self.timeout
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


# ---------------------------------------------------------------------------------------------
# status


def succeeded_condition(taskrun: dict[str, Any]) -> dict[str, Any] | None:
    for condition in (taskrun.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Succeeded":
            return condition
    return None


def run_state(taskrun: dict[str, Any]) -> str:
    """One word for where a TaskRun is (FACTS §2.5): any False is a failure, whatever its reason."""
    condition = succeeded_condition(taskrun) or {}
    status, reason = condition.get("status"), condition.get("reason")
    spec_status = (taskrun.get("spec") or {}).get("status")
    if status == "True":
        return STATE_SUCCEEDED
    if status == "False":
        return STATE_CANCELLED if reason == REASON_CANCELLED else STATE_FAILED
    if spec_status == SPEC_STATUS_CANCELLED or reason == REASON_CANCELLED:
        return STATE_CANCELLING
    if spec_status == SPEC_STATUS_PENDING or reason == REASON_PENDING:
        return STATE_PENDING
    return STATE_RUNNING if condition else STATE_NEW


@dataclass(frozen=True)
class Outcome:
    """The end of a TaskRun as the wait sees it; ``finished`` False means keep waiting."""

    finished: bool
    succeeded: bool
    reason: str
    message: str


def outcome(taskrun: dict[str, Any] | None) -> Outcome:
    if taskrun is None:
        return Outcome(True, False, "Deleted", "the TaskRun was deleted while waiting for it")
    condition = succeeded_condition(taskrun) or {}
    status = condition.get("status")
    reason, message = condition.get("reason") or "", condition.get("message") or ""
    if status == "True":
        return Outcome(True, True, reason or "Succeeded", message)
    if status == "False":
        return Outcome(True, False, reason or "Failed", message)
    return Outcome(False, False, reason, message)


# ---------------------------------------------------------------------------------------------
# steps, results, times


def step_summary(step: dict[str, Any]) -> dict[str, Any]:
    name = step.get("name") or ""
    summary: dict[str, Any] = {
        "name": name,
        "container": step.get("container") or f"step-{name}",
        "state": "unknown",
        "exit_code": None,
        "reason": None,
        "termination_reason": step.get("terminationReason"),
        "started_at": None,
        "finished_at": None,
    }
    for state in ("terminated", "running", "waiting"):
        detail = step.get(state)
        if isinstance(detail, dict):
            summary["state"] = state
            summary["exit_code"] = detail.get("exitCode")
            summary["reason"] = detail.get("reason")
            summary["started_at"] = detail.get("startedAt")
            summary["finished_at"] = detail.get("finishedAt")
            break
    return summary


def steps(taskrun: dict[str, Any]) -> list[dict[str, Any]]:
    return [step_summary(step) for step in (taskrun.get("status") or {}).get("steps") or []]


def failing_step(taskrun: dict[str, Any]) -> dict[str, Any] | None:
    """The step that made a TaskRun fail, or None when no step is to blame (e.g. a missing Task)."""
    summaries = steps(taskrun)
    for summary in summaries:
        termination = summary["termination_reason"]
        if termination in _NOT_FAILING_TERMINATIONS:
            continue
        if termination in CONTROLLER_TERMINATIONS:
            return {**summary, "exit_code": None, "stopped_by": termination}
        if summary["state"] == "terminated" and summary["exit_code"] not in (0, None):
            return summary
    for summary in summaries:
        if summary["state"] == "waiting" and summary["reason"] and summary["reason"] not in _BENIGN_WAITING:
            return summary
    # Without step states, the condition message still names the step: "step-x" exited with code N.
    match = _STEP_EXIT_RE.search((succeeded_condition(taskrun) or {}).get("message") or "")
    if match:
        known = {summary["name"]: summary for summary in summaries}
        summary = known.get(match["name"]) or step_summary({"name": match["name"]})
        return {**summary, "exit_code": int(match["code"])}
    return None


def results(taskrun: dict[str, Any]) -> dict[str, Any]:
    """TaskRun results by name; a string result stays a string, arrays and objects keep their shape."""
    return {
        entry["name"]: entry.get("value")
        for entry in (taskrun.get("status") or {}).get("results") or []
        if isinstance(entry, dict) and entry.get("name")
    }


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration_seconds(taskrun: dict[str, Any]) -> float | None:
    status = taskrun.get("status") or {}
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


# ---------------------------------------------------------------------------------------------
# idempotency lookup


def _newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # RFC 3339 timestamps in UTC sort as text; the name breaks ties the same way every time.
    return sorted(
        items,
        key=lambda item: (
            (item.get("metadata") or {}).get("creationTimestamp") or "",
            (item.get("metadata") or {}).get("name") or "",
        ),
        reverse=True,
    )


def reusable_run(items: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The earlier TaskRun to reuse for ``key``: a succeeded one first, else one still on its way.

    Failed and cancelled runs (and runs being cancelled or deleted) are never reused, so a retry
    after a failure creates a new run.
    """
    label = idempotency_label_value(key)
    candidates = []
    for item in items:
        metadata = item.get("metadata") or {}
        if metadata.get("deletionTimestamp") or (metadata.get("labels") or {}).get(IDEMPOTENCY_LABEL) != label:
            continue
        recorded = (metadata.get("annotations") or {}).get(IDEMPOTENCY_ANNOTATION)
        if recorded is not None and recorded != key:
            continue  # the same hashed label, but another key
        candidates.append(item)
    for wanted in ((STATE_SUCCEEDED,), IN_PROGRESS_STATES):
        for item in _newest_first(candidates):
            if run_state(item) in wanted:
                return item
    return None


# ---------------------------------------------------------------------------------------------
# waiting and the failure report


def succeeded_check(taskrun: dict[str, Any] | None) -> Verdict | None:
    """The waiter's check: a TaskRun is done when ``Succeeded`` is True and failed when it is False."""
    result = outcome(taskrun)
    if not result.finished:
        return None
    return Verdict(result.succeeded, not result.succeeded, result.reason, result.message)


def step_log_tail(
    client: Any, namespace: str, pod_name: str | None, container: str, lines: int, *, stopped_by: str | None = None
) -> tuple[list[str], str | None]:
    """The last ``lines`` lines of a step's log, or ([], why not) when they cannot be read."""
    if lines <= 0:
        return [], None
    if not pod_name:
        return [], "no log: the TaskRun has no pod"
    try:
        text = client.pod_log(pod_name, namespace, container=container, tail_lines=lines)
    except NotFound:
        why = "Tekton deletes the pod of a run it fails itself"
        if stopped_by in CONTROLLER_TERMINATIONS:
            why = f"Tekton deleted it because {CONTROLLER_TERMINATIONS[stopped_by]}"
            if stopped_by == "TaskRunCancelled":
                why += " (keep-pod-on-cancel keeps it)"
        return [], f"log of {container} unavailable: pod {pod_name} is gone ({why})"
    except ApiError as err:
        return [], f"log of {container} unavailable: {err.msg}"
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return (text or "").splitlines()[-lines:], None


def run_report(taskrun: dict[str, Any]) -> dict[str, Any]:
    """What ``tekton_taskrun_wait`` returns about a TaskRun, finished or not."""
    result = outcome(taskrun)
    status = taskrun.get("status") or {}
    metadata = taskrun.get("metadata") or {}
    return {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "succeeded": result.finished and result.succeeded,
        "reason": result.reason,
        "message": result.message,
        # Ansible reserves a module's top-level ``results`` key (loops) and renames it, so the
        # TaskRun's results travel as ``task_results``.
        "task_results": results(taskrun),
        "steps": steps(taskrun),
        "pod_name": status.get("podName"),
        "start_time": status.get("startTime"),
        "completion_time": status.get("completionTime"),
        "duration": duration_seconds(taskrun),
    }


def failure_report(client: Any, taskrun: dict[str, Any], log_lines: int) -> tuple[str, dict[str, Any]]:
    """The message and the extra result keys for a TaskRun whose ``Succeeded`` is False."""
    report = run_report(taskrun)
    step = failing_step(taskrun)
    tail: list[str] = []
    log_error = None
    stopped_by = step.get("stopped_by") if step else None
    if step is not None:
        tail, log_error = step_log_tail(
            client, report["namespace"], report["pod_name"], step["container"], log_lines, stopped_by=stopped_by
        )
    report.update(
        failed_step=step["name"] if step else None,
        exit_code=step["exit_code"] if step else None,
        log_tail=tail,
        log_error=log_error,
    )
    text = f"TaskRun {report['namespace']}/{report['name']} failed: {report['reason']}"
    if report["message"]:
        text += f": {report['message']}"
    if step is not None:
        text += f". Failing step {step['name']!r} (container {step['container']})"
        if stopped_by:
            text += f", stopped by Tekton: {CONTROLLER_TERMINATIONS[stopped_by]}"
        elif step["exit_code"] is not None:
            text += f", exit code {step['exit_code']}"
        elif step["reason"]:
            text += f", {step['state']}: {step['reason']}"
    if log_error:
        text += f". {log_error}"
    elif tail:
        # One line for the message: the log's last line, usually the error. The tail itself is
        # returned once, as log_tail, not folded into the message again.
        text += f"; last log line: {tail[-1].strip()} (log_tail has the last {len(tail)})"
    return " ".join(text.split()), report


def _current_step(taskrun: dict[str, Any] | None) -> str:
    for summary in steps(taskrun or {}):
        if summary["state"] in ("running", "waiting"):
            detail = f" ({summary['reason']})" if summary["reason"] else ""
            return f"; step {summary['name']!r} is {summary['state']}{detail}"
    return ""


def validate_wait_options(namespace: str, name: str, timeout: float, log_lines: int) -> None:
    validate_namespace(namespace)
    validate_name(name)
    check_wait_seconds("timeout", timeout)
    check_range("log_lines", log_lines, 0, MAX_LOG_LINES)


def wait_taskrun(client: Any, namespace: str, name: str, timeout: float, log_lines: int) -> dict[str, Any]:
    """Wait for a TaskRun to finish; return its report, or raise with the reason it failed."""
    validate_wait_options(namespace, name, timeout, log_lines)
    try:
        taskrun = client.get(API_VERSION, KIND, name, namespace)
    except NotFound:
        raise ServerlessError(f"TaskRun {namespace}/{name} not found") from None
    try:
        finished = wait_for(client, API_VERSION, KIND, name, namespace, succeeded_check, timeout, initial=taskrun)
    except WaitFailed as err:
        if err.obj is None:
            raise ServerlessError(f"TaskRun {namespace}/{name} was deleted while waiting for it") from None
        msg, report = failure_report(client, err.obj, log_lines)
        raise ServerlessError(msg, **report) from None
    except WaitTimeout as err:
        extra = run_report(err.obj) if err.obj else {}
        raise ServerlessError(err.msg + _current_step(err.obj), **extra) from None
    return {"changed": False, **run_report(finished or taskrun)}


# ---------------------------------------------------------------------------------------------
# create, reuse, cancel


def _taskrun_result(taskrun: dict[str, Any], *, created: bool, reused: bool, changed: bool) -> dict[str, Any]:
    metadata = taskrun.get("metadata") or {}
    return {
        "changed": changed,
        "created": created,
        "reused": reused,
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "status": run_state(taskrun),
        # Without managedFields: server bookkeeping that only makes the output longer.
        "taskrun": {**taskrun, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}},
    }


def ensure_taskrun(client: Any, request: TaskRunRequest, *, check_mode: bool, warn: Any = None) -> dict[str, Any]:
    """Reuse the TaskRun that already does this work, or create one (a server dry run in check mode)."""
    namespace = request.namespace
    if request.idempotency_key:
        items, _list_version = client.list(
            API_VERSION, KIND, namespace, label_selector=f"{IDEMPOTENCY_LABEL}={request.idempotency_label}"
        )
        earlier = reusable_run(items, request.idempotency_key)
        if earlier is not None:
            return _taskrun_result(earlier, created=False, reused=True, changed=False)
    if request.name:
        existing = client.get_or_none(API_VERSION, KIND, request.name, namespace)
        if existing is not None and request.idempotency_key:
            raise ServerlessError(
                f"TaskRun {namespace}/{request.name} already exists ({run_state(existing)}) and cannot be reused "
                "for this idempotency_key; delete it, or use generate_name so that a new run gets a new name"
            )
        if existing is not None:
            # A TaskRun cannot be changed once it runs: the one with this name is the run.
            return _taskrun_result(existing, created=False, reused=True, changed=False)
    body = request.body()
    # The client sends writes as dryRun=All in check mode (get_client sets it from check_mode):
    # Tekton's webhook validates the run and nothing is stored. A server whose webhooks refuse
    # dry runs gets no write, and the local body stands in for the answer.
    created = write_or_fallback(
        lambda: client.create(API_VERSION, KIND, body, namespace),
        body,
        warn=warn,
        what=f"the new TaskRun in {namespace}",
    )
    result = _taskrun_result(created, created=True, reused=False, changed=True)
    if check_mode and request.generate_name:
        result["name"] = None  # the server picks the name only when it really creates the run
    result["diff"] = {"before": {}, "after": body}
    return result


def cancel_taskrun(client: Any, namespace: str, name: str, *, check_mode: bool) -> dict[str, Any]:
    """Ask Tekton to cancel a run (FACTS §2.6); finished, cancelled and absent runs are left alone."""
    validate_namespace(namespace)
    validate_name(name)
    taskrun = client.get_or_none(API_VERSION, KIND, name, namespace)
    if taskrun is None:
        return {
            "changed": False,
            "created": False,
            "reused": False,
            "name": name,
            "namespace": namespace,
            "status": "absent",
            "taskrun": {},
        }
    state = run_state(taskrun)
    if state in (*FINISHED_STATES, STATE_CANCELLING):
        return _taskrun_result(taskrun, created=False, reused=False, changed=False)
    before = (taskrun.get("spec") or {}).get("status")
    if not check_mode:
        taskrun = client.patch(API_VERSION, KIND, name, {"spec": {"status": SPEC_STATUS_CANCELLED}}, namespace)
    result = _taskrun_result(taskrun, created=False, reused=False, changed=True)
    result["status"] = run_state(taskrun) if not check_mode else STATE_CANCELLING
    result["diff"] = {"before": {"spec": {"status": before}}, "after": {"spec": {"status": SPEC_STATUS_CANCELLED}}}
    return result
