"""Tekton Pipelines' admission webhooks, simulated: TaskRun and Task defaulting and validation.

The real webhooks (``webhook.pipeline.tekton.dev`` for defaults, ``validation.webhook.pipeline.tekton.dev``
for validation) run ``pkg/apis/pipeline/v1/{taskrun,task,param,result,workspace}_{defaults,validation}.go``
with the ``config-defaults`` of a fresh install. This module does the same on plain dicts (FACTS
§2.2, §2.3), so that what a client reads back, and the errors it gets, look like a cluster's:

- TaskRun defaults: ``spec.timeout`` ``1h0m0s`` (every duration comes back in Go's canonical form,
  ``30m`` → ``30m0s``, because the webhook round-trips it through ``metav1.Duration``),
  ``spec.serviceAccountName`` ``default``, ``spec.taskRef.kind`` ``Task`` (no resolver), label
  ``app.kubernetes.io/managed-by: tekton-pipelines``; an embedded ``taskSpec`` gets the Task defaults.
- Task defaults: param ``type`` from the default value (``string``/``array``/``object``), result
  ``type`` ``string``.
- Validation: exactly one of ``taskRef``/``taskSpec``, unique params and workspaces, one volume
  source per workspace binding, ``spec.status``, negative timeouts, step rules (image, DNS-label
  names, ``script`` with ``command``), param and result names and types, references to undeclared
  params in a Task; once a TaskRun has started only ``spec.status``/``statusMessage`` may change.

Denials reach the client as 400 BadRequest with the webhook's message, rendered like
knative.dev/pkg ``apis.FieldError`` (shared with the Knative webhooks).
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from . import admission
from .errors import bad_request
from .knative_admission import Cause, render

if TYPE_CHECKING:
    from .admission import AdmissionContext

API_VERSION = "tekton.dev/v1"
DEFAULTING_WEBHOOK = "webhook.pipeline.tekton.dev"
VALIDATION_WEBHOOK = "validation.webhook.pipeline.tekton.dev"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "tekton-pipelines"
DEFAULT_TIMEOUT_MINUTES = 60
DEFAULT_SERVICE_ACCOUNT = "default"
STATUS_CANCELLED = "TaskRunCancelled"
STATUS_PENDING = "TaskRunPending"
PARAM_TYPES = ("string", "array", "object")
WORKSPACE_SOURCES = (
    ("configMap", "configmap"),
    ("emptyDir", "emptydir"),
    ("persistentVolumeClaim", "persistentvolumeclaim"),
    ("secret", "secret"),
    ("volumeClaimTemplate", "volumeclaimtemplate"),
    ("projected", "projected"),
    ("csi", "csi"),
)
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
PARAM_NAME = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9.-]*$")
RESULT_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
PARAM_REFERENCE = re.compile(
    r"\$\(params(?:\.([_a-zA-Z][_a-zA-Z0-9.-]*?)|\[['\"]([^'\"]+)['\"]\])(?:\[\*\]|\[\d+\])?\)"
)

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_UNITS_NS["h"] = 3600 * 10**9
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


# ---------------------------------------------------------------------------------------------
# Go durations (time.ParseDuration / Duration.String)
# ---------------------------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds; ValueError with Go's message on bad input."""
    original = text
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = Decimal(0)
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if not match:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)", text[position:]):
                raise ValueError(f'time: missing unit in duration "{original}"')
            raise ValueError(f'time: invalid duration "{original}"')
        try:
            total += Decimal(match.group(1)) * _UNITS_NS[match.group(2)]
        except InvalidOperation:
            raise ValueError(f'time: invalid duration "{original}"') from None
        position = match.end()
    return sign * int(total)


def format_duration(nanoseconds: int) -> str:
    """Go's ``Duration.String``: ``1h0m0s``, ``30m0s``, ``1.5s``, ``500ms``, ``0s``."""
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 0:
        return "-" + format_duration(-nanoseconds)
    if nanoseconds < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if nanoseconds >= size or unit == "ns":
                return _fraction(nanoseconds, size) + unit
    hours, rest = divmod(nanoseconds, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = _fraction(rest, 10**9) + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def _fraction(value: int, size: int) -> str:
    whole, part = divmod(value, size)
    if not part:
        return str(whole)
    digits = str(part).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------


class DecodeError(Exception):
    """The webhook could not even decode the object (e.g. a duration Go cannot parse)."""


def _default_param(param: dict) -> None:
    if param.get("type"):
        if param["type"] == "object":
            for prop in (param.get("properties") or {}).values():
                if isinstance(prop, dict):
                    prop.setdefault("type", "string")
        return
    default = param.get("default")
    if param.get("properties") or isinstance(default, dict):
        param["type"] = "object"
        for prop in (param.get("properties") or {}).values():
            if isinstance(prop, dict):
                prop.setdefault("type", "string")
    elif isinstance(default, list):
        param["type"] = "array"
    else:
        param["type"] = "string"


def default_task_spec(spec: dict) -> None:
    for param in spec.get("params") or []:
        if isinstance(param, dict):
            _default_param(param)
    for result in spec.get("results") or []:
        if isinstance(result, dict) and not result.get("type"):
            result["type"] = "object" if result.get("properties") else "string"
    for step in spec.get("steps") or []:
        if isinstance(step, dict) and step.get("timeout"):
            step["timeout"] = _canonical(step["timeout"])


def _canonical(value: Any) -> str:
    try:
        return format_duration(parse_duration(str(value)))
    except ValueError as error:
        raise DecodeError(str(error)) from None


def default_taskrun(obj: dict) -> None:
    labels = obj.setdefault("metadata", {}).setdefault("labels", {}) or {}
    obj["metadata"]["labels"] = labels
    labels.setdefault(MANAGED_BY_LABEL, MANAGED_BY_VALUE)
    spec = obj.setdefault("spec", {})
    if spec.get("timeout") in (None, ""):
        spec["timeout"] = format_duration(DEFAULT_TIMEOUT_MINUTES * 60 * 10**9)
    else:
        spec["timeout"] = _canonical(spec["timeout"])
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = DEFAULT_SERVICE_ACCOUNT
    task_ref = spec.get("taskRef")
    if isinstance(task_ref, dict) and not task_ref.get("kind") and not task_ref.get("resolver"):
        task_ref["kind"] = "Task"
    if isinstance(spec.get("taskSpec"), dict):
        default_task_spec(spec["taskSpec"])
    for param in spec.get("params") or []:
        if (
            isinstance(param, dict)
            and isinstance(param.get("value"), int | float)
            and not isinstance(param["value"], bool)
        ):
            param["value"] = str(param["value"])  # ParamValue decodes a bare number as a string


def default_task(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    default_task_spec(spec)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _multiple(*paths: str) -> Cause:
    return Cause("expected exactly one, got both", tuple(paths))


def _neither(*paths: str) -> Cause:
    return Cause("expected exactly one, got neither", tuple(paths))


def _missing(*paths: str) -> Cause:
    return Cause("missing field(s)", tuple(paths))


def _invalid(value: Any, path: str, details: str = "") -> Cause:
    return Cause(f"invalid value: {value}", (path,), details)


def validate_task_spec(spec: Any, prefix: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [_missing(f"{prefix}.steps")]
    causes: list[Cause] = []
    steps = spec.get("steps") or []
    if not steps:
        causes.append(_missing(f"{prefix}.steps"))
    causes += _validate_steps(steps, prefix)
    causes += _validate_params(spec.get("params") or [], prefix)
    causes += _validate_workspaces(spec.get("workspaces") or [], prefix)
    causes += _validate_results(spec.get("results") or [], prefix)
    volumes = [v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)]
    for index, name in enumerate(volumes):
        if name in volumes[:index]:
            causes.append(Cause(f'multiple volumes with same name "{name}"', (f"{prefix}.volumes[{index}].name",)))
    return causes


def _validate_steps(steps: list, prefix: str) -> list[Cause]:
    causes: list[Cause] = []
    names: set[str] = set()
    for index, step in enumerate(steps):
        path = f"{prefix}.steps[{index}]"
        if not isinstance(step, dict):
            causes.append(_invalid(step, path))
            continue
        if step.get("ref") is None and not step.get("image"):
            causes.append(_missing(f"{path}.Image"))
        if step.get("script") and step.get("command"):
            causes.append(Cause("script cannot be used with command", (f"{path}.script",)))
        name = step.get("name") or ""
        if name:
            if name in names:
                causes.append(_invalid(name, f"{path}.name"))
            if len(name) > 63 or not DNS1123_LABEL.match(name):
                causes.append(
                    Cause(
                        f'invalid value "{name}"',
                        (f"{path}.name",),
                        "Task step name must be a valid DNS Label, For more info refer to "
                        "https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#names",
                    )
                )
            names.add(name)
        on_error = step.get("onError")
        if on_error and on_error not in ("continue", "stopAndFail") and not str(on_error).startswith("$(params."):
            causes.append(
                Cause(
                    f'invalid value: "{on_error}"',
                    (f"{path}.onError",),
                    'Task step onError must be either "continue" or "stopAndFail"',
                )
            )
        if step.get("timeout"):
            try:
                if parse_duration(str(step["timeout"])) < 0:
                    causes.append(_invalid(step["timeout"], f"{path}.negative timeout"))
            except ValueError:
                pass  # the defaulter already refused it
        for mount_index, mount in enumerate(step.get("volumeMounts") or []):
            mount_path = str((mount or {}).get("mountPath", ""))
            if mount_path.startswith("/tekton/") and not mount_path.startswith("/tekton/home"):
                causes.append(
                    Cause(
                        f'volumeMount cannot be mounted under /tekton/ (volumeMount "{mount.get("name")}" mounted at '
                        f'"{mount_path}")',
                        (f"{path}.volumeMounts[{mount_index}].mountPath",),
                    )
                )
    return causes


def _validate_params(params: list, prefix: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for param in params:
        if not isinstance(param, dict):
            continue
        name = str(param.get("name", ""))
        path = f"{prefix}.params.{name}"
        if name in seen:
            causes.append(Cause("parameter appears more than once", (f"{prefix}.params[{name}]",)))
        seen.add(name)
        if not PARAM_NAME.match(name):
            causes.append(
                Cause(
                    "The format of following array and string variable names is invalid: [" + name + "]",
                    (f"{prefix}.params",),
                    "String/Array Names: \nMust only contain alphanumeric characters, hyphens (-), underscores (_), "
                    "and dots (.)\nMust begin with a letter or an underscore (_)",
                )
            )
        kind = param.get("type", "string")
        if kind not in PARAM_TYPES:
            causes.append(_invalid(f"invalid type {kind}", f"{path}.type"))
            continue
        default = param.get("default")
        if default is None:
            continue
        default_kind = "array" if isinstance(default, list) else "object" if isinstance(default, dict) else "string"
        if default_kind != kind:
            causes.append(
                Cause(
                    f'"{kind}" type does not match default value\'s type: "{default_kind}"',
                    (f"{path}.type", f"{path}.default.type"),
                )
            )
        enum = param.get("enum")
        if enum and default_kind == "string" and default not in enum:
            causes.append(Cause(f"param default value {default} not in the enum list", (f"{path}.enum",)))
    return causes


def _validate_workspaces(workspaces: list, prefix: str) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for index, workspace in enumerate(workspaces):
        name = str((workspace or {}).get("name", ""))
        if name in seen:
            causes.append(Cause(f'workspace name "{name}" must be unique', (f"{prefix}.workspaces[{index}].name",)))
        seen.add(name)
    return causes


def _validate_results(results: list, prefix: str) -> list[Cause]:
    causes: list[Cause] = []
    for index, result in enumerate(results):
        name = str((result or {}).get("name", ""))
        if not RESULT_NAME.match(name):
            causes.append(
                Cause(
                    f'invalid key name "{name}"',
                    (f"{prefix}.results[{index}].name",),
                    "Name must consist of alphanumeric characters, '-', '_', and must start and end with an "
                    "alphanumeric character (e.g. 'MyName',  or 'my-name',  or 'my_name', regex used for validation "
                    "is '^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$')",
                )
            )
        kind = (result or {}).get("type", "string")
        if kind not in PARAM_TYPES:
            causes.append(_invalid(kind, f"{prefix}.results[{index}].type"))
    return causes


def _strings(value: Any, path: str):
    """Every string inside a step, with its field path (for variable checks)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def validate_declared_params(spec: dict, prefix: str) -> list[Cause]:
    """A Task created on its own may only use the params it declares (no propagation)."""
    declared = {str(p.get("name")) for p in spec.get("params") or [] if isinstance(p, dict)}
    causes = []
    for index, step in enumerate(spec.get("steps") or []):
        for path, text in _strings(step, f"{prefix}.steps[{index}]"):
            for match in PARAM_REFERENCE.finditer(text):
                name = match.group(1) or match.group(2) or ""
                base = name.split(".", 1)[0] if name not in declared else name
                if name not in declared and base not in declared:
                    causes.append(Cause(f'non-existent variable in "{text}"', (path,)))
    return causes


def validate_object_metadata(obj: dict) -> list[Cause]:
    """pkg/apis/validate ObjectMetadata (Tekton v1.15.0): a DNS-1123 subdomain of at most 63
    characters. The API server has resolved generateName before admission."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    if not name:
        return []
    if len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        return [Cause(f"invalid resource name {json.dumps(name)}: must be a valid DNS label", ("metadata.name",))]
    if len(name) > 63:
        return [Cause("Invalid resource name: length must be no more than 63 characters", ("metadata.name",))]
    return []


def validate_taskrun(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = validate_object_metadata(obj)
    task_ref, task_spec = spec.get("taskRef"), spec.get("taskSpec")
    if task_ref is None and task_spec is None:
        causes.append(_neither("spec.taskRef", "spec.taskSpec"))
    if task_ref is not None and task_spec is not None:
        causes.append(_multiple("spec.taskRef", "spec.taskSpec"))
    if isinstance(task_ref, dict) and not task_ref.get("name") and not task_ref.get("resolver"):
        causes.append(_missing("spec.taskRef.name"))
    if task_spec is not None:
        causes += validate_task_spec(task_spec, "spec.taskSpec")
    names = [str((p or {}).get("name", "")) for p in spec.get("params") or []]
    for index, name in enumerate(names):
        if name.lower() in (n.lower() for n in names[:index]):
            causes.append(_multiple(f"spec.params[{name}].name"))
    causes += _validate_bindings(spec.get("workspaces") or [])
    status = spec.get("status") or ""
    if status and status not in (STATUS_CANCELLED, STATUS_PENDING):
        causes.append(_invalid(f"{status} should be {STATUS_CANCELLED} or {STATUS_PENDING}", "spec.status"))
    if not status and spec.get("statusMessage"):
        causes.append(
            _invalid(
                "statusMessage should not be set if status is not set, but it is currently set to "
                f"{spec['statusMessage']}",
                "spec.statusMessage",
            )
        )
    if isinstance(spec.get("retries"), int) and spec["retries"] < 0:
        causes.append(_invalid(f"{spec['retries']} should be >= 0", "spec.retries"))
    timeout = parse_duration(spec["timeout"]) if spec.get("timeout") else 0
    if timeout < 0:
        causes.append(_invalid(f"{format_duration(timeout)} should be >= 0", "spec.timeout"))
    if old is not None:
        causes += _validate_update(spec, old)
    return causes


def _validate_bindings(bindings: list) -> list[Cause]:
    causes: list[Cause] = []
    names: list[str] = []
    for index, raw in enumerate(bindings):
        path = f"spec.workspaces[{index}]"
        binding = raw or {}
        name = str(binding.get("name", ""))
        if name in names:
            causes.append(_multiple(f"{path}.name"))
        names.append(name)
        present = [lower for key, lower in WORKSPACE_SOURCES if binding.get(key) is not None]
        all_sources = tuple(f"{path}.{lower}" for _, lower in WORKSPACE_SOURCES)
        if not present:
            causes.append(_neither(*all_sources))
        elif len(present) > 1:
            causes.append(_multiple(*all_sources))
        if binding.get("configMap") is not None and not (binding["configMap"] or {}).get("name"):
            causes.append(_missing(f"{path}.configmap.name"))
        if binding.get("secret") is not None and not (binding["secret"] or {}).get("secretName"):
            causes.append(_missing(f"{path}.secret.secretName"))
        claim = binding.get("persistentVolumeClaim")
        if claim is not None and not (claim or {}).get("claimName"):
            causes.append(_missing(f"{path}.persistentvolumeclaim.claimname"))
    return causes


def _is_done(obj: dict) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Succeeded":
            return condition.get("status") in ("True", "False")
    return False


def _validate_update(spec: dict, old: dict) -> list[Cause]:
    if not (old.get("status") or {}).get("startTime"):
        return []
    before = copy.deepcopy(old.get("spec") or {})
    tip = "Once the TaskRun is complete, no updates are allowed"
    if not _is_done(old):
        for key in ("status", "statusMessage"):
            before.pop(key, None)
            if key in spec:
                before[key] = spec[key]
        tip = "Once the TaskRun has started, only status and statusMessage updates are allowed"
    if before != spec:
        return [_invalid(tip, "spec")]
    return []


def validate_task(obj: dict) -> list[Cause]:
    spec = obj.get("spec") or {}
    return validate_object_metadata(obj) + validate_task_spec(spec, "spec") + validate_declared_params(spec, "spec")


# ---------------------------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------------------------


def _decode_failure(error: DecodeError) -> Exception:
    return bad_request(
        f'admission webhook "{DEFAULTING_WEBHOOK}" denied the request: mutation failed: cannot decode incoming '
        f"new object: {error}"
    )


def _deny(causes: list[Cause]) -> None:
    if causes:
        raise bad_request(
            f'admission webhook "{VALIDATION_WEBHOOK}" denied the request: validation failed: {render(causes)}'
        )


def taskrun_defaulter(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    try:
        default_taskrun(obj)
    except DecodeError as error:
        raise _decode_failure(error) from None


def taskrun_validator(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    _deny(validate_taskrun(obj, old))


def task_defaulter(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    try:
        default_task(obj)
    except DecodeError as error:
        raise _decode_failure(error) from None


def task_validator(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    _deny(validate_task(obj))


def register_hooks() -> None:
    admission.register(f"{API_VERSION}/TaskRun", default=taskrun_defaulter, validate=taskrun_validator)
    admission.register(f"{API_VERSION}/Task", default=task_defaulter, validate=task_validator)


register_hooks()
