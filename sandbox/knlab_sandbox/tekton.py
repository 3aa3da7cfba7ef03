"""Tekton Pipelines' TaskRun controller, simulated: TaskRun → Pod → steps → status.

How server.py wires it::

    controller = TektonController(api, settings, gateway)
    task = asyncio.create_task(controller.run())   # cancel the task to stop; running steps stop too

Importing this module registers the Tekton webhooks (tekton_admission). Every read and write goes
through the ``ResourceAPI`` (the same list/watch/update paths an external client uses).

What it does, as ``pkg/reconciler/taskrun`` and ``pkg/pod`` do (FACTS §2.3 to §2.6):

- Resolves ``taskRef`` (a Task in the namespace) or uses ``taskSpec``; a missing Task fails the run
  with ``TaskRunResolutionFailed``. Missing params or unbound workspaces fail it with
  ``TaskRunValidationFailed``. The resolved spec is kept in ``status.taskSpec``.
- Substitutes ``$(params.X)``, ``$(params.X[*])`` (array elements spread into args),
  ``$(params.X.key)``, ``$(workspaces.X.path)``, ``$(results.X.path)``, ``$(context.taskRun.name)``
  and friends, then creates Pod ``<taskrun>-pod`` (labels ``tekton.dev/taskRun``, ``tekton.dev/task``,
  ``tekton.dev/taskRunUID``; ``ownerReferences`` to the TaskRun; containers ``step-<name>``).
- Runs the steps in order. ``Succeeded`` goes Unknown/``Started`` → Unknown/``Running`` → True/
  ``Succeeded`` or False/``StepFailed`` (``"step-<name>" exited with code <N>: Error``); later steps are
  skipped. ``status.steps`` carry the container states, ``status.results`` what the steps wrote to
  ``/tekton/results``. ``spec.timeout`` → ``TaskRunTimeout``; ``spec.status: TaskRunCancelled`` →
  ``TaskRunCancelled`` and the pod is deleted; ``TaskRunPending`` waits without starting the clock.
- A step runs for real only when the sandbox can: a kaniko executor image (any tag or digest of
  gcr.io/kaniko-project/executor, ghcr.io/osscontainertools/kaniko, martizih/kaniko,
  quay.io/strimzi/kaniko-executor) with no ``script`` runs ``builder.execute`` with the step's
  args. Any other image, or a script, fails the step with exit code 1 and a log line saying why.
- The pod's filesystem is a directory per run: workspaces and volumes are materialised there
  (configMap and secret as files, emptyDir as a directory, a PVC as ``settings.volume_dir``), and
  every other container path lands in the pod's own scratch root. Step output goes to
  ``settings.log_path(ns, pod, "step-<name>")``, so ``kubectl logs`` works.
- ``settings.step_delay`` seconds are added to each step, so waits look like a cluster's.
- After a restart, runs that were in flight get a fresh pod (Tekton recreates a missing pod) and
  keep their start time, so their timeout still counts from the first start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import builder, kinds
from .errors import ApiStatusError
from .tekton_admission import API_VERSION, STATUS_CANCELLED, STATUS_PENDING, format_duration, parse_duration

# Importing tekton_admission registers the Tekton webhooks with admission.
from .volumes import write_atomic

if TYPE_CHECKING:
    from .resources import ResourceAPI
    from .settings import Settings

log = logging.getLogger(__name__)

SUCCEEDED = "Succeeded"
RESULTS_DIR = "/tekton/results"
RESULTS_LIMIT = 4096  # bytes of termination message per container
WATCH_RESTART_DELAY = 0.2
RETRY_DELAY = 1.0
MOUNT_RETRY_DELAY = 1.0
KANIKO_REPOSITORIES = frozenset(
    {
        "gcr.io/kaniko-project/executor",
        "ghcr.io/osscontainertools/kaniko",
        "index.docker.io/martizih/kaniko",
        "quay.io/strimzi/kaniko-executor",
    }
)
KANIKO_ENTRYPOINTS = ("/kaniko/executor", "executor")
KANIKO_ENV = {"DOCKER_CONFIG": "/kaniko/.docker/", "HOME": "/root", "SSL_CERT_DIR": "/kaniko/ssl/certs"}
VARIABLE = re.compile(r"\$\(([^()\s]+)\)")
BRACKETED = re.compile(r"""^(params|workspaces|results)\[(?:'([^']*)'|"([^"]*)")\](.*)$""")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def succeeded_condition(obj: dict) -> dict | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == SUCCEEDED:
            return condition
    return None


def is_done(obj: dict) -> bool:
    condition = succeeded_condition(obj)
    return condition is not None and condition.get("status") in ("True", "False")


def set_condition(status: dict, value: str, reason: str, message: str) -> None:
    """Set ``Succeeded``; the transition time moves only when something in it changes (knative semantics)."""
    current = next((c for c in status.get("conditions") or [] if c.get("type") == SUCCEEDED), None)
    wanted = {"type": SUCCEEDED, "status": value, "reason": reason, "message": message}
    if current is not None and all(current.get(k) == v for k, v in wanted.items()):
        return
    wanted["lastTransitionTime"] = now()
    others = [c for c in status.get("conditions") or [] if c.get("type") != SUCCEEDED]
    status["conditions"] = [*others, wanted]


# ---------------------------------------------------------------------------------------------
# Failures found while preparing a run
# ---------------------------------------------------------------------------------------------


class RunFailure(Exception):
    """The TaskRun ends False with this reason and message before (or instead of) running steps."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


class MountPending(Exception):
    """A volume cannot be mounted yet (its ConfigMap/Secret/PVC is missing): the pod stays Pending."""


# ---------------------------------------------------------------------------------------------
# Variable substitution
# ---------------------------------------------------------------------------------------------


@dataclass
class Substitutions:
    strings: dict[str, str] = field(default_factory=dict)
    arrays: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def key(expression: str) -> str:
        """``params["a.b"]`` → ``params.a.b``; anything else as written."""
        match = BRACKETED.match(expression)
        if not match:
            return expression
        return f"{match.group(1)}.{match.group(2) or match.group(3) or ''}{match.group(4)}"

    def lookup(self, expression: str) -> str | list[str] | None:
        key = self.key(expression)
        if key in self.strings:
            return self.strings[key]
        if key.endswith("[*]") and key[:-3] in self.arrays:
            return self.arrays[key[:-3]]
        index = re.match(r"^(.*)\[(\d+)\]$", key)
        if index and index.group(1) in self.arrays:
            values = self.arrays[index.group(1)]
            position = int(index.group(2))
            return values[position] if position < len(values) else None
        if key in self.arrays:
            return self.arrays[key]
        return None

    def text(self, value: str) -> str:
        def replace(match: re.Match[str]) -> str:
            found = self.lookup(match.group(1))
            if found is None:
                return match.group(0)  # unknown variables stay as written, as Tekton leaves them
            return " ".join(found) if isinstance(found, list) else found

        return VARIABLE.sub(replace, value)

    def items(self, values: Iterable[Any]) -> list[str]:
        """An args/command list: an element that is exactly one array reference spreads into many."""
        result: list[str] = []
        for value in values:
            text = str(value)
            whole = VARIABLE.fullmatch(text)
            found = self.lookup(whole.group(1)) if whole else None
            if isinstance(found, list):
                result.extend(found)
            else:
                result.append(self.text(text))
        return result

    def deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.deep(item) for item in value]
        if isinstance(value, dict):
            return {key: self.deep(item) for key, item in value.items()}
        return value


# ---------------------------------------------------------------------------------------------
# The pod's filesystem
# ---------------------------------------------------------------------------------------------


class PodFilesystem:
    """Container paths → host paths: mounts by longest prefix, everything else under a scratch root."""

    def __init__(self, root: Path):
        self.root = root
        self.rootfs = root / "rootfs"
        self.mounts: dict[str, Path] = {}

    def mount(self, container_path: str, host_path: Path) -> None:
        self.mounts["/" + builder._clean(container_path)] = host_path

    def host_path(self, container_path: str) -> Path:
        path = "/" + builder._clean(container_path)
        for mount in sorted(self.mounts, key=len, reverse=True):
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                rest = path[len(mount) :].lstrip("/")
                return self.mounts[mount] / rest if rest else self.mounts[mount]
        return self.rootfs / path.lstrip("/")


def _write_files(directory: Path, files: dict[str, bytes], items: list | None, mode: int | None) -> None:
    chosen = {item["key"]: item.get("path", item["key"]) for item in items or [] if "key" in item}
    payload = {builder._clean(chosen.get(key, key)): data for key, data in files.items() if not items or key in chosen}
    write_atomic(directory, payload, mode)


# ---------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------


@dataclass
class StepPlan:
    name: str  # the step's name ("unnamed-<i>" when it has none)
    container: dict  # the pod's container, after substitution
    script: str
    on_error: str
    working_dir: str


@dataclass
class RunPlan:
    task_name: str | None
    spec: dict  # the resolved task spec (before substitution)
    steps: list[StepPlan]
    pod: dict
    filesystem: PodFilesystem
    results: list[dict]


class TektonController:
    def __init__(self, api: ResourceAPI, settings: Settings, gateway: Any = None):
        self.api = api
        self.settings = settings
        self.gateway = gateway
        self.rt_taskrun = kinds.lookup(API_VERSION, "TaskRun")
        self.rt_task = kinds.lookup(API_VERSION, "Task")
        self.rt_pod = kinds.lookup("v1", "Pod")
        self.rt_configmap = kinds.lookup("v1", "ConfigMap")
        self.rt_secret = kinds.lookup("v1", "Secret")
        self.rt_pvc = kinds.lookup("v1", "PersistentVolumeClaim")
        self.workers: dict[str, asyncio.Task] = {}  # TaskRun uid → the task running it
        self._background: set[asyncio.Task] = set()

    # --- main loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._watch()
        finally:
            workers = list(self.workers.values())
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, *self._background, return_exceptions=True)

    async def _watch(self) -> None:
        """List, then watch from the list's resourceVersion; relist after 410, resume after a drop."""
        resource_version = None
        while True:
            if resource_version is None:
                items, resource_version = await self.api.list(self.rt_taskrun)
                for item in items:
                    await self._handle("ADDED", item)
            try:
                async for event in self.api.watch(self.rt_taskrun, resource_version=resource_version):
                    obj = event.get("object") or {}
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        await self._handle(event["type"], obj)
            except ApiStatusError as error:
                if error.code != 410:
                    raise
                resource_version = None
            await asyncio.sleep(WATCH_RESTART_DELAY)

    async def _handle(self, event_type: str, taskrun: dict) -> None:
        try:
            await self._reconcile(event_type, taskrun)
        except ApiStatusError as error:
            if error.code not in (404, 409):
                log.warning("reconciling TaskRun %s: %s", _key(taskrun), error.message)
            self._later(taskrun)
        except Exception:
            log.exception("reconciling TaskRun %s failed", _key(taskrun))
            self._later(taskrun)

    def _later(self, taskrun: dict) -> None:
        meta = taskrun["metadata"]

        async def retry() -> None:
            await asyncio.sleep(RETRY_DELAY)
            current = self.api.get_nowait(self.rt_taskrun, meta["name"], namespace=meta.get("namespace"))
            if current is not None and current["metadata"]["uid"] == meta["uid"]:
                await self._handle("MODIFIED", current)

        self._spawn(retry())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reconcile(self, event_type: str, taskrun: dict) -> None:
        uid = taskrun["metadata"]["uid"]
        worker = self.workers.get(uid)
        if event_type == "DELETED" or taskrun["metadata"].get("deletionTimestamp"):
            if worker is not None:
                worker.cancel()
            return
        if is_done(taskrun):
            return
        spec = taskrun.get("spec") or {}
        status = taskrun.get("status") or {}
        if spec.get("status") == STATUS_CANCELLED:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
            await self._finish_cancelled(taskrun)
            return
        if worker is not None:
            return
        if spec.get("status") == STATUS_PENDING and not status.get("startTime"):
            await self._mark_pending(taskrun)
            return
        # After a restart a run in flight gets a new pod: _create_pod replaces the one whose steps died.
        self.workers[uid] = asyncio.create_task(self._run_taskrun(taskrun))
        self.workers[uid].add_done_callback(lambda _: self.workers.pop(uid, None))

    # --- status writes ---------------------------------------------------------------------------

    async def _update_status(self, taskrun: dict, mutate: Callable[[dict], None]) -> dict | None:
        """Apply `mutate` to the latest status and write it; None when the TaskRun is gone."""
        meta = taskrun["metadata"]
        while True:
            current = self.api.get_nowait(self.rt_taskrun, meta["name"], namespace=meta.get("namespace"))
            if current is None or current["metadata"]["uid"] != meta["uid"]:
                return None
            status = copy.deepcopy(current.get("status") or {})
            mutate(status)
            if status == current.get("status"):
                return current
            current["status"] = status
            try:
                return await self.api.update(self.rt_taskrun, current, subresource="status", user=CONTROLLER_USER)
            except ApiStatusError as error:
                if error.code == 404:
                    return None
                if error.code != 409:
                    raise

    async def _mark_pending(self, taskrun: dict) -> None:
        name = taskrun["metadata"]["name"]
        await self._update_status(
            taskrun, lambda status: set_condition(status, "Unknown", "TaskRunPending", f'TaskRun "{name}" is pending')
        )

    async def _fail(self, taskrun: dict, reason: str, message: str, *, step_reason: str | None = None) -> None:
        stamp = now()

        def mutate(status: dict) -> None:
            if step_reason:
                for step in status.get("steps") or []:
                    _terminate_step(step, stamp, reason, step_reason, status.get("podName", ""))
            status["completionTime"] = stamp
            set_condition(status, "False", reason, message)

        updated = await self._update_status(taskrun, mutate)
        if updated is not None:
            await self._event(updated, "Warning", "Failed", message)

    async def _finish_cancelled(self, taskrun: dict) -> None:
        meta = taskrun["metadata"]
        status = taskrun.get("status") or {}
        if status.get("podName"):
            await self._delete_pod(meta.get("namespace", "default"), status["podName"])
        message = f'TaskRun "{meta["name"]}" was cancelled. {(taskrun.get("spec") or {}).get("statusMessage", "")}'
        await self._fail(taskrun, "TaskRunCancelled", message, step_reason="TaskRunCancelled")
        self._cleanup(taskrun)

    async def _event(self, taskrun: dict, kind: str, reason: str, message: str) -> None:
        with contextlib.suppress(ApiStatusError):
            await self.api.record_event(taskrun, reason, message, type=kind, component="taskrun-controller")

    # --- one run -----------------------------------------------------------------------------------

    async def _run_taskrun(self, taskrun: dict) -> None:
        meta = taskrun["metadata"]
        name = meta["name"]

        def started(status: dict) -> None:
            status.setdefault("startTime", now())
            status.setdefault("provenance", {"featureFlags": dict(FEATURE_FLAGS)})
            set_condition(status, "Unknown", "Started", "")

        updated = await self._update_status(taskrun, started)
        if updated is None or is_done(updated):
            return
        taskrun = updated
        timeout = parse_duration((taskrun.get("spec") or {}).get("timeout") or "1h")
        elapsed = (datetime.now(UTC) - parse_time(taskrun["status"]["startTime"])).total_seconds()
        try:
            if timeout > 0:
                await asyncio.wait_for(self._prepare_and_run(taskrun), max(0.0, timeout / 1e9 - elapsed))
            else:
                await self._prepare_and_run(taskrun)
        except RunFailure as failure:
            await self._fail_pod(taskrun)
            await self._fail(taskrun, failure.reason, failure.message, step_reason=failure.reason)
            self._cleanup(taskrun)
        except TimeoutError:
            current = self.api.get_nowait(self.rt_taskrun, name, namespace=meta.get("namespace"))
            if current is not None and not is_done(current):
                pod_name = (current.get("status") or {}).get("podName")
                if pod_name:
                    await self._delete_pod(meta.get("namespace", "default"), pod_name)
                limit = format_duration(timeout)
                message = f'TaskRun "{name}" failed to finish within "{limit}"'
                await self._fail(current, "TaskRunTimeout", message, step_reason="TaskRunTimeout")
            self._cleanup(taskrun)

    async def _prepare_and_run(self, taskrun: dict) -> None:
        task_name, spec = await self._resolve(taskrun)
        plan = await self._plan(taskrun, task_name, spec)
        pod = await self._create_pod(taskrun, plan)
        await self._mount_all(taskrun, plan, pod)
        await self._run_steps(taskrun, plan, pod)

    async def _resolve(self, taskrun: dict) -> tuple[str | None, dict]:
        spec = taskrun.get("spec") or {}
        if spec.get("taskSpec") is not None:
            return None, copy.deepcopy(spec["taskSpec"])
        ref = spec.get("taskRef") or {}
        if ref.get("resolver"):
            raise RunFailure(
                "TaskRunResolutionFailed",
                f'error requesting remote resource: resolver "{ref["resolver"]}" is not available in the knlab '
                "sandbox (it resolves Tasks from its own namespaces only)",
            )
        namespace = taskrun["metadata"].get("namespace", "default")
        try:
            task = await self.api.get(self.rt_task, ref.get("name", ""), namespace=namespace)
        except ApiStatusError as error:
            if error.code != 404:
                raise
            raise RunFailure(
                "TaskRunResolutionFailed",
                f"error when listing tasks for taskRun {taskrun['metadata']['name']}: {error.message}",
            ) from None
        if ref.get("name") and (taskrun["metadata"].get("labels") or {}).get("tekton.dev/task") != ref["name"]:
            patch = {"metadata": {"labels": {"tekton.dev/task": ref["name"]}}}
            await self.api.patch(
                self.rt_taskrun, taskrun["metadata"]["name"], patch, "merge", namespace=namespace, user=CONTROLLER_USER
            )
        return task["metadata"]["name"], copy.deepcopy(task.get("spec") or {})

    # --- planning: params, workspaces, substitution, the pod ----------------------------------------

    async def _plan(self, taskrun: dict, task_name: str | None, spec: dict) -> RunPlan:
        meta = taskrun["metadata"]
        namespace = meta.get("namespace", "default")
        run_spec = taskrun.get("spec") or {}
        subs = Substitutions()
        self._params(subs, task_name or meta["name"], spec, run_spec.get("params") or [])
        root = self.settings.run_dir / "tekton" / namespace / f"{meta['name']}-{meta['uid'][:8]}"
        filesystem = PodFilesystem(root)
        filesystem.mount(RESULTS_DIR, root / "results")
        subs.strings.update(
            {
                "context.taskRun.name": meta["name"],
                "context.taskRun.namespace": namespace,
                "context.taskRun.uid": meta["uid"],
                "context.task.name": task_name or meta["name"],
                "context.task.retry-count": "0",
                "credentials.path": "/tekton/creds",
            }
        )
        for result in spec.get("results") or []:
            subs.strings[f"results.{result['name']}.path"] = f"{RESULTS_DIR}/{result['name']}"
        volumes, mounts = self._workspaces(subs, taskrun, spec)
        volumes += [subs.deep(v) for v in spec.get("volumes") or []]
        volumes.append({"name": "tekton-internal-results", "emptyDir": {}})
        mounts.append({"name": "tekton-internal-results", "mountPath": RESULTS_DIR})
        steps = self._steps(subs, spec, mounts)
        pod = self._pod_object(taskrun, task_name, steps, volumes)
        plan = RunPlan(task_name, spec, steps, pod, filesystem, list(spec.get("results") or []))
        await self._store_task_spec(taskrun, spec, pod)
        return plan

    @staticmethod
    def _params(subs: Substitutions, task_name: str, spec: dict, given: list[dict]) -> None:
        values = {p.get("name"): p.get("value") for p in given}
        missing = []
        wrong_type = []
        for declared in spec.get("params") or []:
            name = declared.get("name")
            kind = declared.get("type", "string")
            value = values.get(name, declared.get("default"))
            if value is None:
                missing.append(name)
                continue
            if isinstance(value, dict) and isinstance(declared.get("default"), dict) and name in values:
                value = {**declared["default"], **value}
            actual = "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "string"
            if actual != kind:
                wrong_type.append(name)
                continue
            values[name] = value
        if missing:
            raise RunFailure(
                "TaskRunValidationFailed",
                f"invalid input params for task {task_name}: missing parameters: [{' '.join(missing)}]",
            )
        if wrong_type:
            raise RunFailure(
                "TaskRunValidationFailed",
                f"invalid input params for task {task_name}: param types don't match the user-specified type: "
                f"[{' '.join(wrong_type)}]",
            )
        for name, value in values.items():
            if isinstance(value, list):
                subs.arrays[f"params.{name}"] = [str(v) for v in value]
            elif isinstance(value, dict):
                for key, item in value.items():
                    subs.strings[f"params.{name}.{key}"] = str(item)
            elif value is not None:
                subs.strings[f"params.{name}"] = str(value)

    def _workspaces(self, subs: Substitutions, taskrun: dict, spec: dict) -> tuple[list[dict], list[dict]]:
        bindings = {b.get("name"): b for b in (taskrun.get("spec") or {}).get("workspaces") or []}
        declared = {w.get("name"): w for w in spec.get("workspaces") or []}
        for name in bindings:
            if name not in declared:
                raise RunFailure(
                    "TaskRunValidationFailed",
                    f'workspace binding "{name}" does not match any declared workspace',
                )
        volumes: list[dict] = []
        mounts: list[dict] = []
        for name, workspace in declared.items():
            binding = bindings.get(name)
            path = workspace.get("mountPath") or f"/workspace/{name}"
            subs.strings[f"workspaces.{name}.bound"] = "true" if binding else "false"
            subs.strings[f"workspaces.{name}.path"] = path if binding else ""
            if binding is None:
                if not workspace.get("optional"):
                    raise RunFailure(
                        "TaskRunValidationFailed",
                        f'declared workspace "{name}" is required but has not been bound',
                    )
                continue
            volume_name = "ws-" + hashlib.sha256(f"{taskrun['metadata']['uid']}/{name}".encode()).hexdigest()[:5]
            subs.strings[f"workspaces.{name}.volume"] = volume_name
            claim = (binding.get("persistentVolumeClaim") or {}).get("claimName", "")
            subs.strings[f"workspaces.{name}.claim"] = claim
            source = {k: v for k, v in binding.items() if k not in ("name", "subPath")}
            volumes.append({"name": volume_name, **source})
            mount = {"name": volume_name, "mountPath": path}
            if binding.get("subPath"):
                mount["subPath"] = binding["subPath"]
            if workspace.get("readOnly"):
                mount["readOnly"] = True
            mounts.append(mount)
        return volumes, mounts

    def _steps(self, subs: Substitutions, spec: dict, workspace_mounts: list[dict]) -> list[StepPlan]:
        template = spec.get("stepTemplate") or {}
        plans = []
        for index, raw_step in enumerate(spec.get("steps") or []):
            step = _merge_template(template, raw_step)
            name = step.get("name") or f"unnamed-{index}"
            container: dict[str, Any] = {"name": f"step-{name}", "image": subs.text(str(step.get("image", "")))}
            if step.get("command"):
                container["command"] = subs.items(step["command"])
            if step.get("args"):
                container["args"] = subs.items(step["args"])
            if step.get("workingDir"):
                container["workingDir"] = subs.text(step["workingDir"])
            if step.get("env"):
                container["env"] = subs.deep(step["env"])
            for key in ("envFrom", "securityContext", "imagePullPolicy"):
                if step.get(key):
                    container[key] = subs.deep(step[key])
            container["resources"] = step.get("computeResources") or {}
            container["volumeMounts"] = [*subs.deep(step.get("volumeMounts") or []), *copy.deepcopy(workspace_mounts)]
            container["terminationMessagePath"] = "/tekton/termination"
            container["terminationMessagePolicy"] = "File"
            plans.append(
                StepPlan(
                    name,
                    container,
                    subs.text(step.get("script") or ""),
                    str(step.get("onError") or "stopAndFail"),
                    # The kaniko executor image's WORKDIR; Tekton steps start there unless told otherwise.
                    container.get("workingDir", "/workspace"),
                )
            )
        return plans

    def _pod_object(self, taskrun: dict, task_name: str | None, steps: list[StepPlan], volumes: list[dict]) -> dict:
        meta = taskrun["metadata"]
        spec = taskrun.get("spec") or {}
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "app.kubernetes.io/managed-by"}
        labels.update(
            {
                "app.kubernetes.io/managed-by": "tekton-pipelines",
                "tekton.dev/taskRun": meta["name"],
                "tekton.dev/taskRunUID": meta["uid"],
            }
        )
        if task_name:
            labels["tekton.dev/task"] = task_name
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "serviceAccountName": spec.get("serviceAccountName") or "default",
            "containers": [copy.deepcopy(step.container) for step in steps],
            "volumes": volumes,
        }
        for key, value in (spec.get("podTemplate") or {}).items():
            if key not in ("env", "volumes"):
                pod_spec.setdefault(key, copy.deepcopy(value))
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": _pod_name(meta["name"]),
                "namespace": meta.get("namespace", "default"),
                "labels": labels,
                "annotations": {"pipeline.tekton.dev/release": "knlab-sandbox"},
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "TaskRun",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
        }

    async def _store_task_spec(self, taskrun: dict, spec: dict, pod: dict) -> None:
        pod_name = pod["metadata"]["name"]
        steps = [
            {"name": c["name"].removeprefix("step-"), "container": c["name"], "waiting": {"reason": "PodInitializing"}}
            for c in pod["spec"]["containers"]
        ]

        def mutate(status: dict) -> None:
            status["taskSpec"] = spec
            status["podName"] = pod_name
            status["steps"] = steps
            set_condition(status, "Unknown", "Pending", "Pending")

        await self._update_status(taskrun, mutate)

    # --- volumes -----------------------------------------------------------------------------------

    async def _mount_all(self, taskrun: dict, plan: RunPlan, pod: dict) -> None:
        """Materialise every volume; while one cannot be mounted the pod stays Pending (until the timeout)."""
        namespace = taskrun["metadata"].get("namespace", "default")
        pod_name = pod["metadata"]["name"]
        reported = ""
        while True:
            try:
                await self._mount_volumes(namespace, plan)
                return
            except MountPending as pending:
                message = f'pod status "Initialized":"False"; message: "{pending}"'
                if message != reported:
                    reported = message
                    await self._update_status(taskrun, lambda s, m=message: set_condition(s, "Unknown", "Pending", m))
                    await self._event(
                        pod, "Warning", "FailedMount", f"MountVolume.SetUp failed for pod {pod_name}: {pending}"
                    )
                await asyncio.sleep(MOUNT_RETRY_DELAY)

    async def _mount_volumes(self, namespace: str, plan: RunPlan) -> None:
        filesystem = plan.filesystem
        volume_dirs: dict[str, Path] = {}
        for volume in plan.pod["spec"]["volumes"]:
            volume_dirs[volume["name"]] = await self._materialise(namespace, volume, filesystem.root / "volumes")
        for step in plan.steps:
            for mount in step.container.get("volumeMounts") or []:
                host = volume_dirs.get(mount.get("name", ""))
                if host is None:
                    raise RunFailure(
                        "CreateContainerConfigError",
                        f'volumeMount "{mount.get("name")}" of {step.container["name"]} names no volume of the pod',
                    )
                if mount.get("subPath"):
                    host = host / builder._clean(mount["subPath"])
                    host.mkdir(parents=True, exist_ok=True)
                filesystem.mount(mount["mountPath"], host)

    async def _materialise(self, namespace: str, volume: dict, base: Path) -> Path:
        name = volume["name"]
        target = base / name
        if volume.get("configMap") is not None:
            source = volume["configMap"] or {}
            config = self.api.get_nowait(self.rt_configmap, source.get("name", ""), namespace=namespace)
            if config is None:
                if source.get("optional"):
                    target.mkdir(parents=True, exist_ok=True)
                    return target
                raise MountPending(f'configmap "{source.get("name", "")}" not found')
            files = {k: str(v).encode() for k, v in (config.get("data") or {}).items()}
            files.update({k: base64.b64decode(v) for k, v in (config.get("binaryData") or {}).items()})
            _refresh(target)
            _write_files(target, files, source.get("items"), source.get("defaultMode"))
            return target
        if volume.get("secret") is not None:
            source = volume["secret"] or {}
            secret = self.api.get_nowait(self.rt_secret, source.get("secretName", ""), namespace=namespace)
            if secret is None:
                if source.get("optional"):
                    target.mkdir(parents=True, exist_ok=True)
                    return target
                raise MountPending(f'secret "{source.get("secretName", "")}" not found')
            files = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            _refresh(target)
            _write_files(target, files, source.get("items"), source.get("defaultMode"))
            return target
        if volume.get("persistentVolumeClaim") is not None:
            claim = (volume["persistentVolumeClaim"] or {}).get("claimName", "")
            if self.api.get_nowait(self.rt_pvc, claim, namespace=namespace) is None:
                raise MountPending(f'persistentvolumeclaim "{claim}" not found')
            directory = self.settings.volume_dir(namespace, claim)
            directory.mkdir(parents=True, exist_ok=True)
            return directory
        if volume.get("emptyDir") is not None or volume.get("volumeClaimTemplate") is not None:
            # A claim template gives the run a fresh volume of its own: for one run, an empty directory.
            target.mkdir(parents=True, exist_ok=True)
            return target
        kind = next((k for k in volume if k != "name"), "unknown")
        raise RunFailure(
            "CreateContainerConfigError",
            f'volume "{name}": {kind} volumes are not supported by the knlab sandbox (configMap, secret, emptyDir, '
            "persistentVolumeClaim and volumeClaimTemplate are)",
        )

    # --- the pod -----------------------------------------------------------------------------------

    async def _create_pod(self, taskrun: dict, plan: RunPlan) -> dict:
        namespace = taskrun["metadata"].get("namespace", "default")
        name = plan.pod["metadata"]["name"]
        existing = self.api.get_nowait(self.rt_pod, name, namespace=namespace)
        if existing is not None:
            owners = existing["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == taskrun["metadata"]["uid"] for o in owners):
                await self._delete_pod(namespace, name)
            else:
                raise RunFailure(
                    "PodCreationFailed", f'failed to create task run pod "{name}": pods "{name}" already exists'
                )
        for container in plan.pod["spec"]["containers"]:
            path = self.settings.log_path(namespace, name, container["name"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        try:
            pod = await self.api.create(self.rt_pod, plan.pod, namespace=namespace, user=CONTROLLER_USER)
        except ApiStatusError as error:
            raise RunFailure("PodCreationFailed", f'failed to create task run pod "{name}": {error.message}') from None
        await self._event(taskrun, "Normal", "Started", "")
        return pod

    async def _fail_pod(self, taskrun: dict) -> None:
        pod_name = (
            (
                self.api.get_nowait(
                    self.rt_taskrun, taskrun["metadata"]["name"], namespace=taskrun["metadata"].get("namespace")
                )
                or {}
            )
            .get("status", {})
            .get("podName")
        )
        pod = (
            self.api.get_nowait(self.rt_pod, pod_name, namespace=taskrun["metadata"].get("namespace"))
            if pod_name
            else None
        )
        if pod is not None:
            await self._pod_status(pod, lambda s: _finish_pod_status(s, "Failed", now()))

    async def _delete_pod(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiStatusError):
            await self.api.delete(self.rt_pod, name, namespace=namespace)

    async def _pod_status(self, pod: dict, mutate: Callable[[dict], None]) -> None:
        meta = pod["metadata"]
        for _ in range(5):
            current = self.api.get_nowait(self.rt_pod, meta["name"], namespace=meta.get("namespace"))
            if current is None or current["metadata"]["uid"] != meta.get("uid"):
                return
            status = copy.deepcopy(current.get("status") or {})
            mutate(status)
            current["status"] = status
            try:
                await self.api.update(self.rt_pod, current, subresource="status", user=CONTROLLER_USER)
                return
            except ApiStatusError as error:
                if error.code != 409:
                    return

    # --- running steps -----------------------------------------------------------------------------

    async def _run_steps(self, taskrun: dict, plan: RunPlan, pod: dict) -> None:
        namespace = taskrun["metadata"].get("namespace", "default")
        pod_name = pod["metadata"]["name"]
        started = now()
        await self._pod_status(
            pod,
            lambda s: s.update(
                phase="Running",
                startTime=started,
                podIP="127.0.0.1",
                hostIP="127.0.0.1",
                conditions=[{"type": t, "status": "True", "lastTransitionTime": started} for t in POD_CONDITIONS],
                containerStatuses=[
                    _container_status(c, {"waiting": {"reason": "PodInitializing"}})
                    for c in plan.pod["spec"]["containers"]
                ],
            ),
        )
        await self._update_status(
            taskrun,
            lambda s: set_condition(s, "Unknown", "Running", "Not all Steps in the Task have finished executing"),
        )
        failure: tuple[str, int] | None = None
        for index, step in enumerate(plan.steps):
            container = step.container["name"]
            log_path = self.settings.log_path(namespace, pod_name, container)
            if failure is not None:
                await self._record_step(taskrun, pod, index, _skipped(now()), plan)
                continue
            step_started = now()
            await self._record_step(taskrun, pod, index, {"running": {"startedAt": step_started}}, plan)
            code = await self._execute_step(taskrun, plan, step, log_path)
            if code == 0 and self._results(plan)[1]:
                # The entrypoint writes the results into the termination message, which may not
                # pass 4096 bytes (termination.WriteMessage): it fails the step (StepFailed).
                with log_path.open("a", encoding="utf-8") as handle:
                    handle.write(f"{RESULTS_TOO_LONG}\n")
                code = 1
            finished = now()
            state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": step_started,
                    "finishedAt": finished,
                    "containerID": f"knlab://{pod['metadata']['uid']}/{container}",
                }
            }
            reason = "Completed" if code == 0 else "Continued" if step.on_error == "continue" else "Error"
            await self._record_step(taskrun, pod, index, state, plan, termination_reason=reason)
            if code != 0 and step.on_error != "continue":
                failure = (container, code)
        await self._finish(taskrun, plan, pod, failure)

    async def _execute_step(self, taskrun: dict, plan: RunPlan, step: StepPlan, log_path: Path) -> int:
        with log_path.open("a", encoding="utf-8") as handle:

            def write(line: str) -> None:
                handle.write(line + "\n")
                handle.flush()

            if self.settings.step_delay > 0:
                await asyncio.sleep(self.settings.step_delay)
            reason = self._cannot_run(step)
            if reason:
                write(f"knlab-sandbox: cannot run step {step.container['name']!r}: {reason}")
                return 1
            command = list(step.container.get("command") or [])
            args = command[1:] + list(step.container.get("args") or [])
            env = dict(KANIKO_ENV)
            env.update(await self._env(taskrun, step.container))
            environment = builder.Environment(
                path_of=plan.filesystem.host_path,
                cwd=step.working_dir,
                resolve=self.gateway.resolve if self.gateway is not None else None,
                env=env,
            )
            plan.filesystem.host_path(step.working_dir).mkdir(parents=True, exist_ok=True)
            return await builder.execute(args, write, environment)

    @staticmethod
    def _cannot_run(step: StepPlan) -> str:
        image = step.container.get("image", "")
        try:
            reference = builder.parse_reference(image)
        except ValueError as error:
            return f"invalid image reference {image!r}: {error}"
        kaniko = reference.name in KANIKO_REPOSITORIES
        if not kaniko:
            return (
                f"the knlab sandbox cannot execute image {image!r}: it has no container runtime and runs only "
                "kaniko executor steps (gcr.io/kaniko-project/executor, ghcr.io/osscontainertools/kaniko, "
                "martizih/kaniko, quay.io/strimzi/kaniko-executor) with their own entrypoint"
            )
        if step.script:
            return (
                f"the knlab sandbox cannot run a script in {image!r}: it has no shell to run it with (the kaniko "
                "executor image has none either; only its :debug variant has busybox)"
            )
        command = step.container.get("command") or []
        if command and command[0] not in KANIKO_ENTRYPOINTS:
            return (
                f"the knlab sandbox runs kaniko images only with their entrypoint /kaniko/executor, not {command[0]!r}"
            )
        return ""

    async def _env(self, taskrun: dict, container: dict) -> dict[str, str]:
        namespace = taskrun["metadata"].get("namespace", "default")
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            source = item.get("valueFrom")
            if not source:  # a literal; an empty `value` is omitted on the way in, and still means ""
                env[item["name"]] = str(item.get("value", ""))
                continue
            for key, rt, field_name in (
                ("configMapKeyRef", self.rt_configmap, "data"),
                ("secretKeyRef", self.rt_secret, "data"),
            ):
                ref = source.get(key)
                if not ref:
                    continue
                obj = self.api.get_nowait(rt, ref.get("name", ""), namespace=namespace) or {}
                value = (obj.get(field_name) or {}).get(ref.get("key", ""))
                if value is not None:
                    env[item["name"]] = base64.b64decode(value).decode() if key == "secretKeyRef" else str(value)
        return env

    async def _record_step(
        self, taskrun: dict, pod: dict, index: int, state: dict, plan: RunPlan, *, termination_reason: str = ""
    ) -> None:
        container = plan.pod["spec"]["containers"][index]

        def taskrun_mutate(status: dict) -> None:
            steps = status.setdefault("steps", [])
            while len(steps) <= index:
                steps.append({})
            entry = {
                "name": plan.steps[index].name,
                "container": container["name"],
                "imageID": container["image"],
                **copy.deepcopy(state),
                "provenance": {},
            }
            reason = termination_reason or ("Skipped" if state.get("terminated", {}).get("reason") == "Skipped" else "")
            if "terminated" in state:
                entry["terminationReason"] = reason or "Completed"
                # What the entrypoint left in the termination message, less Tekton's own entries:
                # the results this step wrote, re-encoded by Go's encoding/json.
                reported = {item["key"] for earlier in steps[:index] for item in _message_results(earlier)}
                results, oversized = self._results(plan)
                written = [r for r in results if r["name"] not in reported]
                if written and not oversized:
                    entry["terminated"]["message"] = go_json(
                        [{"key": r["name"], "value": _raw_result(r["value"]), "type": 1} for r in written]
                    )
            steps[index] = entry

        def pod_mutate(status: dict) -> None:
            statuses = status.setdefault("containerStatuses", [])
            for position, item in enumerate(statuses):
                if item.get("name") == container["name"]:
                    statuses[position] = _container_status(container, state)

        await self._pod_status(pod, pod_mutate)
        await self._update_status(taskrun, taskrun_mutate)

    async def _finish(self, taskrun: dict, plan: RunPlan, pod: dict, failure: tuple[str, int] | None) -> None:
        finished = now()
        await self._update_status(taskrun, lambda status: status.setdefault("artifacts", {}))
        results, oversized = self._results(plan)
        phase = "Failed" if failure or oversized else "Succeeded"
        await self._pod_status(pod, lambda s: _finish_pod_status(s, phase, finished))
        if failure is None and oversized:  # only after a step that may fail (onError: continue)
            await self._fail(taskrun, "TaskRunResultLargerThanAllowedLimit", RESULTS_TOO_LONG)
        elif failure is not None:
            container, code = failure
            # pkg/pod/status.go adds the container's terminated reason: kubelet's "Error" for an exit.
            await self._fail(taskrun, "StepFailed", f'"{container}" exited with code {code}: Error')
        else:

            def succeeded(status: dict) -> None:
                if results:
                    status["results"] = results
                status["completionTime"] = finished
                set_condition(status, "True", "Succeeded", "All Steps have completed executing")

            updated = await self._update_status(taskrun, succeeded)
            if updated is not None:
                await self._event(updated, "Normal", "Succeeded", "All Steps have completed executing")
        self._cleanup(taskrun)

    @staticmethod
    def _results(plan: RunPlan) -> tuple[list[dict], bool]:
        directory = plan.filesystem.host_path(RESULTS_DIR)
        results = []
        total = 0
        for declared in plan.results:
            path = directory / declared["name"]
            if not path.is_file():
                continue
            raw = path.read_text(errors="replace")
            total += len(raw.encode())
            kind = declared.get("type", "string")
            value: Any = raw
            if kind in ("array", "object"):
                try:
                    value = json.loads(raw)
                except ValueError:
                    value = raw
            results.append({"name": declared["name"], "type": kind, "value": value})
        return results, total > RESULTS_LIMIT

    def _cleanup(self, taskrun: dict) -> None:
        meta = taskrun["metadata"]
        root = self.settings.run_dir / "tekton" / meta.get("namespace", "default") / f"{meta['name']}-{meta['uid'][:8]}"
        shutil.rmtree(root, ignore_errors=True)


CONTROLLER_USER = "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller"
# pkg/termination/write.go errTooLong, what the entrypoint says when the results do not fit.
RESULTS_TOO_LONG = "Termination message is above max allowed size 4096, caused by large task result."
# status.provenance.featureFlags of a TaskRun on a stock Tekton v1.15.0 (release.yaml's
# feature-flags ConfigMap, as the real cluster reports them).
FEATURE_FLAGS = {
    "awaitSidecarReadiness": True,
    "coschedule": "workspaces",
    "enableAPIFields": "beta",
    "enableProvenanceInStatus": True,
    "enforceNonfalsifiability": "none",
    "maxResultSize": 4096,
    "resultExtractionMethod": "termination-message",
    "runningInEnvWithInjectedSidecars": True,
    "sendCloudEventsForRuns": True,
    "verificationNoMatchPolicy": "ignore",
}


def go_json(value: Any) -> str:
    """encoding/json's compact form: no spaces, UTF-8 kept, and <, >, & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _raw_result(value: Any) -> str:
    return value if isinstance(value, str) else go_json(value)


def _message_results(step: dict) -> list[dict]:
    message = (step.get("terminated") or {}).get("message")
    try:
        items = json.loads(message) if message else []
    except ValueError:
        return []
    return [item for item in items if isinstance(item, dict) and "key" in item]


POD_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


def _finish_pod_status(status: dict, phase: str, timestamp: str) -> None:
    """A finished pod as kubelet reports it: its phase, and Ready/ContainersReady False with
    PodCompleted (Succeeded) or PodFailed (Failed)."""
    status["phase"] = phase
    reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Ready", "ContainersReady") and condition.get("reason") != reason:
            condition.update(status="False", reason=reason, lastTransitionTime=timestamp)


def _key(taskrun: dict) -> str:
    meta = taskrun.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _pod_name(taskrun_name: str) -> str:
    """``<taskrun>-pod``, shortened like kmeta.ChildName when it would pass 63 characters."""
    name = f"{taskrun_name}-pod"
    if len(name) <= 63:
        return name
    digest = hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()
    return f"{taskrun_name[: 63 - len(digest) - 4]}{digest}-pod"


def _merge_template(template: dict, step: dict) -> dict:
    merged = copy.deepcopy(template)
    for key, value in step.items():
        if key == "env" and merged.get("env"):
            names = {item.get("name") for item in value or []}
            merged["env"] = [item for item in merged["env"] if item.get("name") not in names] + list(value or [])
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _container_status(container: dict, state: dict) -> dict:
    terminated = state.get("terminated")
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": container.get("image", ""),
        "ready": "running" in state,
        "started": "running" in state,
        "restartCount": 0,
        "state": copy.deepcopy(state),
        **({"containerID": terminated["containerID"]} if terminated and "containerID" in terminated else {}),
    }


def _skipped(stamp: str) -> dict:
    return {"terminated": {"exitCode": 1, "reason": "Skipped", "startedAt": stamp, "finishedAt": stamp}}


def _terminate_step(step: dict, stamp: str, reason: str, termination_reason: str, pod_name: str = "") -> None:
    """A step still running or waiting when the controller fails the run is marked terminated.

    As Tekton's terminateStepsInPod: exit code 1, and the run's reason (TaskRunTimeout,
    TaskRunCancelled, TaskRunImagePullFailed, ...) both as the container reason and as the
    step's terminationReason.
    """
    message = f"Step {step.get('name', '')} terminated as pod {pod_name} is terminated"
    if "running" in step:
        started = step.pop("running").get("startedAt", stamp)
        step["terminated"] = {
            "exitCode": 1,
            "reason": reason,
            "message": message,
            "startedAt": started,
            "finishedAt": stamp,
        }
        step["terminationReason"] = termination_reason
    elif "waiting" in step or not step.get("terminated"):
        step.pop("waiting", None)
        step["terminated"] = {"exitCode": 1, "reason": reason, "message": message, "finishedAt": stamp}
        step["terminationReason"] = termination_reason


def _refresh(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
