"""The resource types the sandbox serves: discovery data, printer columns and OpenAPI schemas.

One `ResourceType` per resource. The schemas are OpenAPI v3 fragments with the Kubernetes
extensions (`x-kubernetes-patch-merge-key`, `x-kubernetes-list-map-keys`, …) that strategic merge
patch and server-side apply read; `x-kubernetes-preserve-unknown-fields` marks free-form parts
(statuses, probes, affinity) that are kept as sent.

They also say which fields survive a Go round trip with their zero value (see `keeps_zero`): the
API server decodes built-in kinds into Go structs, and the Knative and Tekton webhooks round-trip
theirs, so an `omitempty` field holding "", 0, false, [] or {} comes back absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Column:
    """A `Table` column. `json_path` (CRD style) or `value` (a function of the object) gives the cell."""

    name: str
    type: str
    json_path: str = ""
    priority: int = 0
    description: str = ""
    format: str = ""
    value: Callable[[dict], Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    printer_columns: tuple[Column, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    schema: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def kind_key(self) -> str:
        """The admission registry key, e.g. `serving.knative.dev/v1/Service` or `v1/ConfigMap`."""
        return f"{self.api_version}/{self.kind}"

    @property
    def storage_key(self) -> str:
        """Where objects live in the store: one version per group, so group + plural is enough."""
        return f"{self.group}/{self.plural}"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def is_custom(self) -> bool:
        """True for the CRD-backed kinds: no strategic merge patch, CRD-style tables."""
        return self.group not in BUILTIN_GROUPS

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


# --- schema building blocks -------------------------------------------------------------------

STR: dict = {"type": "string"}
INT: dict = {"type": "integer", "format": "int64"}
INT32: dict = {"type": "integer", "format": "int32"}
BOOL: dict = {"type": "boolean"}
NUM: dict = {"type": "number"}
ANY: dict = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
ANY_VALUE: dict = {"x-kubernetes-preserve-unknown-fields": True}
INT_OR_STRING: dict = {"x-kubernetes-int-or-string": True}
QUANTITY = INT_OR_STRING
TIME: dict = {"type": "string", "format": "date-time"}


# Go's encoding/json drops an `omitempty` field holding its zero value. Fields that keep it: those
# without `omitempty` (in the parent's `required`, as in Kubernetes' own OpenAPI, or marked with
# `zero_kept` where the schema does not require them) and pointers (`*bool`, `*int64`, `*string`:
# nil is absent, a pointer to a zero value is sent). Structs are never dropped (an empty one is `{}`).
KEEPS_ZERO = "x-knlab-keeps-zero"


def zero_kept(schema: dict) -> dict:
    """`schema` for a Go pointer or a field without `omitempty`: its zero value is kept."""
    return {**schema, KEEPS_ZERO: True}


def public_schema(schema: Any) -> Any:
    """The schema as served (OpenAPI): without the sandbox's private Go markers."""
    if isinstance(schema, dict):
        return {k: public_schema(v) for k, v in schema.items() if k != KEEPS_ZERO}
    if isinstance(schema, list):
        return [public_schema(v) for v in schema]
    return schema


def obj(properties: dict, required: tuple[str, ...] = ()) -> dict:
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def str_map(values: dict | None = None) -> dict:
    return {"type": "object", "additionalProperties": values or STR}


def arr(items: dict, key: str | tuple[str, ...] | None = None, *, set_of_scalars: bool = False) -> dict:
    """A list; `key` makes it a keyed list (strategic merge by that key, SSA list-type map)."""
    schema: dict = {"type": "array", "items": items}
    if key:
        keys = (key,) if isinstance(key, str) else key
        schema["x-kubernetes-patch-merge-key"] = keys[0]
        schema["x-kubernetes-patch-strategy"] = "merge"
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = list(keys)
    elif set_of_scalars:
        schema["x-kubernetes-patch-strategy"] = "merge"
        schema["x-kubernetes-list-type"] = "set"
    else:
        schema["x-kubernetes-list-type"] = "atomic"
    return schema


OWNER_REFERENCE = obj(
    {
        "apiVersion": STR,
        "kind": STR,
        "name": STR,
        "uid": STR,
        "controller": zero_kept(BOOL),
        "blockOwnerDeletion": zero_kept(BOOL),
    },
    ("apiVersion", "kind", "name", "uid"),
)

OBJECT_META = obj(
    {
        "name": STR,
        "generateName": STR,
        "namespace": STR,
        "selfLink": STR,
        "uid": STR,
        "resourceVersion": STR,
        "generation": INT,
        "creationTimestamp": TIME,
        "deletionTimestamp": TIME,
        "deletionGracePeriodSeconds": zero_kept(INT),
        "labels": str_map(),
        "annotations": str_map(),
        "ownerReferences": arr(OWNER_REFERENCE, "uid"),
        "finalizers": arr(STR),
        "managedFields": arr(ANY),
    }
)

# Only the fields a template may carry (Knative's revision template metadata).
TEMPLATE_META = obj(
    {
        "name": STR,
        "generateName": STR,
        "namespace": STR,
        "labels": str_map(),
        "annotations": str_map(),
        "creationTimestamp": {"type": "string", "format": "date-time", "nullable": True},
    }
)

LOCAL_OBJECT_REFERENCE = obj({"name": STR})

ENV_VAR = obj({"name": STR, "value": STR, "valueFrom": ANY}, ("name",))
CONTAINER_PORT = obj(
    {"name": STR, "containerPort": INT32, "protocol": STR, "hostPort": INT32, "hostIP": STR}, ("containerPort",)
)
VOLUME_MOUNT = obj(
    {
        "name": STR,
        "mountPath": STR,
        "readOnly": BOOL,
        "subPath": STR,
        "subPathExpr": STR,
        "mountPropagation": zero_kept(STR),
        "recursiveReadOnly": zero_kept(STR),
    },
    ("name", "mountPath"),
)
RESOURCES = obj({"limits": str_map(QUANTITY), "requests": str_map(QUANTITY), "claims": arr(ANY)})

CONTAINER_FIELDS: dict = {
    "name": STR,
    "image": STR,
    "command": arr(STR),
    "args": arr(STR),
    "workingDir": STR,
    "ports": arr(CONTAINER_PORT, ("containerPort", "protocol")),
    "env": arr(ENV_VAR, "name"),
    "envFrom": arr(ANY),
    "resources": RESOURCES,
    "resizePolicy": arr(ANY),
    "restartPolicy": zero_kept(STR),
    "volumeMounts": arr(VOLUME_MOUNT, "mountPath"),
    "volumeDevices": arr(ANY),
    "livenessProbe": ANY,
    "readinessProbe": ANY,
    "startupProbe": ANY,
    "lifecycle": ANY,
    "terminationMessagePath": STR,
    "terminationMessagePolicy": STR,
    "imagePullPolicy": STR,
    "securityContext": ANY,
    "stdin": BOOL,
    "stdinOnce": BOOL,
    "tty": BOOL,
}
CONTAINER = obj(CONTAINER_FIELDS, ("name",))

VOLUME = obj(
    {
        "name": STR,
        "configMap": ANY,
        "secret": ANY,
        "emptyDir": ANY,
        "persistentVolumeClaim": obj({"claimName": STR, "readOnly": BOOL}, ("claimName",)),
        "projected": ANY,
        "hostPath": ANY,
        "csi": ANY,
        "downwardAPI": ANY,
        "ephemeral": ANY,
        "image": ANY,
        "nfs": ANY,
    },
    ("name",),
)

POD_SPEC_FIELDS: dict = {
    "containers": zero_kept(arr(CONTAINER, "name")),
    "initContainers": arr(CONTAINER, "name"),
    "ephemeralContainers": arr(ANY, "name"),
    "volumes": arr(VOLUME, "name"),
    "restartPolicy": STR,
    "terminationGracePeriodSeconds": zero_kept(INT),
    "activeDeadlineSeconds": zero_kept(INT),
    "dnsPolicy": STR,
    "dnsConfig": ANY,
    "nodeSelector": str_map(),
    "serviceAccountName": STR,
    "serviceAccount": STR,
    "automountServiceAccountToken": zero_kept(BOOL),
    "nodeName": STR,
    "hostNetwork": BOOL,
    "hostPID": BOOL,
    "hostIPC": BOOL,
    "hostUsers": zero_kept(BOOL),
    "shareProcessNamespace": zero_kept(BOOL),
    "securityContext": ANY,
    "imagePullSecrets": arr(LOCAL_OBJECT_REFERENCE, "name"),
    "hostname": STR,
    "subdomain": STR,
    "setHostnameAsFQDN": zero_kept(BOOL),
    "affinity": ANY,
    "schedulerName": STR,
    "tolerations": arr(ANY),
    "hostAliases": arr(ANY, "ip"),
    "priorityClassName": STR,
    "priority": zero_kept(INT32),
    "preemptionPolicy": zero_kept(STR),
    "readinessGates": arr(ANY),
    "runtimeClassName": zero_kept(STR),
    "enableServiceLinks": zero_kept(BOOL),
    "overhead": str_map(QUANTITY),
    "topologySpreadConstraints": arr(ANY),
    "os": ANY,
    "schedulingGates": arr(ANY, "name"),
    "resourceClaims": arr(ANY, "name"),
    "resources": RESOURCES,
}
POD_SPEC = obj(POD_SPEC_FIELDS, ("containers",))


def _resource(kind: str, spec: dict | None = None, *, extra: dict | None = None, status: bool = True) -> dict:
    properties: dict = {"apiVersion": STR, "kind": STR, "metadata": OBJECT_META}
    if spec is not None:
        properties["spec"] = spec
    if status:
        properties["status"] = ANY
    properties.update(extra or {})
    return obj(properties)


# Knative Serving (serving.knative.dev/v1)
REVISION_SPEC = obj(
    {
        **POD_SPEC_FIELDS,
        "containerConcurrency": zero_kept(INT),
        "timeoutSeconds": zero_kept(INT),
        "responseStartTimeoutSeconds": zero_kept(INT),
        "idleTimeoutSeconds": zero_kept(INT),
    }
)
REVISION_TEMPLATE = obj({"metadata": TEMPLATE_META, "spec": REVISION_SPEC})
TRAFFIC_TARGET = obj(
    {
        "tag": STR,
        "revisionName": STR,
        "configurationName": STR,
        "latestRevision": zero_kept(BOOL),
        "percent": zero_kept(INT),
        "url": zero_kept(STR),
    }
)
TRAFFIC = arr(TRAFFIC_TARGET)

# Tekton (tekton.dev/v1)
PARAM_SPEC = obj(
    {
        "name": STR,
        "type": STR,
        "description": STR,
        "properties": ANY,
        "default": ANY_VALUE,
        "enum": arr(STR),
    },
    ("name",),
)
STEP_FIELDS = {
    **{k: v for k, v in CONTAINER_FIELDS.items() if k not in ("ports", "resources", "lifecycle", "livenessProbe")},
    "name": zero_kept(STR),  # Step.Name has no omitempty
    "displayName": STR,
    "script": STR,
    "timeout": zero_kept(STR),
    "onError": STR,
    "computeResources": RESOURCES,
    "workspaces": arr(ANY),
    "stdoutConfig": obj({"path": STR}),
    "stderrConfig": obj({"path": STR}),
    "ref": ANY,
    "params": arr(ANY),
    "results": arr(ANY),
    "when": arr(ANY),
}
TASK_SPEC = obj(
    {
        "displayName": STR,
        "description": STR,
        "params": arr(PARAM_SPEC, "name"),
        "steps": arr(obj(STEP_FIELDS), "name"),
        "volumes": arr(VOLUME, "name"),
        "stepTemplate": ANY,
        "sidecars": arr(ANY),
        "workspaces": arr(
            obj(
                {"name": STR, "description": STR, "mountPath": STR, "readOnly": BOOL, "optional": BOOL},
                ("name",),
            ),
            "name",
        ),
        "results": arr(
            obj({"name": STR, "type": STR, "properties": ANY, "description": STR, "value": ANY_VALUE}, ("name",)),
            "name",
        ),
    }
)
WORKSPACE_BINDING = obj(
    {
        "name": STR,
        "subPath": STR,
        "emptyDir": ANY,
        "persistentVolumeClaim": ANY,
        "volumeClaimTemplate": ANY,
        "configMap": ANY,
        "secret": ANY,
        "projected": ANY,
        "csi": ANY,
    },
    ("name",),
)
TASKRUN_SPEC = obj(
    {
        "taskRef": obj(
            {"name": STR, "kind": STR, "apiVersion": STR, "resolver": STR, "params": arr(ANY), "bundle": STR}
        ),
        "taskSpec": TASK_SPEC,
        "params": arr(obj({"name": STR, "value": ANY_VALUE}, ("name", "value")), "name"),
        "workspaces": arr(WORKSPACE_BINDING, "name"),
        "serviceAccountName": zero_kept(STR),  # TaskRunSpec.ServiceAccountName has no omitempty
        "timeout": zero_kept(STR),
        "podTemplate": ANY,
        "status": STR,
        "statusMessage": STR,
        "retries": INT,
        "debug": ANY,
        "stepSpecs": arr(ANY),
        "sidecarSpecs": arr(ANY),
        "computeResources": RESOURCES,
        "managedBy": zero_kept(STR),
    }
)


# --- printer columns ----------------------------------------------------------------------------


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    """The short age kubectl shows (`5s`, `3m2s`, `4h`, `12d`), as the API server renders it."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _age(o: dict) -> str:
    return human_age(o.get("metadata", {}).get("creationTimestamp"))


AGE = Column("Age", "string", value=_age, description="CreationTimestamp of the object, as a duration")


def _pod_ready(o: dict) -> str:
    containers = o.get("spec", {}).get("containers") or []
    statuses = o.get("status", {}).get("containerStatuses") or []
    return f"{sum(1 for s in statuses if s.get('ready'))}/{len(containers)}"


def _pod_status(o: dict) -> str:
    """kubectl's STATUS column, computed the way its pod printer does (printers/internalversion)."""
    status = o.get("status", {})
    reason = status.get("reason") or status.get("phase") or "Pending"
    running = False
    # Containers are read last to first, each overriding the one after it, as kubectl does.
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated is not None:
            signal = terminated.get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
        elif cs.get("ready") and state.get("running") is not None:
            running = True
    if reason == "Completed" and running:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        reason = "Running" if ready else "NotReady"
    if o.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    return reason


def _pod_restarts(o: dict) -> int:
    return sum(int(cs.get("restartCount", 0)) for cs in o.get("status", {}).get("containerStatuses") or [])


def _service_ports(o: dict) -> str:
    parts = []
    for p in o.get("spec", {}).get("ports") or []:
        node_port = f":{p['nodePort']}" if p.get("nodePort") else ""
        parts.append(f"{p.get('port')}{node_port}/{p.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _service_external(o: dict) -> str:
    spec = o.get("spec", {})
    if spec.get("type") == "ExternalName":
        return spec.get("externalName") or "<none>"
    ips = list(spec.get("externalIPs") or [])
    ips += [
        i.get("ip") or i.get("hostname") for i in (o.get("status", {}).get("loadBalancer", {}).get("ingress") or [])
    ]
    if ips:
        return ",".join(i for i in ips if i)
    return "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"


_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def _pvc_modes(o: dict) -> str:
    modes = o.get("status", {}).get("accessModes") or o.get("spec", {}).get("accessModes") or []
    return ",".join(_ACCESS_MODES.get(m, m) for m in modes)


def _event_object(o: dict) -> str:
    ref = o.get("involvedObject") or {}
    return f"{(ref.get('kind') or '').lower()}/{ref.get('name', '')}"


def _event_last_seen(o: dict) -> str:
    stamp = o.get("lastTimestamp") or o.get("eventTime") or o.get("metadata", {}).get("creationTimestamp")
    if stamp and "." in stamp:  # eventTime is a MicroTime
        stamp = stamp.split(".")[0] + "Z"
    return human_age(stamp)


def ready_columns() -> tuple[Column, ...]:
    return (
        Column("Ready", "string", ".status.conditions[?(@.type=='Ready')].status"),
        Column("Reason", "string", ".status.conditions[?(@.type=='Ready')].reason"),
    )


# RBAC (rbac.authorization.k8s.io/v1): built in, so not custom (strategic merge patch, server tables).
_RULES = arr(
    obj(
        {
            "verbs": zero_kept(arr(STR)),
            "apiGroups": arr(STR),
            "resources": arr(STR),
            "resourceNames": arr(STR),
            "nonResourceURLs": arr(STR),
        },
        ("verbs",),
    )
)
_BINDING_FIELDS = {
    "subjects": arr(obj({"kind": STR, "apiGroup": STR, "name": STR, "namespace": STR}, ("kind", "name"))),
    "roleRef": obj({"apiGroup": STR, "kind": STR, "name": STR}, ("apiGroup", "kind", "name")),
}
_CREATED_AT = Column("Created At", "date", ".metadata.creationTimestamp")


def _subjects(kind: str) -> Callable[[dict], str]:
    def names(o: dict) -> str:
        found = [
            (f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount" else str(s.get("name", "")))
            for s in o.get("subjects") or []
            if s.get("kind") == kind
        ]
        return ", ".join(found)

    return names


_BINDING_COLUMNS = (
    Column(
        "Role",
        "string",
        value=lambda o: f"{(o.get('roleRef') or {}).get('kind')}/{(o.get('roleRef') or {}).get('name')}",
    ),
    AGE,
    Column("Users", "string", priority=1, value=_subjects("User")),
    Column("Groups", "string", priority=1, value=_subjects("Group")),
    Column("ServiceAccounts", "string", priority=1, value=_subjects("ServiceAccount")),
)
BUILTIN_GROUPS = frozenset({"", "rbac.authorization.k8s.io", "authorization.k8s.io"})

# --- the table ----------------------------------------------------------------------------------

_KNATIVE_CATEGORIES = ("all", "knative", "serving")
_TEKTON_CATEGORIES = ("tekton", "tekton-pipelines")
_STATUS = ("status",)

ALL: tuple[ResourceType, ...] = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        False,
        ("ns",),
        (),
        _STATUS,
        (Column("Status", "string", ".status.phase"), AGE),
        ("create", "delete", "get", "list", "patch", "update", "watch"),
        _resource("Namespace", obj({"finalizers": arr(STR)})),
    ),
    ResourceType(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        True,
        ("cm",),
        (),
        (),
        (Column("Data", "integer", value=lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})), AGE),
        schema=_resource(
            "ConfigMap",
            status=False,
            extra={
                "data": str_map(),
                "binaryData": str_map({"type": "string", "format": "byte"}),
                "immutable": zero_kept(BOOL),
            },
        ),
    ),
    ResourceType(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        True,
        (),
        (),
        (),
        (
            Column("Type", "string", ".type"),
            Column("Data", "integer", value=lambda o: len(o.get("data") or {})),
            AGE,
        ),
        schema=_resource(
            "Secret",
            status=False,
            extra={
                "data": str_map({"type": "string", "format": "byte"}),
                "stringData": str_map(),
                "type": STR,
                "immutable": zero_kept(BOOL),
            },
        ),
    ),
    ResourceType(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        True,
        ("sa",),
        (),
        (),
        (Column("Secrets", "integer", value=lambda o: len(o.get("secrets") or [])), AGE),
        schema=_resource(
            "ServiceAccount",
            status=False,
            extra={
                "secrets": arr(ANY, "name"),
                "imagePullSecrets": arr(LOCAL_OBJECT_REFERENCE),
                "automountServiceAccountToken": zero_kept(BOOL),
            },
        ),
    ),
    ResourceType(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        True,
        ("po",),
        ("all",),
        ("status", "log"),
        (
            Column("Ready", "string", value=_pod_ready),
            Column("Status", "string", value=_pod_status),
            Column("Restarts", "string", value=_pod_restarts),
            AGE,
        ),
        schema=_resource("Pod", POD_SPEC),
    ),
    ResourceType(
        "",
        "v1",
        "services",
        "service",
        "Service",
        True,
        ("svc",),
        ("all",),
        _STATUS,
        (
            Column("Type", "string", ".spec.type"),
            Column("Cluster-IP", "string", ".spec.clusterIP"),
            Column("External-IP", "string", value=_service_external),
            Column("Port(s)", "string", value=_service_ports),
            AGE,
        ),
        schema=_resource(
            "Service",
            obj(
                {
                    "ports": arr(
                        obj(
                            {
                                "name": STR,
                                "protocol": STR,
                                "appProtocol": zero_kept(STR),
                                "port": INT32,
                                "targetPort": INT_OR_STRING,
                                "nodePort": INT32,
                            },
                            ("port",),
                        ),
                        ("port", "protocol"),
                    ),
                    "selector": str_map(),
                    "type": STR,
                    "clusterIP": STR,
                    "clusterIPs": arr(STR),
                    "externalIPs": arr(STR),
                    "externalName": STR,
                    "sessionAffinity": STR,
                    "sessionAffinityConfig": ANY,
                    "loadBalancerIP": STR,
                    "loadBalancerClass": zero_kept(STR),
                    "loadBalancerSourceRanges": arr(STR),
                    "externalTrafficPolicy": STR,
                    "internalTrafficPolicy": zero_kept(STR),
                    "healthCheckNodePort": INT32,
                    "publishNotReadyAddresses": BOOL,
                    "ipFamilies": arr(STR),
                    "ipFamilyPolicy": zero_kept(STR),
                    "allocateLoadBalancerNodePorts": zero_kept(BOOL),
                    "trafficDistribution": zero_kept(STR),
                }
            ),
        ),
    ),
    ResourceType(
        "",
        "v1",
        "events",
        "event",
        "Event",
        True,
        ("ev",),
        (),
        (),
        (
            Column("Last Seen", "string", value=_event_last_seen),
            Column("Type", "string", ".type"),
            Column("Reason", "string", ".reason"),
            Column("Object", "string", value=_event_object),
            Column("Message", "string", ".message"),
        ),
        schema=_resource(
            "Event",
            status=False,
            extra={
                "involvedObject": ANY,
                "reason": STR,
                "message": STR,
                "source": ANY,
                "firstTimestamp": TIME,
                "lastTimestamp": TIME,
                "eventTime": STR,
                "count": INT32,
                "type": STR,
                "series": ANY,
                "action": STR,
                "related": ANY,
                "reportingComponent": zero_kept(STR),
                "reportingInstance": zero_kept(STR),
            },
        ),
    ),
    ResourceType(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        True,
        ("pvc",),
        (),
        _STATUS,
        (
            Column("Status", "string", ".status.phase"),
            Column("Volume", "string", ".spec.volumeName"),
            Column("Capacity", "string", ".status.capacity.storage"),
            Column("Access Modes", "string", value=_pvc_modes),
            Column("StorageClass", "string", ".spec.storageClassName"),
            Column("VolumeAttributesClass", "string", ".spec.volumeAttributesClassName"),
            AGE,
        ),
        schema=_resource(
            "PersistentVolumeClaim",
            obj(
                {
                    "accessModes": arr(STR),
                    "selector": ANY,
                    "resources": RESOURCES,
                    "volumeName": STR,
                    "storageClassName": zero_kept(STR),
                    "volumeMode": zero_kept(STR),
                    "dataSource": ANY,
                    "dataSourceRef": ANY,
                    "volumeAttributesClassName": zero_kept(STR),
                }
            ),
        ),
    ),
    ResourceType(
        "serving.knative.dev",
        "v1",
        "services",
        "service",
        "Service",
        True,
        ("kservice", "ksvc"),
        _KNATIVE_CATEGORIES,
        _STATUS,
        (
            Column("URL", "string", ".status.url"),
            Column("LatestCreated", "string", ".status.latestCreatedRevisionName"),
            Column("LatestReady", "string", ".status.latestReadyRevisionName"),
            *ready_columns(),
        ),
        schema=_resource("Service", obj({"template": REVISION_TEMPLATE, "traffic": TRAFFIC})),
    ),
    ResourceType(
        "serving.knative.dev",
        "v1",
        "configurations",
        "configuration",
        "Configuration",
        True,
        ("config", "cfg"),
        _KNATIVE_CATEGORIES,
        _STATUS,
        (
            Column("LatestCreated", "string", ".status.latestCreatedRevisionName"),
            Column("LatestReady", "string", ".status.latestReadyRevisionName"),
            *ready_columns(),
        ),
        schema=_resource("Configuration", obj({"template": REVISION_TEMPLATE})),
    ),
    ResourceType(
        "serving.knative.dev",
        "v1",
        "revisions",
        "revision",
        "Revision",
        True,
        ("rev",),
        _KNATIVE_CATEGORIES,
        _STATUS,
        (
            Column("Config Name", "string", ".metadata.labels['serving\\.knative\\.dev/configuration']"),
            Column("Generation", "string", ".metadata.labels['serving\\.knative\\.dev/configurationGeneration']"),
            *ready_columns(),
            Column("Actual Replicas", "integer", ".status.actualReplicas"),
            Column("Desired Replicas", "integer", ".status.desiredReplicas"),
        ),
        schema=_resource("Revision", REVISION_SPEC),
    ),
    ResourceType(
        "serving.knative.dev",
        "v1",
        "routes",
        "route",
        "Route",
        True,
        ("rt",),
        _KNATIVE_CATEGORIES,
        _STATUS,
        (Column("URL", "string", ".status.url"), *ready_columns()),
        schema=_resource("Route", obj({"traffic": TRAFFIC})),
    ),
    ResourceType(
        "tekton.dev",
        "v1",
        "tasks",
        "task",
        "Task",
        True,
        (),
        _TEKTON_CATEGORIES,
        (),
        (),
        schema=_resource("Task", TASK_SPEC, status=False),
    ),
    ResourceType(
        "tekton.dev",
        "v1",
        "taskruns",
        "taskrun",
        "TaskRun",
        True,
        ("tr", "trs"),
        _TEKTON_CATEGORIES,
        _STATUS,
        (
            Column("Succeeded", "string", '.status.conditions[?(@.type=="Succeeded")].status'),
            Column("Reason", "string", '.status.conditions[?(@.type=="Succeeded")].reason'),
            Column("StartTime", "date", ".status.startTime"),
            Column("CompletionTime", "date", ".status.completionTime"),
        ),
        schema=_resource("TaskRun", TASKRUN_SPEC),
    ),
    # Answered by api.py (rbac.access_review), never stored: `kubectl auth can-i`.
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        False,
        verbs=("create",),
        schema=_resource("SelfSubjectAccessReview", ANY),
    ),
    *(
        ResourceType(
            "rbac.authorization.k8s.io",
            "v1",
            plural,
            plural[:-1],
            kind,
            namespaced,
            (),
            (),
            (),
            columns,
            schema=_resource(kind, status=False, extra=extra),
        )
        for plural, kind, namespaced, columns, extra in (
            ("roles", "Role", True, (_CREATED_AT,), {"rules": _RULES}),
            ("clusterroles", "ClusterRole", False, (_CREATED_AT,), {"rules": _RULES, "aggregationRule": ANY}),
            ("rolebindings", "RoleBinding", True, _BINDING_COLUMNS, _BINDING_FIELDS),
            ("clusterrolebindings", "ClusterRoleBinding", False, _BINDING_COLUMNS, _BINDING_FIELDS),
        )
    ),
)

_BY_KIND = {(rt.api_version, rt.kind): rt for rt in ALL}
_BY_PLURAL = {(rt.group, rt.version, rt.plural): rt for rt in ALL}


def lookup(api_version: str, kind: str) -> ResourceType:
    """The type for an object's apiVersion/kind; KeyError if the sandbox does not serve it."""
    return _BY_KIND[(api_version, kind)]


def by_plural(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PLURAL.get((group, version, plural))


def groups() -> dict[str, list[str]]:
    """Group name → served versions (the core group is "")."""
    result: dict[str, list[str]] = {}
    for rt in ALL:
        versions = result.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)
    return result


# --- JSONPath for printer columns and field selectors ------------------------------------------

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_$-]+)"""
    r"""|\[\?\(@\.(?P<ffield>[A-Za-z0-9_]+)\s*==\s*(?P<q>['"])(?P<fvalue>.*?)(?P=q)\)\]"""
    r"""|\[(?P<kq>['"])(?P<key>(?:\\.|[^'"])*)(?P=kq)\]"""
    r"""|\[(?P<index>-?\d+)\]"""
)


def json_path(obj: Any, path: str) -> Any:
    """Evaluate the small JSONPath subset CRD printer columns use; None when nothing matches."""
    current: list[Any] = [obj]
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if not match:
            raise ValueError(f"unsupported JSONPath {path!r} at {pos}")
        pos = match.end()
        step: list[Any] = []
        for value in current:
            if match["field"] is not None and isinstance(value, dict) and match["field"] in value:
                step.append(value[match["field"]])
            elif match["key"] is not None and isinstance(value, dict):
                key = re.sub(r"\\(.)", r"\1", match["key"])
                if key in value:
                    step.append(value[key])
            elif match["index"] is not None and isinstance(value, list):
                index = int(match["index"])
                if -len(value) <= index < len(value):
                    step.append(value[index])
            elif match["ffield"] is not None and isinstance(value, list):
                step.extend(
                    item
                    for item in value
                    if isinstance(item, dict) and str(item.get(match["ffield"])) == match["fvalue"]
                )
        current = step
    return current[0] if current else None


def cell(rt: ResourceType, obj: dict, column: Column) -> Any:
    """The value of one printer column for one object, as the API server's Table puts it."""
    if column.value is not None:
        return column.value(obj)
    value = json_path(obj, column.json_path)
    if column.type == "date" and isinstance(value, str):
        return human_age(value)
    if value is None and column.type not in ("integer", "number"):
        # Built-in printers spell a missing value "<none>"; CRD columns leave it empty.
        return "" if rt.is_custom else "<none>"
    return value
