"""Knative Serving's controllers, simulated: Service → Configuration + Route → Revision → a process.

How server.py wires it::

    controller = KnativeController(api, settings, runtime, gateway)
    task = asyncio.create_task(controller.run())   # cancel the task to stop; it stops its processes

and, when the runtime is built, ``runtime.on_exit = controller.on_runtime_exit`` (a process that
dies after it was ready makes its Revision unhealthy). Importing this module imports
knative_admission, which registers the webhooks and the ``knative-serving`` ConfigMaps as seeds
(``knative_admission.SEED_OBJECTS``, created by ``ResourceAPI.seed_registered`` when absent).

What it does, as the real reconcilers in ``pkg/reconciler/{service,configuration,revision,route}``:

- Service: owns a Configuration and a Route of the same name (labels and annotations copied,
  ``ownerReferences`` with ``controller: true``); its status mirrors theirs, ``OutOfDate`` while a
  child has not observed its latest generation (FACTS §1.6).
- Configuration: one Revision per generation, ``<name>-<generation as %05d>`` or the template's
  own name (FACTS §1.7); ``latestCreatedRevisionName``/``latestReadyRevisionName``; ``RevisionFailed``.
- Revision: asks the runtime to run its pod spec with Knative's env (PORT, K_SERVICE,
  K_CONFIGURATION, K_REVISION) and keeps a Pod object named like a Deployment's pod, whose
  ``user-container`` log is the process output (``kubectl logs`` works). Ready when the process
  answers; a ``RuntimeFailure`` becomes ``ContainerHealthy=False`` with the runtime's reason and
  message, except a failed pull of digest-pinned images: kubelet's, retried with back-off (the pod
  waits in ``ImagePullBackOff``) until the progress deadline. A revision that no longer receives
  traffic is stopped (a cluster scales it to zero) but kept. min-scale/max-scale are accepted and
  recorded in an Event: exactly one process runs.
- Route: resolves traffic, points the gateway's external and cluster-local hosts at the revision
  with the largest percent (a split is not load-balanced: the biggest share takes every request)
  and at each tagged revision; URLs come from ``config-domain``/``config-network``.

Every write goes through the same ``ResourceAPI`` (admission included) as an external client's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import logging
import secrets
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from . import autoscaler, kinds, serviceaccounts
from .auth import TokenAuthority
from .errors import ApiStatusError
from .images import ImagePullError, ImageReference
from .knative_admission import (
    API_VERSION,
    CREATOR_ANNOTATION,
    DEPLOYMENT_DEFAULTS,
    GROUP,
    LAST_APPLIED_ANNOTATION,
    LAST_MODIFIER_ANNOTATION,
    NETWORK_DEFAULTS,
    SYSTEM_NAMESPACE,
    VISIBILITY_CLUSTER_LOCAL,
    VISIBILITY_LABEL,
    parse_go_duration,
    read_configmap_data,
)
from .volumes import write_atomic

if TYPE_CHECKING:
    from .gateway import Endpoint, Gateway
    from .resources import ResourceAPI
    from .settings import Settings

log = logging.getLogger(__name__)

CONTROLLER_USER = "system:serviceaccount:knative-serving:controller"
USER_CONTAINER = "user-container"
DEFAULT_PORT = 8080

SERVICE_LABEL = f"{GROUP}/service"
SERVICE_UID_LABEL = f"{GROUP}/serviceUID"
CONFIGURATION_LABEL = f"{GROUP}/configuration"
CONFIGURATION_UID_LABEL = f"{GROUP}/configurationUID"
CONFIGURATION_GENERATION_LABEL = f"{GROUP}/configurationGeneration"
REVISION_LABEL = f"{GROUP}/revision"
REVISION_UID_LABEL = f"{GROUP}/revisionUID"
ROUTING_STATE_LABEL = f"{GROUP}/routingState"
ROUTES_ANNOTATION = f"{GROUP}/routes"
ROUTING_STATE_MODIFIED_ANNOTATION = f"{GROUP}/routingStateModified"
PROGRESS_DEADLINE_ANNOTATION = f"{GROUP}/progress-deadline"

SERVICE_DEPENDENTS = ("ConfigurationsReady", "RoutesReady")
ROUTE_DEPENDENTS = ("AllTrafficAssigned", "IngressReady", "CertificateProvisioned")
REVISION_DEPENDENTS = ("ResourcesAvailable", "ContainerHealthy")

CONFIGURATION_OUT_OF_DATE = "The Configuration is still working to reflect the latest desired specification."
ROUTE_OUT_OF_DATE = "The Route is still working to reflect the latest desired specification."

RETRY_DELAY = 0.2  # seconds before a reconcile that lost a write race (409) runs again
# kubelet's image pull back-off (10 s doubling to 5 min), shortened: in the sandbox a registry that
# does not answer yet is a hub whose revision is still starting, e.g. right after a restart.
PULL_BACKOFF_INITIAL = 0.5
PULL_BACKOFF_MAX = 5.0
WATCH_RESTART_DELAY = 0.05


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Conditions, with knative.dev/pkg ConditionSet semantics
# ---------------------------------------------------------------------------------------------


class Conditions:
    """A living condition set: ``Ready`` is True only when every dependent is True.

    ``mark_false`` on a dependent makes Ready False with its reason; ``mark_unknown`` makes Ready
    Unknown unless some dependent is False; other condition types (``Active``) are informational
    (severity Info). ``lastTransitionTime`` changes only when a condition really changes.
    """

    def __init__(self, status: dict, dependents: tuple[str, ...], timestamp: str):
        self.status = status
        self.dependents = dependents
        self.timestamp = timestamp

    def get(self, kind: str) -> dict | None:
        return next((c for c in self.status.get("conditions") or [] if c.get("type") == kind), None)

    def is_(self, kind: str, value: str) -> bool:
        condition = self.get(kind)
        return condition is not None and condition.get("status") == value

    def set(self, kind: str, value: str, reason: str = "", message: str = "") -> None:
        new = {"type": kind, "status": value}
        if kind != "Ready" and kind not in self.dependents:
            new["severity"] = "Info"
        if reason:
            new["reason"] = reason
        if message:
            new["message"] = message
        old = self.get(kind)
        if old is not None and {k: v for k, v in old.items() if k != "lastTransitionTime"} == new:
            return
        new["lastTransitionTime"] = self.timestamp
        others = [c for c in self.status.get("conditions") or [] if c.get("type") != kind]
        self.status["conditions"] = sorted([*others, new], key=lambda c: c["type"])

    def initialize(self) -> None:
        if self.get("Ready") is None:
            self.set("Ready", "Unknown")
        for kind in self.dependents:
            if self.get(kind) is None:
                self.set(kind, "Unknown")

    def mark_true(self, kind: str, reason: str = "", message: str = "") -> None:
        self.set(kind, "True", reason, message)
        if kind in self.dependents and all(self.is_(d, "True") for d in self.dependents):
            self.set("Ready", "True")

    def mark_unknown(self, kind: str, reason: str = "", message: str = "") -> None:
        self.set(kind, "Unknown", reason, message)
        if kind not in self.dependents:
            return
        if any(self.is_(d, "False") for d in self.dependents):
            if not self.is_("Ready", "False"):
                self.set("Ready", "False", reason, message)
            return
        self.set("Ready", "Unknown", reason, message)

    def mark_false(self, kind: str, reason: str, message: str) -> None:
        self.set(kind, "False", reason, message)
        if kind in self.dependents:
            self.set("Ready", "False", reason, message)

    def copy_ready(self, kind: str, source: dict | None) -> None:
        """Mirror a child's Ready condition into ``kind`` (PropagateConfigurationStatus & co)."""
        if source is None:
            return
        value = source.get("status")
        if value == "True":
            self.mark_true(kind)
        elif value == "False":
            self.mark_false(kind, source.get("reason", ""), source.get("message", ""))
        else:
            self.mark_unknown(kind, source.get("reason", ""), source.get("message", ""))


def ready_condition(obj: dict | None) -> dict | None:
    if not obj:
        return None
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


def observed_current(obj: dict) -> bool:
    return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")


def is_failed(obj: dict) -> bool:
    condition = ready_condition(obj)
    return observed_current(obj) and condition is not None and condition.get("status") == "False"


def is_ready(obj: dict) -> bool:
    condition = ready_condition(obj)
    return observed_current(obj) and condition is not None and condition.get("status") == "True"


# ---------------------------------------------------------------------------------------------
# Object shapes
# ---------------------------------------------------------------------------------------------


def owner_reference(owner: dict) -> dict:
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controlled_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"].get("uid")
    return any(ref.get("controller") and ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def child_name(parent: str, suffix: str) -> str:
    """kmeta.ChildName: ``parent + suffix``, with the parent hashed when that exceeds 63 characters."""
    if len(parent) + len(suffix) <= 63:
        return parent + suffix
    digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
    head = parent[: max(63 - len(suffix) - len(digest), 0)]
    return (head + digest)[: 63 - len(suffix)] + suffix


def revision_name(configuration: dict) -> str:
    template_name = ((configuration["spec"].get("template") or {}).get("metadata") or {}).get("name")
    if template_name:
        return template_name
    return child_name(configuration["metadata"]["name"], f"-{configuration['metadata']['generation']:05d}")


def _inherited_annotations(meta: dict) -> dict:
    return {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED_ANNOTATION}


def _listed(annotation: str | None) -> set[str]:
    """The names in a comma-separated annotation such as ``serving.knative.dev/routes``."""
    return {item.strip() for item in (annotation or "").split(",") if item.strip()}


def desired_configuration(service: dict) -> dict:
    meta = service["metadata"]
    labels = {**(meta.get("labels") or {}), SERVICE_LABEL: meta["name"], SERVICE_UID_LABEL: meta["uid"]}
    return {
        "apiVersion": API_VERSION,
        "kind": "Configuration",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": _inherited_annotations(meta),
            "ownerReferences": [owner_reference(service)],
        },
        "spec": {"template": copy.deepcopy(service["spec"].get("template") or {})},
    }


def desired_route(service: dict) -> dict:
    meta = service["metadata"]
    labels = {**(meta.get("labels") or {}), SERVICE_LABEL: meta["name"], SERVICE_UID_LABEL: meta["uid"]}
    traffic = []
    for target in copy.deepcopy(service["spec"].get("traffic") or []):
        if not target.get("revisionName") and not target.get("configurationName"):
            target["configurationName"] = meta["name"]
        traffic.append(target)
    return {
        "apiVersion": API_VERSION,
        "kind": "Route",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": _inherited_annotations(meta),
            "ownerReferences": [owner_reference(service)],
        },
        "spec": {"traffic": traffic},
    }


def desired_revision(configuration: dict, name: str, timestamp: str) -> dict:
    meta = configuration["metadata"]
    template = configuration["spec"].get("template") or {}
    template_meta = template.get("metadata") or {}
    config_labels = meta.get("labels") or {}
    labels = {
        **(template_meta.get("labels") or {}),
        CONFIGURATION_LABEL: meta["name"],
        CONFIGURATION_GENERATION_LABEL: str(meta["generation"]),
        CONFIGURATION_UID_LABEL: meta["uid"],
        SERVICE_LABEL: config_labels.get(SERVICE_LABEL, ""),
        SERVICE_UID_LABEL: config_labels.get(SERVICE_UID_LABEL, ""),
        ROUTING_STATE_LABEL: "pending",
    }
    annotations = {**(template_meta.get("annotations") or {}), ROUTING_STATE_MODIFIED_ANNOTATION: timestamp}
    creator = (meta.get("annotations") or {}).get(LAST_MODIFIER_ANNOTATION)
    if creator:
        annotations[CREATOR_ANNOTATION] = creator
    return {
        "apiVersion": API_VERSION,
        "kind": "Revision",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(configuration)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def serving_container(spec: dict) -> dict:
    containers = spec.get("containers") or [{}]
    return next((c for c in containers if c.get("ports")), containers[0])


def digest_reference(image: str, digest: str | None) -> str:
    """``host/repository@sha256:…``, as Knative's tag resolution writes `imageDigest` and kubelet an
    `imageID`; an image already pinned to a digest is not resolved. "" when the digest is unknown."""
    if "@" in image:
        return image
    if not digest:
        return ""
    try:
        reference = ImageReference.parse(image)
    except ImagePullError:
        return ""
    return f"{reference.host}/{reference.repository}@{digest}"


def serving_port(spec: dict) -> int:
    ports = serving_container(spec).get("ports") or []
    return int(ports[0].get("containerPort") or DEFAULT_PORT) if ports else DEFAULT_PORT


def knative_env(revision: dict) -> dict[str, str]:
    labels = revision["metadata"].get("labels") or {}
    return {
        "PORT": str(serving_port(revision["spec"])),
        "K_REVISION": revision["metadata"]["name"],
        "K_CONFIGURATION": labels.get(CONFIGURATION_LABEL, ""),
        "K_SERVICE": labels.get(SERVICE_LABEL, ""),
    }


def runtime_pod_spec(revision: dict) -> dict:
    """The revision's pod spec as the Deployment would run it: Knative's env and ``user-port``."""
    spec = copy.deepcopy(revision["spec"])
    for key in ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds"):
        spec.pop(key, None)
    container = serving_container(spec)
    env = [e for e in container.get("env") or [] if e.get("name") not in knative_env(revision)]
    container["env"] = env + [{"name": k, "value": v} for k, v in knative_env(revision).items()]
    container["ports"] = [{"name": "user-port", "containerPort": serving_port(revision["spec"]), "protocol": "TCP"}]
    return spec


def pod_name_for(revision: dict) -> str:
    # A Deployment's pod: <revision>-deployment-<ReplicaSet hash>-<random suffix>.
    template_hash = hashlib.sha256(revision["metadata"]["uid"].encode()).hexdigest()[:10]
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    suffix = "".join(secrets.choice(alphabet) for _ in range(5))
    return f"{revision['metadata']['name']}-deployment-{template_hash}-{suffix}"


def route_hosts_cluster_local(name: str, namespace: str) -> list[str]:
    return [f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def select_domain(domain_data: dict[str, str], labels: dict[str, str]) -> str:
    """config-domain: the most specific matching ``selector:`` wins, then the default (empty) key."""
    best, best_size, default = None, -1, None
    for domain, value in domain_data.items():
        if domain.startswith("_"):
            continue
        selector = _parse_selector(value or "")
        if not selector:
            default = default or domain
        elif all(labels.get(k) == v for k, v in selector.items()) and len(selector) > best_size:
            best, best_size = domain, len(selector)
    return best or default or "svc.cluster.local"


def _parse_selector(text: str) -> dict[str, str]:
    selector: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped == "selector:" or ":" not in stripped:
            continue
        key, _, value = stripped.partition(":")
        selector[key.strip()] = value.strip().strip("\"'")
    return selector


def render_domain_template(template: str, name: str, namespace: str, domain: str) -> str:
    return template.replace("{{.Name}}", name).replace("{{.Namespace}}", namespace).replace("{{.Domain}}", domain)


# ---------------------------------------------------------------------------------------------
# The controller
# ---------------------------------------------------------------------------------------------


@dataclass
class RevisionRun:
    """One revision's process as the controller knows it."""

    key: str
    pod_name: str
    task: asyncio.Task | None = None
    endpoint: Endpoint | None = None
    failure_reason: str = ""
    failure_message: str = ""
    # Which Revision condition a failure falls on: the pod never came up vs. its container is broken.
    failure_condition: str = "ContainerHealthy"
    started_at: str = field(default_factory=now)
    restarts: int = 0  # the pod's restartCount: its containers were started again in place
    # Why kubelet cannot start the container yet while it keeps trying (ImagePullBackOff,
    # CreateContainerConfigError): the pod's waiting state, and the Revision's failure at the deadline.
    waiting_reason: str = ""
    waiting_message: str = ""
    # When the container's process started, while it does not listen yet ("" when not running).
    running_since: str = ""
    # How the container ended last while it crash-loops (ExitCode<N>, "Container failed with: ...").
    # Knative reports it only once the progress deadline passed, beside ProgressDeadlineExceeded.
    last_exit_reason: str = ""
    last_exit_message: str = ""
    pod_deleted: bool = False  # its pod was deleted from outside: the run is replaced
    deadline_exceeded: bool = False  # the progress deadline passed (ResourcesAvailable=False)
    resolving: bool = False  # Knative's controller is resolving the image's tag to a digest
    token_volume: str = ""  # the pod's kube-api-access-* volume, when its ServiceAccount token is mounted
    resolved_digest: str = ""  # host/repository@sha256:… that the tag resolved to
    # A scaled revision (autoscaler.py): the endpoint routes name while this instance restarts, and the
    # runtime key of an instance beyond the first (the first uses the revision's own key).
    last_endpoint: Endpoint | None = None

    @property
    def failed(self) -> bool:
        return bool(self.failure_reason)


class PodConfigError(Exception):
    """The pod cannot be started as specified (what kubelet or the scheduler would refuse)."""

    def __init__(self, reason: str, message: str, condition: str = "ContainerHealthy"):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.condition = condition


@dataclass
class PodInputs:
    """What the runtime needs besides the pod spec, resolved the way kubelet resolves it."""

    env: dict[str, str]
    volume_sources: dict[str, Path]
    pull_secrets: list[dict]


class _WorkQueue:
    """Deduplicating queue of (kind, namespace, name) keys."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._pending: set[tuple[str, str, str]] = set()

    def add(self, key: tuple[str, str, str]) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    async def get(self) -> tuple[str, str, str]:
        key = await self._queue.get()
        self._pending.discard(key)
        return key


class KnativeController:
    def __init__(
        self, api: ResourceAPI, settings: Settings, runtime: Any, gateway: Gateway, tokens: TokenAuthority | None = None
    ):
        self.api = api
        self.settings = settings
        self.runtime = runtime
        self.gateway = gateway
        # ServiceAccount tokens for pods, and the API's address for their KUBERNETES_SERVICE_* (server.py
        # sets it once the API listens). Without them pods get neither, as before.
        self.tokens = tokens
        self.api_endpoint: tuple[str, int] | None = None
        self.rt_service_account = kinds.lookup("v1", "ServiceAccount")
        self.rt = {kind: kinds.lookup(API_VERSION, kind) for kind in ("Service", "Configuration", "Revision", "Route")}
        self.rt_pod = kinds.lookup("v1", "Pod")
        self.rt_configmap = kinds.lookup("v1", "ConfigMap")
        self.rt_secret = kinds.lookup("v1", "Secret")
        self.rt_pvc = kinds.lookup("v1", "PersistentVolumeClaim")
        self.queue = _WorkQueue()
        self.runs: dict[str, RevisionRun] = {}
        self.route_hosts: dict[str, list[str]] = {}
        self.known_routes: set[tuple[str, str]] = set()
        self._retry_tasks: set[asyncio.Task] = set()
        # Scaled revisions (autoscaler.py): their decisions, and their instances beyond the first.
        self.autoscalers: dict[str, autoscaler.Autoscaler] = {}
        self.instances: dict[str, list[RevisionRun]] = {}
        self._respawns: set[asyncio.Task] = set()

    # --- main loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        watches = [
            self._watch(self.rt["Service"], self._on_service),
            self._watch(self.rt["Configuration"], self._on_configuration),
            self._watch(self.rt["Revision"], self._on_revision),
            self._watch(self.rt["Route"], self._on_route),
            self._watch(self.rt_configmap, self._on_configmap, namespace=SYSTEM_NAMESPACE),
            self._watch(self.rt_pod, self._on_pod),
        ]
        tasks = [asyncio.create_task(w) for w in watches]
        tasks.append(asyncio.create_task(self._work()))
        tasks.append(asyncio.create_task(self._autoscale()))
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            # Shut down: the processes go with the controller. (After a crash they keep running and
            # the restarted run() finds them in self.runs.)
            await self._cancel(tasks)
            await self._stop_all()
            raise
        finally:
            await self._cancel(tasks)

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, rt: kinds.ResourceType, handler: Callable[[str, dict], None], namespace=None) -> None:
        """List, then watch from the list's resourceVersion; relist after 410, resume after a drop."""
        resource_version = None
        while True:
            if resource_version is None:
                items, resource_version = await self.api.list(rt, namespace=namespace)
                for item in items:
                    handler("ADDED", item)
            try:
                async for event in self.api.watch(rt, namespace=namespace, resource_version=resource_version):
                    obj = event.get("object") or {}
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        handler(event["type"], obj)
            except ApiStatusError as error:
                if error.code != 410:
                    raise
                resource_version = None
            await asyncio.sleep(WATCH_RESTART_DELAY)

    async def _work(self) -> None:
        reconcilers = {
            "Service": self._reconcile_service,
            "Configuration": self._reconcile_configuration,
            "Revision": self._reconcile_revision,
            "Route": self._reconcile_route,
        }
        while True:
            kind, namespace, name = await self.queue.get()
            try:
                await reconcilers[kind](namespace, name)
            except ApiStatusError as error:
                # 409: someone wrote first; 404: the object went away mid-way. Both resolve on a retry.
                if error.code not in (404, 409):
                    log.warning("reconciling %s %s/%s: %s", kind, namespace, name, error.message)
                self._retry((kind, namespace, name))
            except Exception:
                log.exception("reconciling %s %s/%s failed", kind, namespace, name)
                self._retry((kind, namespace, name))

    def _retry(self, key: tuple[str, str, str]) -> None:
        async def later() -> None:
            await asyncio.sleep(RETRY_DELAY)
            self.queue.add(key)

        task = asyncio.create_task(later())
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    # --- event handlers: which keys an event concerns ----------------------------------------

    @staticmethod
    def _ns_name(obj: dict) -> tuple[str, str]:
        return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]

    def _owner_names(self, obj: dict, kind: str) -> Iterable[str]:
        return [r["name"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("kind") == kind]

    def _on_service(self, event: str, obj: dict) -> None:
        self.queue.add(("Service", *self._ns_name(obj)))

    def _on_configuration(self, event: str, obj: dict) -> None:
        namespace, name = self._ns_name(obj)
        self.queue.add(("Configuration", namespace, name))
        for owner in self._owner_names(obj, "Service"):
            self.queue.add(("Service", namespace, owner))
        self._enqueue_routes(namespace)

    def _on_revision(self, event: str, obj: dict) -> None:
        namespace, name = self._ns_name(obj)
        self.queue.add(("Revision", namespace, name))
        for owner in self._owner_names(obj, "Configuration"):
            self.queue.add(("Configuration", namespace, owner))
        self._enqueue_routes(namespace)

    def _on_route(self, event: str, obj: dict) -> None:
        namespace, name = self._ns_name(obj)
        if event == "DELETED":
            self.known_routes.discard((namespace, name))
        else:
            self.known_routes.add((namespace, name))
        self.queue.add(("Route", namespace, name))
        for owner in self._owner_names(obj, "Service"):
            self.queue.add(("Service", namespace, owner))

    def _on_pod(self, event: str, obj: dict) -> None:
        # A Revision's pod deleted by someone else (`kubectl delete pod`): its ReplicaSet makes a
        # new one at once. Pods this controller deletes itself belong to no run any more.
        if event != "DELETED":
            return
        namespace, name = self._ns_name(obj)
        revision = (obj["metadata"].get("labels") or {}).get(REVISION_LABEL)
        run = self.runs.get(f"{namespace}/{revision}") if revision else None
        if run is not None and run.pod_name == name:
            run.pod_deleted = True
            self.queue.add(("Revision", namespace, revision))
        for instance in self.instances.get(f"{namespace}/{revision}", []):
            if instance.pod_name == name:
                instance.pod_deleted = True  # the next autoscaler tick replaces it

    def _on_configmap(self, event: str, obj: dict) -> None:
        # A new domain or domain template changes every URL: re-reconcile all Routes.
        if obj["metadata"]["name"] in ("config-domain", "config-network"):
            self._enqueue_routes(None)

    def _enqueue_routes(self, namespace: str | None) -> None:
        for route_namespace, route_name in list(self.known_routes):
            if namespace is None or route_namespace == namespace:
                self.queue.add(("Route", route_namespace, route_name))

    # --- small API helpers --------------------------------------------------------------------

    async def _get(self, rt: kinds.ResourceType, name: str, namespace: str) -> dict | None:
        return self.api.get_nowait(rt, name, namespace=namespace)

    async def _write_status(self, rt: kinds.ResourceType, obj: dict, status: dict) -> None:
        if status == (obj.get("status") or {}):
            return
        updated = copy.deepcopy(obj)
        updated["status"] = status
        await self.api.update(rt, updated, subresource="status", user=CONTROLLER_USER)

    # --- Service ------------------------------------------------------------------------------

    async def _ensure_child(self, service: dict, kind: str, desired: dict) -> tuple[dict | None, bool]:
        """Create or update a child; returns (child, owned)."""
        rt = self.rt[kind]
        namespace, name = self._ns_name(service)
        existing = await self._get(rt, name, namespace)
        if existing is None:
            created = await self.api.create(rt, desired, namespace=namespace, user=CONTROLLER_USER)
            return created, True
        if not controlled_by(existing, service):
            return existing, False
        meta = existing["metadata"]
        wanted_meta = desired["metadata"]
        if (
            existing.get("spec") != desired["spec"]
            or (meta.get("labels") or {}) != wanted_meta["labels"]
            or (meta.get("annotations") or {}) != wanted_meta["annotations"]
        ):
            updated = copy.deepcopy(existing)
            updated["spec"] = desired["spec"]
            updated["metadata"]["labels"] = wanted_meta["labels"]
            updated["metadata"]["annotations"] = wanted_meta["annotations"]
            existing = await self.api.update(rt, updated, user=CONTROLLER_USER)
        return existing, True

    async def _reconcile_service(self, namespace: str, name: str) -> None:
        service = await self._get(self.rt["Service"], name, namespace)
        if service is None or service["metadata"].get("deletionTimestamp"):
            return
        status = copy.deepcopy(service.get("status") or {})
        conditions = Conditions(status, SERVICE_DEPENDENTS, now())
        conditions.initialize()
        status["observedGeneration"] = service["metadata"].get("generation")

        desired = desired_configuration(service)
        # As MakeConfigurationFromExisting: the routes already named stay, and this Service's Route joins them.
        existing_configuration = await self._get(self.rt["Configuration"], name, namespace)
        routes = _listed(
            (existing_configuration or {}).get("metadata", {}).get("annotations", {}).get(ROUTES_ANNOTATION)
        )
        desired["metadata"]["annotations"][ROUTES_ANNOTATION] = ",".join(sorted(routes | {name}))
        configuration, owned = await self._ensure_child(service, "Configuration", desired)
        if not owned:
            message = f'There is an existing Configuration "{name}" that we do not own.'
            conditions.mark_false("ConfigurationsReady", "NotOwned", message)
            await self._write_status(self.rt["Service"], service, status)
            return
        # Bring the children up to date first, so that the Service never mirrors a child status
        # computed before this change (such as the previous generation's Ready=False).
        await self._reconcile_configuration(namespace, name)
        configuration = await self._get(self.rt["Configuration"], name, namespace) or configuration
        configuration_current = observed_current(configuration)
        if not configuration_current:
            conditions.mark_unknown("ConfigurationsReady", "OutOfDate", CONFIGURATION_OUT_OF_DATE)
            # The Route's status was computed against the old Configuration: it is out of date too,
            # so a Ready=False from the previous generation is not reported for this one.
            conditions.mark_unknown("RoutesReady", "OutOfDate", ROUTE_OUT_OF_DATE)
            if ((service["spec"].get("template") or {}).get("metadata") or {}).get("name"):
                # A bring-your-own name: the Route must wait for that Revision to exist.
                await self._write_status(self.rt["Service"], service, status)
                return
        else:
            for key in ("latestCreatedRevisionName", "latestReadyRevisionName"):
                value = (configuration.get("status") or {}).get(key)
                if value:
                    status[key] = value
            conditions.copy_ready("ConfigurationsReady", ready_condition(configuration))

        route, owned = await self._ensure_child(service, "Route", desired_route(service))
        if not owned:
            conditions.mark_false("RoutesReady", "NotOwned", f'There is an existing Route "{name}" that we do not own.')
            await self._write_status(self.rt["Service"], service, status)
            return
        await self._reconcile_route(namespace, name)
        route = await self._get(self.rt["Route"], name, namespace) or route
        if not observed_current(route) or not configuration_current:
            conditions.mark_unknown("RoutesReady", "OutOfDate", ROUTE_OUT_OF_DATE)
        else:
            route_status = route.get("status") or {}
            for key in ("url", "address", "traffic"):
                if key in route_status:
                    status[key] = copy.deepcopy(route_status[key])
            conditions.copy_ready("RoutesReady", ready_condition(route))
            self._check_routes_not_ready(configuration, route, conditions)
        await self._write_status(self.rt["Service"], service, status)

    @staticmethod
    def _check_routes_not_ready(configuration: dict, route: dict, conditions: Conditions) -> None:
        """RoutesReady stays Unknown until the Route serves what the Service asked for."""
        if not conditions.is_("RoutesReady", "True"):
            return
        wanted = copy.deepcopy(route["spec"].get("traffic") or [])
        got = copy.deepcopy((route.get("status") or {}).get("traffic") or [])
        latest_ready = (configuration.get("status") or {}).get("latestReadyRevisionName", "")
        for target in wanted:
            if target.get("configurationName") == configuration["metadata"]["name"]:
                target["revisionName"] = latest_ready
                target.pop("configurationName")
        ignored = ("url", "latestRevision")

        def strip(targets: list[dict]) -> list[dict]:
            return [{k: v for k, v in t.items() if k not in ignored} for t in targets]

        if strip(wanted) != strip(got):
            conditions.mark_unknown(
                "RoutesReady", "TrafficNotMigrated", "Traffic is not yet migrated to the latest revision."
            )

    # --- Configuration ------------------------------------------------------------------------

    async def _reconcile_configuration(self, namespace: str, name: str) -> None:
        configuration = await self._get(self.rt["Configuration"], name, namespace)
        if configuration is None or configuration["metadata"].get("deletionTimestamp"):
            return
        status = copy.deepcopy(configuration.get("status") or {})
        conditions = Conditions(status, (), now())
        conditions.initialize()
        status["observedGeneration"] = configuration["metadata"].get("generation")

        wanted_name = revision_name(configuration)
        revision = await self._get(self.rt["Revision"], wanted_name, namespace)
        if revision is None:
            try:
                body = desired_revision(configuration, wanted_name, now())
                revision = await self.api.create(self.rt["Revision"], body, namespace=namespace, user=CONTROLLER_USER)
            except ApiStatusError as error:
                message = f"Revision creation failed with message: {error.message}."
                conditions.mark_false("Ready", "RevisionFailed", message)
                await self._write_status(self.rt["Configuration"], configuration, status)
                return
        elif not self._is_revision_of(revision, configuration):
            taken = f'revisions.{GROUP} "{wanted_name}" already exists'
            conditions.mark_false("Ready", "RevisionFailed", f"Revision creation failed with message: {taken}.")
            await self._write_status(self.rt["Configuration"], configuration, status)
            return

        status["latestCreatedRevisionName"] = wanted_name
        if status.get("latestReadyRevisionName") != wanted_name:
            conditions.mark_unknown("Ready")
        revision_ready = ready_condition(revision)
        if revision_ready is not None and revision_ready.get("status") == "False":
            message = f'Revision "{wanted_name}" failed with message: {revision_ready.get("message", "")}.'
            conditions.mark_false("Ready", "RevisionFailed", message)
        latest_ready = await self._latest_ready_revision(configuration)
        if latest_ready:
            status["latestReadyRevisionName"] = latest_ready
            if latest_ready == wanted_name:
                conditions.mark_true("Ready")
        elif status.get("latestReadyRevisionName") and not await self._get(
            self.rt["Revision"], status["latestReadyRevisionName"], namespace
        ):
            # Only a missing one was deleted; a latest ready revision that failed since is reported above.
            message = f'Revision "{status["latestReadyRevisionName"]}" was deleted.'
            conditions.mark_false("Ready", "RevisionDeleted", message)
        await self._write_status(self.rt["Configuration"], configuration, status)

    @staticmethod
    def _is_revision_of(revision: dict, configuration: dict) -> bool:
        labels = revision["metadata"].get("labels") or {}
        return controlled_by(revision, configuration) and labels.get(CONFIGURATION_GENERATION_LABEL) == str(
            configuration["metadata"]["generation"]
        )

    async def _latest_ready_revision(self, configuration: dict) -> str:
        namespace, name = self._ns_name(configuration)
        revisions, _ = await self.api.list(
            self.rt["Revision"], namespace=namespace, label_selector=f"{CONFIGURATION_LABEL}={name}"
        )

        def generation(revision: dict) -> int:
            try:
                return int((revision["metadata"].get("labels") or {}).get(CONFIGURATION_GENERATION_LABEL, "0"))
            except ValueError:
                return 0

        ready = [r for r in revisions if controlled_by(r, configuration) and is_ready(r)]
        return max(ready, key=generation)["metadata"]["name"] if ready else ""

    # --- Revision -----------------------------------------------------------------------------

    async def _reconcile_revision(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        revision = await self._get(self.rt["Revision"], name, namespace)
        if revision is None or revision["metadata"].get("deletionTimestamp"):
            await self._stop_run(key, delete_pod=False)  # the Pod goes with its owner (GC)
            return
        status = copy.deepcopy(revision.get("status") or {})
        conditions = Conditions(status, REVISION_DEPENDENTS, now())
        conditions.initialize()
        status["observedGeneration"] = revision["metadata"].get("generation")
        container = serving_container(revision["spec"])
        container_name = container.get("name") or USER_CONTAINER
        known = {c.get("name"): c.get("imageDigest") for c in status.get("containerStatuses") or []}

        routing_state = (revision["metadata"].get("labels") or {}).get(ROUTING_STATE_LABEL, "pending")
        wanted = routing_state in ("pending", "active")
        run = self.runs.get(key)
        if run is not None and run.pod_deleted:
            # Its process goes with the pod; a new pod (a new name) takes its place below.
            await self._stop_run(key, delete_pod=False)
            run = None
        already_failed = conditions.is_("Ready", "False")
        if wanted and run is None and not already_failed:
            run = await self._start_run(revision)
        elif not wanted and run is not None and not run.failed:
            await self._stop_run(key, delete_pod=True)
            run = None

        # The digest stays once known (a Revision's image never changes), also after its pod is gone.
        container_status = {"name": container_name}
        image_digest = (
            known.get(container_name)
            or (run.resolved_digest if run is not None else "")
            or digest_reference(str(container.get("image", "")), self.runtime.image_digest(key))
        )
        if image_digest:
            container_status["imageDigest"] = image_digest
        status["containerStatuses"] = [container_status]

        if run is None:
            if conditions.is_("Ready", "True") and not wanted:
                conditions.set("Active", "False", "NoTraffic", "The target is not receiving traffic.")
                status["actualReplicas"] = 0
                status["desiredReplicas"] = 0
        elif run.failed:
            self._mark_run_failed(conditions, run)
            status["actualReplicas"] = 0
            await self._stop_instances(key, delete_pods=True)
        elif run.resolving:
            conditions.mark_unknown("ResourcesAvailable", "ResolvingDigests")
        elif run.endpoint is not None or (key in self.autoscalers and self._ready(key)):
            conditions.mark_true("ResourcesAvailable")
            conditions.mark_true("ContainerHealthy")
            conditions.set("Active", "True")
            status["actualReplicas"] = len(self._ready(key)) if key in self.autoscalers else 1
            status["desiredReplicas"] = self.autoscalers[key].desired if key in self.autoscalers else 1
        elif not conditions.is_("Ready", "True"):
            # The KPA marks its PodAutoscaler activating at once (kpa.go), and the Revision copies it.
            conditions.set(
                "Active", "Unknown", "Queued", "Requests to the target are being buffered as resources are provisioned."
            )
            if not conditions.is_("ContainerHealthy", "False"):
                conditions.mark_unknown("ContainerHealthy", "Deploying")
            conditions.mark_unknown("ResourcesAvailable", "Deploying")
            status["desiredReplicas"] = 1
        await self._write_status(self.rt["Revision"], revision, status)

    @staticmethod
    def _mark_run_failed(conditions: Conditions, run: RevisionRun) -> None:
        # Active is the autoscaler's to set (from its PodAutoscaler), never a copy of a failure.
        if run.deadline_exceeded and run.failure_condition != "ResourcesAvailable":
            conditions.mark_false(
                "ResourcesAvailable",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{run.pod_name.rsplit("-", 1)[0]}" has timed out progressing.',
            )
        conditions.mark_false(run.failure_condition, run.failure_reason, run.failure_message)

    # --- what kubelet resolves before starting a container --------------------------------------

    async def _pod_inputs(self, revision: dict) -> PodInputs:
        namespace, name = self._ns_name(revision)
        spec = revision["spec"]
        container = serving_container(spec)
        env = await self._resolve_env(container, namespace)
        env.update(knative_env(revision))
        volume_root = self.settings.run_dir / "volumes" / namespace / name
        volume_sources = await self._materialise_volumes(spec, namespace, volume_root)
        return PodInputs(env, volume_sources, await self._pull_secrets(revision))

    async def _pull_secrets(self, revision: dict) -> list[dict]:
        """The imagePullSecrets' docker config documents (Knative's resolver and kubelet both use them)."""
        namespace = revision["metadata"]["namespace"]
        pull_secrets = []
        for reference in revision["spec"].get("imagePullSecrets") or []:
            secret = await self._get(self.rt_secret, reference.get("name", ""), namespace)
            encoded = ((secret or {}).get("data") or {}).get(".dockerconfigjson")
            if encoded:  # kubelet ignores a missing or malformed pull secret and pulls anonymously
                with contextlib.suppress(ValueError):
                    pull_secrets.append(json.loads(base64.b64decode(encoded)))
        return pull_secrets

    async def _source_data(self, kind: str, name: str, namespace: str, *, optional: bool) -> dict[str, str] | None:
        """A ConfigMap's or Secret's values as text; None when it is absent but optional."""
        rt = self.rt_configmap if kind == "ConfigMap" else self.rt_secret
        obj = await self._get(rt, name, namespace)
        if obj is None:
            if optional:
                return None
            raise PodConfigError("CreateContainerConfigError", f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        data = dict(obj.get("data") or {})
        data.update({k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("binaryData") or {}).items()})
        return data

    async def _resolve_env(self, container: dict, namespace: str) -> dict[str, str]:
        """envFrom values and valueFrom references; literal ``env`` values are the runtime's to apply."""
        literal = {e.get("name") for e in container.get("env") or [] if "valueFrom" not in e}
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(key)
                if not ref:
                    continue
                data = await self._source_data(kind, ref.get("name", ""), namespace, optional=bool(ref.get("optional")))
                for name, value in (data or {}).items():
                    if prefix + name not in literal:  # an explicit env entry wins over envFrom
                        env[prefix + name] = value
        for item in container.get("env") or []:
            value_from = item.get("valueFrom")
            if not value_from:
                continue
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = value_from.get(key)
                if not ref:
                    continue
                optional = bool(ref.get("optional"))
                data = await self._source_data(kind, ref.get("name", ""), namespace, optional=optional)
                if data is None:
                    continue
                if ref.get("key") not in data:
                    if optional:
                        continue
                    message = f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name')}"
                    raise PodConfigError("CreateContainerConfigError", message)
                env[item["name"]] = data[ref["key"]]
            if "configMapKeyRef" not in value_from and "secretKeyRef" not in value_from:
                raise PodConfigError(
                    "CreateContainerConfigError",
                    f"env {item.get('name')}: only configMapKeyRef and secretKeyRef can be resolved in the sandbox",
                )
        return env

    async def _materialise_volumes(self, spec: dict, namespace: str, root: Path) -> dict[str, Path]:
        """Write configMap/secret/projected volumes as files; check that claimed PVCs exist."""
        shutil.rmtree(root, ignore_errors=True)
        sources: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            name = volume.get("name", "")
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and await self._get(self.rt_pvc, claim, namespace) is None:
                # The scheduler cannot place a pod whose claim does not exist.
                message = f'0/1 nodes are available: persistentvolumeclaim "{claim}" not found.'
                raise PodConfigError("Unschedulable", message, "ResourcesAvailable")
            projections = []
            if volume.get("configMap") is not None:
                projections.append(("ConfigMap", volume["configMap"], volume["configMap"].get("name", "")))
            elif volume.get("secret") is not None:
                projections.append(("Secret", volume["secret"], volume["secret"].get("secretName", "")))
            elif volume.get("projected") is not None:
                for source in volume["projected"].get("sources") or []:
                    for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                        if source.get(key) is not None:
                            projections.append((kind, source[key], source[key].get("name", "")))
            else:
                continue
            directory = root / name
            payload: dict[str, bytes] = {}
            for kind, ref, source_name in projections:
                data = await self._source_data(kind, source_name, namespace, optional=bool(ref.get("optional")))
                for key, relative in self._volume_items(ref, data or {}, kind, source_name):
                    payload[relative] = data[key].encode()
            write_atomic(directory, payload)
            sources[name] = directory
        return sources

    @staticmethod
    def _volume_items(ref: dict, data: dict[str, str], kind: str, name: str) -> list[tuple[str, str]]:
        items = ref.get("items")
        if not items:
            return [(key, key) for key in data]
        chosen = []
        for item in items:
            relative = str(item.get("path") or item.get("key"))
            if relative.startswith("/") or ".." in PurePosixPath(relative).parts:
                raise PodConfigError("CreateContainerConfigError", f"invalid path {relative!r} in volume items")
            if item.get("key") not in data:
                if ref.get("optional"):
                    continue
                message = f"configmap references non-existent config key: {item.get('key')}"
                if kind == "Secret":
                    message = f'references non-existent secret key: {item.get("key")} of secret "{name}"'
                raise PodConfigError("CreateContainerConfigError", message)
            chosen.append((item["key"], relative))
        return chosen

    async def _progress_deadline(self, revision: dict) -> float:
        annotation = (revision["metadata"].get("annotations") or {}).get(PROGRESS_DEADLINE_ANNOTATION)
        configured = (await read_configmap_data(self.api, "config-deployment")).get("progress-deadline")
        for text in (annotation, configured, DEPLOYMENT_DEFAULTS["progress-deadline"]):
            if text:
                try:
                    return parse_go_duration(text)
                except ValueError:
                    continue
        return 600.0

    async def _start_run(self, revision: dict) -> RevisionRun:
        namespace, name = self._ns_name(revision)
        key = f"{namespace}/{name}"
        # The pod an earlier server process left (after a kill -9 or a stop) is restarted in place,
        # as kubelet restarts the containers of a pod that outlives a node restart: same name and
        # uid, restartCount + 1, and a fresh container filesystem (the hub without a PVC is empty).
        survivor = await self._surviving_pod(revision)
        run = RevisionRun(key=key, pod_name=survivor["metadata"]["name"] if survivor else pod_name_for(revision))
        self.runs[key] = run
        await self._delete_stale_pods(revision, keep=run.pod_name)
        annotations = revision["metadata"].get("annotations") or {}
        if autoscaler.is_scaled(annotations):
            config = await read_configmap_data(self.api, "config-autoscaler")
            self.autoscalers[key] = autoscaler.Autoscaler(autoscaler.policy_for(annotations, config))
            self.gateway.set_pool(key, [])
        deadline = await self._progress_deadline(revision)
        run.task = asyncio.create_task(self._run_revision(revision, run, survivor, deadline))
        return run

    async def _run_revision(self, revision: dict, run: RevisionRun, survivor: dict | None, deadline: float) -> None:
        namespace, name = self._ns_name(revision)
        pull_secrets = await self._pull_secrets(revision)
        if not await self._resolve_tag(revision, run, pull_secrets):
            # Knative's controller gives up before it makes a Deployment: there is no pod at all.
            if survivor is not None:
                with contextlib.suppress(ApiStatusError):
                    await self.api.delete(self.rt_pod, run.pod_name, namespace=namespace)
            log.info("revision %s/%s failed: %s: %s", namespace, name, run.failure_reason, run.failure_message)
            self.queue.add(("Revision", namespace, name))
            self._enqueue_routes(namespace)
            return
        account_name = serviceaccounts.account_name(revision["spec"])
        delay = PULL_BACKOFF_INITIAL
        while await self._get(self.rt_service_account, account_name, namespace) is None:
            # The ServiceAccount admission plug-in refuses the pod; the ReplicaSet reports FailedCreate
            # (Knative copies it into ResourcesAvailable) and tries again with back-off. No pod meanwhile.
            if not run.failed:
                prefix = run.pod_name.rsplit("-", 1)[0] + "-"
                message = serviceaccounts.missing_account_message(prefix, namespace, account_name)
                self._fail(run, "FailedCreate", message, "ResourcesAvailable")
                if survivor is not None:
                    with contextlib.suppress(ApiStatusError):
                        await self.api.delete(self.rt_pod, run.pod_name, namespace=namespace)
                    survivor = None
                log.info("revision %s/%s waits: %s: %s", namespace, name, run.failure_reason, run.failure_message)
                self.queue.add(("Revision", namespace, name))
                self._enqueue_routes(namespace)
            await asyncio.sleep(delay)
            delay = min(delay * 2, PULL_BACKOFF_MAX)
        if run.failed:  # the account exists now: the ReplicaSet's next try makes the pod
            run.failure_reason = run.failure_message = ""
            run.failure_condition = "ContainerHealthy"
            self.queue.add(("Revision", namespace, name))
        if survivor is not None:
            run.token_volume = serviceaccounts.token_volume_name(survivor.get("spec") or {}) or ""
        pod = await self._restart_pod(survivor, run) if survivor else await self._create_pod(revision, run)
        log_path = self.settings.log_path(namespace, run.pod_name, USER_CONTAINER)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            starting = self._start_pod(revision, run, pod, pull_secrets, log_path)
            endpoint = await asyncio.wait_for(starting, timeout=deadline)
        except TimeoutError:
            with contextlib.suppress(Exception):
                await self.runtime.stop(run.key)
            if run.last_exit_reason:  # a crash loop: the exit, and the deadline (Ready shows the exit)
                self._fail(run, run.last_exit_reason, run.last_exit_message, "ContainerHealthy")
                run.deadline_exceeded = True
            elif run.waiting_reason:  # Knative reports the pod's waiting reason once the deadline passed
                self._fail(run, run.waiting_reason, run.waiting_message, "ResourcesAvailable")
            else:
                self._fail(run, "ProgressDeadlineExceeded", "Initial scale was never achieved", "ResourcesAvailable")
        except PodConfigError as error:
            self._fail(run, error.reason, error.message, error.condition)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # RuntimeFailure carries reason/message; anything else is a sandbox bug
            reason = getattr(error, "reason", "") or "RuntimeError"
            message = getattr(error, "message", "") or f"the sandbox runtime failed: {error!r}"
            condition = "ResourcesAvailable" if reason == "ProgressDeadlineExceeded" else "ContainerHealthy"
            self._fail(run, reason, message, condition)
        else:
            run.endpoint = run.last_endpoint = endpoint
            self._sync_pool(f"{namespace}/{name}")
        if run.failed:
            log.info("revision %s/%s failed: %s: %s", namespace, name, run.failure_reason, run.failure_message)
        if pod is not None:
            await self._update_pod_status(pod, run)
        self.queue.add(("Revision", namespace, name))
        self._enqueue_routes(namespace)

    async def _resolve_tag(self, revision: dict, run: RevisionRun, pull_secrets: list[dict]) -> bool:
        """Knative's tag-to-digest resolution, done once per Revision before its Deployment exists.

        A failure is final for the Revision (ContainerHealthy=False ContainerMissing). Digests and the
        registries in ``registries-skipping-tag-resolving`` are not resolved: kubelet pulls them.
        """
        container = serving_container(revision["spec"])
        image = str(container.get("image", ""))
        name = container.get("name") or USER_CONTAINER
        resolved = {
            c.get("name") for c in (revision.get("status") or {}).get("containerStatuses") or [] if c.get("imageDigest")
        }
        if name in resolved or "@" in image:
            return True
        deployment = await read_configmap_data(self.api, "config-deployment")
        skipped = deployment.get(
            "registries-skipping-tag-resolving", DEPLOYMENT_DEFAULTS["registries-skipping-tag-resolving"]
        )
        try:
            host = ImageReference.parse(image).host
        except ImagePullError:
            host = ""
        if host and host in {entry.strip() for entry in skipped.split(",")}:
            return True
        timeout = 10.0
        with contextlib.suppress(ValueError):
            timeout = parse_go_duration(
                deployment.get("digest-resolution-timeout") or DEPLOYMENT_DEFAULTS["digest-resolution-timeout"]
            )
        run.resolving = True
        self.queue.add(("Revision", *self._ns_name(revision)))
        try:
            digest = await asyncio.wait_for(self.runtime.resolve(image, pull_secrets), timeout=timeout)
        except TimeoutError:
            why = "context deadline exceeded"
            self._fail(
                run,
                "ContainerMissing",
                f'Unable to fetch image "{image}": failed to resolve image to digest: {why}',
                "ContainerHealthy",
            )
        except asyncio.CancelledError:
            raise
        except Exception as failure:  # the runtime's RuntimeFailure carries reason and message
            message = getattr(failure, "message", "") or str(failure)
            self._fail(run, "ContainerMissing", message, "ContainerHealthy")
        else:
            run.resolved_digest = digest_reference(image, digest)
        finally:
            run.resolving = False
            self.queue.add(("Revision", *self._ns_name(revision)))
        return not run.failed

    async def _start_pod(
        self, revision: dict, run: RevisionRun, pod: dict | None, pull_secrets: list[dict], log_path: Path
    ) -> Endpoint:
        """Start the pod; while kubelet cannot (an image it cannot pull, a ConfigMap or Secret that is
        missing) it shows why on the pod and tries again with back-off, as kubelet does, until the
        caller's progress deadline. The Revision stays Deploying meanwhile."""
        spec = runtime_pod_spec(revision)
        namespace = run.key.split("/", 1)[0]
        account = await self._mount_token(spec, namespace, run)
        delay = PULL_BACKOFF_INITIAL
        pull_failures = 0

        async def started() -> None:
            # The process runs but does not listen yet: kubelet's Running, the pod not Ready.
            run.running_since, run.waiting_reason, run.waiting_message = now(), "", ""
            if pod is not None:
                await self._update_pod_status(pod, run)

        while True:
            try:
                inputs = await self._pod_inputs(revision)
                await self._account_inputs(inputs, spec, run, pod=pod, account=account)
                return await self.runtime.start(
                    run.key,
                    namespace,
                    spec,
                    inputs.env,
                    log_path,
                    volume_sources=inputs.volume_sources,
                    pull_secrets=inputs.pull_secrets,
                    on_started=started,
                )
            except PodConfigError as error:
                if error.reason != "CreateContainerConfigError":
                    raise
                run.waiting_reason, run.waiting_message = error.reason, error.message
            except Exception as failure:  # the runtime's RuntimeFailure carries reason and message
                reason = getattr(failure, "reason", "")
                if reason == "ContainerMissing":
                    # kubelet's words (k8s 1.34 images/image_manager.go): ErrImagePull with the
                    # runtime's error, then ImagePullBackOff carrying that error while it backs off.
                    image = str(serving_container(spec).get("image") or "")
                    why = failure.message.split("failed to resolve image to digest: ", 1)[-1]
                    pulled = f'failed to pull and unpack image "{image}": {why}'
                    if any(code in why for code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "404")):
                        # containerd's words for a manifest the registry does not have (seen on
                        # knlab-cluster: containerd 1.6, kubelet 1.34).
                        pulled = (
                            f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                            f'failed to resolve reference "{image}": {image}: not found'
                        )
                    pull_failures += 1
                    if pull_failures == 1:
                        run.waiting_reason, run.waiting_message = "ErrImagePull", pulled
                    else:
                        run.waiting_reason = "ImagePullBackOff"
                        run.waiting_message = f'Back-off pulling image "{image}": ErrImagePull: {pulled}'
                elif reason == "CreateContainerConfigError":
                    run.waiting_reason, run.waiting_message = reason, failure.message
                elif reason.startswith("ExitCode"):
                    # A container that exits before it listens: kubelet restarts it with back-off
                    # (CrashLoopBackOff) and the Revision stays Deploying until the deadline.
                    run.last_exit_reason, run.last_exit_message = reason, failure.message
                    run.running_since = ""
                    run.restarts += 1
                    run.waiting_reason = "CrashLoopBackOff"
                    run.waiting_message = (
                        f"back-off {delay:g}s restarting failed container={USER_CONTAINER} pod={run.pod_name}"
                    )
                else:
                    raise
            if pod is not None:
                await self._update_pod_status(pod, run)
            await asyncio.sleep(delay)
            delay = min(delay * 2, PULL_BACKOFF_MAX)

    @staticmethod
    def _fail(run: RevisionRun, reason: str, message: str, condition: str) -> None:
        run.failure_reason, run.failure_message, run.failure_condition = reason, message, condition

    async def on_runtime_exit(self, key: str, failure: Any) -> None:
        """The runtime's report of a process that ended on its own: the container is unhealthy."""
        revision_key, _, _ = key.partition("#")
        instance = self._instance(revision_key, key)
        if instance is not None and revision_key in self.autoscalers:
            # An instance of a scaled revision: kubelet restarts its container in place (restartPolicy
            # Always) and the gateway sends its requests to the other instances meanwhile.
            if instance.task is None or instance.task.done():
                await self._instance_exited(revision_key, instance, failure)
            return
        run = self.runs.get(key)
        if run is None or run.task is None or not run.task.done():
            return
        run.endpoint = None
        self._fail(run, failure.reason, failure.message, "ContainerHealthy")
        namespace, name = key.split("/", 1)
        pod = await self._get(self.rt_pod, run.pod_name, namespace)
        if pod is not None:
            await self._update_pod_status(pod, run)
        self.queue.add(("Revision", namespace, name))
        self._enqueue_routes(namespace)

    async def _stop_run(self, key: str, *, delete_pod: bool) -> None:
        await self._stop_instances(key, delete_pods=delete_pod)
        if self.autoscalers.pop(key, None) is not None:
            self.gateway.remove_pool(key)
        run = self.runs.pop(key, None)
        if run is None:
            return
        if run.task is not None and not run.task.done():
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
        with contextlib.suppress(Exception):
            await self.runtime.stop(key)
        if delete_pod:
            namespace = key.split("/", 1)[0]
            with contextlib.suppress(ApiStatusError):
                await self.api.delete(self.rt_pod, run.pod_name, namespace=namespace)

    async def _stop_all(self) -> None:
        for key in list(self.runs):
            await self._stop_run(key, delete_pod=False)

    # --- scaled revisions: more than one instance (autoscaler.py) -----------------------------

    def _instance(self, revision_key: str, runtime_key: str) -> RevisionRun | None:
        run = self.runs.get(revision_key)
        if run is not None and run.key == runtime_key:
            return run
        return next((i for i in self.instances.get(revision_key, []) if i.key == runtime_key), None)

    def _ready(self, key: str) -> list[Endpoint]:
        run = self.runs.get(key)
        everyone = ([run] if run is not None else []) + self.instances.get(key, [])
        return [i.endpoint for i in everyone if i.endpoint is not None and not i.failed]

    def _sync_pool(self, key: str) -> None:
        if key in self.autoscalers:
            self.gateway.set_pool(key, self._ready(key))

    async def _autoscale(self) -> None:
        while True:
            await asyncio.sleep(autoscaler.TICK)
            for key in list(self.autoscalers):
                try:
                    await self._scale(key)
                except asyncio.CancelledError:
                    raise
                except Exception:  # one revision's trouble must not stop the others' scaling
                    log.exception("scaling %s", key)

    async def _scale(self, key: str) -> None:
        """One autoscaler tick for a scaled revision: measure, decide, start or stop instances."""
        run, scaler = self.runs.get(key), self.autoscalers.get(key)
        if run is None or scaler is None or run.failed:
            return
        namespace, name = key.split("/", 1)
        pool = self.gateway.pool(key)
        concurrency, rate = pool.sample() if pool is not None else (0.0, 0.0)
        before = (scaler.desired, len(self._ready(key)))
        observed = rate if scaler.policy.metric == "rps" else concurrency
        desired = scaler.decide(asyncio.get_running_loop().time(), observed)
        extras = self.instances.setdefault(key, [])
        for gone in [i for i in extras if i.pod_deleted]:  # deleted from outside: a new pod replaces it
            extras.remove(gone)
            await self._stop_instance(key, gone, delete_pod=False)
        revision = await self._get(self.rt["Revision"], name, namespace)
        if revision is None:
            return
        while len(extras) + 1 < desired:
            instance = RevisionRun(key=f"{key}#{secrets.token_hex(4)}", pod_name=pod_name_for(revision))
            extras.append(instance)
            instance.task = asyncio.create_task(self._run_instance(revision, instance, None))
            log.info("revision %s: scaling up to %d (pod %s)", key, desired, instance.pod_name)
        while len(extras) + 1 > desired:
            instance = extras.pop()
            log.info("revision %s: scaling down to %d (pod %s)", key, desired, instance.pod_name)
            self._sync_pool(key)
            # Drained and stopped aside, so that a slow request does not hold up the next decisions.
            retiring = asyncio.create_task(self._retire(key, pool, instance))
            self._respawns.add(retiring)
            retiring.add_done_callback(self._respawns.discard)
        if (scaler.desired, len(self._ready(key))) != before:
            self.queue.add(("Revision", namespace, name))

    async def _retire(self, key: str, pool: Any, instance: RevisionRun, limit: float = 30.0) -> None:
        # Out of the pool already: its requests in flight end (at most ``limit`` seconds), then it stops.
        waited = 0.0
        while pool is not None and instance.endpoint is not None and waited < limit:
            if pool.per_endpoint.get(instance.endpoint, 0) <= 0:
                break
            await asyncio.sleep(0.1)
            waited += 0.1
        await self._stop_instance(key, instance, delete_pod=True)

    async def _run_instance(self, revision: dict, instance: RevisionRun, pod: dict | None) -> None:
        """Start one instance of a scaled revision (a new pod, or ``pod`` restarted in place)."""
        namespace, name = self._ns_name(revision)
        key = f"{namespace}/{name}"
        pull_secrets = await self._pull_secrets(revision)
        if pod is None:
            pod = await self._create_pod(revision, instance)
        log_path = self.settings.log_path(namespace, instance.pod_name, USER_CONTAINER)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        delay = PULL_BACKOFF_INITIAL
        while True:
            try:
                endpoint = await self._start_pod(revision, instance, pod, pull_secrets, log_path)
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # kubelet keeps trying while the ReplicaSet wants the pod
                instance.waiting_reason = getattr(error, "reason", "") or "RunContainerError"
                instance.waiting_message = getattr(error, "message", "") or str(error)
                if pod is not None:
                    await self._update_pod_status(pod, instance)
                await asyncio.sleep(delay)
                delay = min(delay * 2, PULL_BACKOFF_MAX)
        instance.endpoint = instance.last_endpoint = endpoint
        instance.waiting_reason = instance.waiting_message = ""
        if pod is not None:
            await self._update_pod_status(pod, instance)
        self._sync_pool(key)
        self.queue.add(("Revision", namespace, name))
        self._enqueue_routes(namespace)

    async def _instance_exited(self, key: str, instance: RevisionRun, failure: Any) -> None:
        namespace, name = key.split("/", 1)
        instance.endpoint = None
        instance.last_exit_reason, instance.last_exit_message = failure.reason, failure.message
        instance.restarts += 1
        self._sync_pool(key)
        log.info("revision %s: pod %s exited (%s); restarting it", key, instance.pod_name, failure.reason)
        pod = await self._get(self.rt_pod, instance.pod_name, namespace)
        if pod is not None:
            await self._update_pod_status(pod, instance)
        revision = await self._get(self.rt["Revision"], name, namespace)
        self.queue.add(("Revision", namespace, name))
        if revision is None or pod is None:
            return
        instance.task = asyncio.create_task(self._run_instance(revision, instance, pod))

    async def _stop_instance(self, key: str, instance: RevisionRun, *, delete_pod: bool) -> None:
        if instance.task is not None and not instance.task.done():
            instance.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await instance.task
        with contextlib.suppress(Exception):
            await self.runtime.stop(instance.key)
        instance.endpoint = None
        self._sync_pool(key)
        if delete_pod:
            with contextlib.suppress(ApiStatusError):
                await self.api.delete(self.rt_pod, instance.pod_name, namespace=key.split("/", 1)[0])

    async def _stop_instances(self, key: str, *, delete_pods: bool) -> None:
        for instance in self.instances.pop(key, []):
            await self._stop_instance(key, instance, delete_pod=delete_pods)

    # --- the revision's Pod object -------------------------------------------------------------

    def _pod_labels(self, revision: dict) -> dict:
        meta = revision["metadata"]
        labels = meta.get("labels") or {}
        return {
            "app": meta["name"],
            CONFIGURATION_LABEL: labels.get(CONFIGURATION_LABEL, ""),
            CONFIGURATION_GENERATION_LABEL: labels.get(CONFIGURATION_GENERATION_LABEL, ""),
            CONFIGURATION_UID_LABEL: labels.get(CONFIGURATION_UID_LABEL, ""),
            REVISION_LABEL: meta["name"],
            REVISION_UID_LABEL: meta["uid"],
            SERVICE_LABEL: labels.get(SERVICE_LABEL, ""),
            SERVICE_UID_LABEL: labels.get(SERVICE_UID_LABEL, ""),
        }

    async def _mount_token(self, spec: dict, namespace: str, run: RevisionRun) -> dict | None:
        """Add the ServiceAccount token volume to ``spec`` when the pod gets one; the account, or None."""
        account = await self._get(self.rt_service_account, serviceaccounts.account_name(spec), namespace)
        if account is None or self.tokens is None or not serviceaccounts.automount(spec, account):
            return None
        run.token_volume = run.token_volume or serviceaccounts.new_volume_name()
        serviceaccounts.add_token_volume(spec, run.token_volume)
        return account

    async def _account_inputs(
        self, inputs: PodInputs, spec: dict, run: RevisionRun, *, pod: dict | None, account: dict | None
    ) -> None:
        """kubelet's part: the ``kubernetes`` Service's variables, and the token volume's files."""
        if self.api_endpoint is not None:
            literal = {e.get("name") for e in serving_container(spec).get("env") or []}
            for key, value in serviceaccounts.kubernetes_service_env(*self.api_endpoint).items():
                if key not in literal and key not in inputs.env:
                    inputs.env[key] = value
        if account is None or self.tokens is None or not run.token_volume:
            return
        namespace, meta = run.key.split("/", 1)[0], account["metadata"]
        pod_uid = ((pod or {}).get("metadata") or {}).get("uid", "")
        token = self.tokens.issue(namespace, meta["name"], meta["uid"], pod=(run.pod_name, pod_uid))
        directory = self.settings.run_dir / "volumes" / namespace / run.key.split("/", 1)[1] / run.token_volume
        ca_pem = (self.settings.pki_dir / "ca.crt").read_bytes()
        await asyncio.to_thread(serviceaccounts.write_token_files, directory, token, ca_pem, namespace)
        inputs.volume_sources[run.token_volume] = directory

    async def _create_pod(self, revision: dict, run: RevisionRun) -> dict | None:
        namespace = revision["metadata"]["namespace"]
        spec = runtime_pod_spec(revision)
        await self._mount_token(spec, namespace, run)
        container = serving_container(spec)
        container["name"] = USER_CONTAINER if not container.get("name") else container["name"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": run.pod_name,
                "namespace": namespace,
                "labels": self._pod_labels(revision),
                "annotations": {k: v for k, v in (revision["metadata"].get("annotations") or {}).items()},
                # A real pod is owned by the ReplicaSet; owning it by the Revision lets GC remove it.
                "ownerReferences": [owner_reference(revision)],
            },
            "spec": {**spec, "restartPolicy": "Always", "nodeName": "knlab-sandbox"},
        }
        try:
            created = await self.api.create(self.rt_pod, pod, namespace=namespace, user=CONTROLLER_USER)
        except ApiStatusError as error:
            log.warning("creating pod %s/%s: %s", namespace, run.pod_name, error.message)
            return None
        pending = copy.deepcopy(created)
        pending["status"] = {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": run.started_at}],
            "containerStatuses": [
                self._container_status(c, waiting=("ContainerCreating", "")) for c in spec["containers"]
            ],
            "hostIP": self.settings.api_host,
            "startTime": run.started_at,
            "qosClass": "BestEffort",
        }
        try:
            return await self.api.update(self.rt_pod, pending, subresource="status", user=CONTROLLER_USER)
        except ApiStatusError:
            return created

    async def _surviving_pod(self, revision: dict) -> dict | None:
        namespace, name = self._ns_name(revision)
        pods, _ = await self.api.list(self.rt_pod, namespace=namespace, label_selector=f"{REVISION_LABEL}={name}")
        owned = [p for p in pods if controlled_by(p, revision) and not p["metadata"].get("deletionTimestamp")]
        return owned[0] if owned else None

    async def _restart_pod(self, pod: dict, run: RevisionRun) -> dict | None:
        previous = (pod.get("status") or {}).get("containerStatuses") or [{}]
        run.restarts = int(previous[0].get("restartCount") or 0) + 1
        run.started_at = (pod.get("status") or {}).get("startTime") or run.started_at
        timestamp = now()
        # A pod whose containers are restarting is still Running, but not Ready until they are up again.
        containers = []
        for container in pod["spec"].get("containers") or []:
            restarted = self._container_status(container, waiting=("ContainerCreating", ""), restarts=run.restarts)
            restarted["lastState"] = {"terminated": {"exitCode": 255, "reason": "Unknown", "finishedAt": timestamp}}
            containers.append(restarted)
        restarting = copy.deepcopy(pod)
        restarting["status"] = {
            **(pod.get("status") or {}),
            "phase": "Running",
            "containerStatuses": containers,
            "conditions": [
                {"type": kind, "status": value, "lastTransitionTime": timestamp}
                for kind, value in (
                    ("Initialized", "True"),
                    ("Ready", "False"),
                    ("ContainersReady", "False"),
                    ("PodScheduled", "True"),
                )
            ],
        }
        try:
            return await self.api.update(self.rt_pod, restarting, subresource="status", user=CONTROLLER_USER)
        except ApiStatusError:
            return pod

    @staticmethod
    def _container_status(
        container: dict,
        *,
        waiting: tuple[str, str] | None = None,
        started: str = "",
        restarts: int = 0,
        image_id: str = "",
    ) -> dict:
        state: dict[str, Any]
        if waiting is not None:
            reason, message = waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        else:
            state = {"running": {"startedAt": started}}
        return {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": image_id,  # what kubelet pulled; "" until known (the hub is never pulled)
            "ready": waiting is None,
            "started": waiting is None,
            "restartCount": restarts,
            "state": state,
        }

    async def _update_pod_status(self, pod: dict, run: RevisionRun) -> None:
        namespace = pod["metadata"]["namespace"]
        current = await self._get(self.rt_pod, pod["metadata"]["name"], namespace)
        if current is None:
            return
        timestamp = now()
        containers = current["spec"].get("containers") or []
        status = copy.deepcopy(current.get("status") or {})
        previous = status.get("containerStatuses") or []
        if run.endpoint is not None:
            status["phase"] = "Running"
            status["podIP"] = run.endpoint.host
            status["podIPs"] = [{"ip": run.endpoint.host}]
            pulled = serving_container(current["spec"]).get("name")
            digest = self.runtime.image_digest(run.key)
            status["containerStatuses"] = [
                self._container_status(
                    c,
                    started=timestamp,
                    restarts=run.restarts,
                    image_id=digest_reference(str(c.get("image", "")), digest)
                    if digest and c.get("name") == pulled
                    else "",
                )
                for c in containers
            ]
            ready = "True"
        else:
            waiting = (run.failure_reason or "ContainerCreating", run.failure_message)
            if not run.failed and run.waiting_reason:
                waiting = (run.waiting_reason, run.waiting_message)
            if not run.failed and not run.waiting_reason and run.running_since:
                # Started, not listening: Running, and not ready (the queue-proxy's probe fails).
                status["phase"] = "Running"
                status["containerStatuses"] = [
                    {**self._container_status(c, started=run.running_since, restarts=run.restarts), "ready": False}
                    for c in containers
                ]
            else:
                status["containerStatuses"] = [
                    self._container_status(c, waiting=waiting, restarts=run.restarts) for c in containers
                ]
            ready = "False"
        last_states = {c.get("name"): c["lastState"] for c in previous if c.get("lastState")}
        if run.last_exit_reason.startswith("ExitCode") and run.last_exit_reason[8:].isdigit():
            # kubelet keeps how the app's container ended last: its exit code, reason Error.
            ended = {"exitCode": int(run.last_exit_reason[8:]), "reason": "Error", "finishedAt": timestamp}
            for container in containers:
                if container.get("name") == serving_container(current["spec"]).get("name"):
                    last_states[container.get("name")] = {"terminated": ended}
        for container_status in status["containerStatuses"]:
            if container_status["name"] in last_states:  # what the container ended with before a restart
                container_status["lastState"] = last_states[container_status["name"]]
        status["conditions"] = [
            {"type": kind, "status": value, "lastTransitionTime": timestamp}
            for kind, value in (
                ("Initialized", "True"),
                ("Ready", ready),
                ("ContainersReady", ready),
                ("PodScheduled", "True"),
            )
        ]
        current["status"] = status
        with contextlib.suppress(ApiStatusError):
            await self.api.update(self.rt_pod, current, subresource="status", user=CONTROLLER_USER)

    async def _delete_stale_pods(self, revision: dict, *, keep: str) -> None:
        # Pods left by an earlier sandbox process have no process behind them any more.
        namespace, name = self._ns_name(revision)
        pods, _ = await self.api.list(self.rt_pod, namespace=namespace, label_selector=f"{REVISION_LABEL}={name}")
        for pod in pods:
            if pod["metadata"]["name"] != keep:
                with contextlib.suppress(ApiStatusError):
                    await self.api.delete(self.rt_pod, pod["metadata"]["name"], namespace=namespace)

    # --- Route --------------------------------------------------------------------------------

    async def _reconcile_route(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        route = await self._get(self.rt["Route"], name, namespace)
        if route is None or route["metadata"].get("deletionTimestamp"):
            self.gateway.remove_route(self.route_hosts.pop(key, []))
            await self._label_configurations(namespace, name, set())
            return
        named = {t["configurationName"] for t in route["spec"].get("traffic") or [] if t.get("configurationName")}
        await self._label_configurations(namespace, name, named)
        status = copy.deepcopy(route.get("status") or {})
        conditions = Conditions(status, ROUTE_DEPENDENTS, now())
        conditions.initialize()
        status["observedGeneration"] = route["metadata"].get("generation")
        labels = route["metadata"].get("labels") or {}
        cluster_local = labels.get(VISIBILITY_LABEL) == VISIBILITY_CLUSTER_LOCAL
        domain_data = await read_configmap_data(self.api, "config-domain")
        network = {**NETWORK_DEFAULTS, **await read_configmap_data(self.api, "config-network")}
        domain = "svc.cluster.local" if cluster_local else select_domain(domain_data, labels)
        local_host = f"{name}.{namespace}.svc.cluster.local"
        external_host = (
            local_host
            if domain == "svc.cluster.local"
            else render_domain_template(network["domain-template"], name, namespace, domain)
        )
        status["url"] = f"http://{external_host}"
        status["address"] = {"url": f"http://{local_host}"}

        resolved = await self._resolve_traffic(route, conditions)
        if resolved is not None:
            conditions.mark_true("AllTrafficAssigned")
            for target in resolved:
                if target.get("tag"):
                    tag_name = network["tag-template"].replace("{{.Tag}}", target["tag"]).replace("{{.Name}}", name)
                    tag_host = render_domain_template(network["domain-template"], tag_name, namespace, domain)
                    target["url"] = f"http://{tag_host}"
            status["traffic"] = resolved
            await self._label_revisions(route, resolved)
            self._program_gateway(
                key, resolved, external_host=external_host, conditions=conditions, cluster_local=cluster_local
            )
        await self._write_status(self.rt["Route"], route, status)

    async def _resolve_traffic(self, route: dict, conditions: Conditions) -> list[dict] | None:
        """Spec traffic → status traffic with revision names, or None after marking why not."""
        namespace = route["metadata"]["namespace"]
        resolved = []
        for target in route["spec"].get("traffic") or []:
            entry = {k: target[k] for k in ("tag",) if target.get(k)}
            configuration_name = target.get("configurationName")
            if configuration_name:
                configuration = await self._get(self.rt["Configuration"], configuration_name, namespace)
                if configuration is None:
                    message = f'Configuration "{configuration_name}" referenced in traffic not found.'
                    conditions.mark_false("AllTrafficAssigned", "ConfigurationMissing", message)
                    return None
                latest_ready = (configuration.get("status") or {}).get("latestReadyRevisionName")
                if not latest_ready:
                    if is_failed(configuration):
                        message = f'Configuration "{configuration_name}" does not have any ready Revision.'
                        conditions.mark_false("AllTrafficAssigned", "RevisionMissing", message)
                    else:
                        message = f'Configuration "{configuration_name}" is waiting for a Revision to become ready.'
                        conditions.mark_unknown("AllTrafficAssigned", "RevisionMissing", message)
                    return None
                entry.update(revisionName=latest_ready, latestRevision=True)
            else:
                revision_name_ = target.get("revisionName", "")
                revision = await self._get(self.rt["Revision"], revision_name_, namespace)
                if revision is None:
                    message = f'Revision "{revision_name_}" referenced in traffic not found.'
                    conditions.mark_false("AllTrafficAssigned", "RevisionMissing", message)
                    return None
                if not is_ready(revision):
                    if is_failed(revision):
                        message = f'Revision "{revision_name_}" failed to become ready.'
                        conditions.mark_false("AllTrafficAssigned", "RevisionMissing", message)
                    else:
                        message = f'Revision "{revision_name_}" is not yet ready.'
                        conditions.mark_unknown("AllTrafficAssigned", "RevisionMissing", message)
                    return None
                entry.update(revisionName=revision_name_, latestRevision=False)
            entry["percent"] = target.get("percent", 0)
            resolved.append(entry)
        return resolved

    def _program_gateway(
        self, key: str, resolved: list[dict], *, external_host: str, conditions: Conditions, cluster_local: bool
    ) -> None:
        namespace, name = key.split("/", 1)
        # No load balancing: the revision with the largest share takes every request.
        shares: dict[str, int] = {}
        for target in resolved:
            shares[target["revisionName"]] = shares.get(target["revisionName"], 0) + int(target.get("percent") or 0)
        main_revision = max(shares, key=lambda r: shares[r]) if shares else ""
        plan: list[tuple[list[str], str]] = []
        main_hosts = route_hosts_cluster_local(name, namespace)
        if not cluster_local:
            main_hosts.append(external_host)
        plan.append((main_hosts, main_revision))
        for target in resolved:
            if target.get("tag"):
                tag_host = target["url"].removeprefix("http://")
                plan.append(([tag_host], target["revisionName"]))
        endpoints = [(hosts, self._endpoint(namespace, revision)) for hosts, revision in plan]
        if any(endpoint is None for _, endpoint in endpoints):
            conditions.mark_unknown("IngressReady", "IngressNotConfigured", "Ingress has not yet been reconciled.")
            return
        programmed = [host for hosts, _ in endpoints for host in hosts]
        stale = [host for host in self.route_hosts.get(key, []) if host not in programmed]
        if stale:
            self.gateway.remove_route(stale)
        for hosts, endpoint in endpoints:
            self.gateway.set_route(hosts, endpoint)
        self.route_hosts[key] = programmed
        conditions.mark_true("IngressReady")
        message = "TLS is not enabled for cluster-local" if cluster_local else "external-domain-tls is not enabled"
        conditions.mark_true("CertificateProvisioned", "TLSNotEnabled", message)

    def _endpoint(self, namespace: str, revision: str) -> Endpoint | None:
        key = f"{namespace}/{revision}"
        run = self.runs.get(key)
        if run is None:
            return None
        if run.endpoint is None and key in self.autoscalers and self._ready(key):
            return run.last_endpoint  # restarting: the gateway sends its requests to the others
        return run.endpoint

    async def _label_configurations(self, namespace: str, route_name: str, named: set[str]) -> None:
        """The labeler's ``serving.knative.dev/routes`` on Configurations: the Route is listed on those
        its traffic names (latest-revision targets) and taken off the others."""
        configurations, _ = await self.api.list(self.rt["Configuration"], namespace=namespace)
        for configuration in configurations:
            meta = configuration["metadata"]
            routes = _listed((meta.get("annotations") or {}).get(ROUTES_ANNOTATION))
            if meta["name"] in named:
                wanted = routes | {route_name}
            elif route_name in self._owner_names(configuration, "Service"):
                continue  # its Service lists its own Route (MakeConfigurationFromExisting)
            else:
                wanted = routes - {route_name}
            if wanted == routes or meta.get("deletionTimestamp"):
                continue
            updated = copy.deepcopy(configuration)
            annotations = updated["metadata"].setdefault("annotations", {})
            if wanted:
                annotations[ROUTES_ANNOTATION] = ",".join(sorted(wanted))
            else:
                annotations.pop(ROUTES_ANNOTATION, None)
            with contextlib.suppress(ApiStatusError):  # a lost race: the next reconcile tries again
                await self.api.update(self.rt["Configuration"], updated, user=CONTROLLER_USER)

    async def _label_revisions(self, route: dict, resolved: list[dict]) -> None:
        """routingState active for routed revisions, reserve for those that lost their traffic."""
        namespace, name = self._ns_name(route)
        routed = {t["revisionName"] for t in resolved}
        configurations = {
            t["configurationName"] for t in route["spec"].get("traffic") or [] if t.get("configurationName")
        }
        candidates: dict[str, dict] = {}
        for configuration in configurations:
            revisions, _ = await self.api.list(
                self.rt["Revision"], namespace=namespace, label_selector=f"{CONFIGURATION_LABEL}={configuration}"
            )
            candidates.update({r["metadata"]["name"]: r for r in revisions})
        for revision_name_ in routed - set(candidates):
            revision = await self._get(self.rt["Revision"], revision_name_, namespace)
            if revision is not None:
                candidates[revision_name_] = revision
        for revision in candidates.values():
            meta = revision["metadata"]
            labels = meta.get("labels") or {}
            annotations = meta.get("annotations") or {}
            state = labels.get(ROUTING_STATE_LABEL, "pending")
            routes = {r for r in annotations.get(ROUTES_ANNOTATION, "").split(",") if r}
            if meta["name"] in routed:
                new_state, new_routes = "active", routes | {name}
            else:
                new_state = "reserve" if state == "active" and routes <= {name} else state
                new_routes = routes - {name}
            if new_state == state and new_routes == routes:
                continue
            updated = copy.deepcopy(revision)
            updated["metadata"].setdefault("labels", {})[ROUTING_STATE_LABEL] = new_state
            updated_annotations = updated["metadata"].setdefault("annotations", {})
            if new_routes:
                updated_annotations[ROUTES_ANNOTATION] = ",".join(sorted(new_routes))
            else:
                updated_annotations.pop(ROUTES_ANNOTATION, None)
            if new_state != state:
                updated_annotations[ROUTING_STATE_MODIFIED_ANNOTATION] = now()
            await self.api.update(self.rt["Revision"], updated, user=CONTROLLER_USER)
