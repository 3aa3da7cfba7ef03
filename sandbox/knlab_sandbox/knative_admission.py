"""Knative Serving's admission webhooks, simulated: defaulting and validation.

The real defaulting webhook (``webhook.serving.knative.dev``) and validation webhook
(``validation.webhook.serving.knative.dev``) run from ``pkg/apis/serving/v1/*_{defaults,validation}.go``
with the ``knative-serving`` ConfigMaps loaded into their context. This module does the same work on
plain dicts, so that what a client reads back (and the errors it gets) look like a real cluster's:
FACTS §1.3 (spec rules), §1.4 (autoscaling annotations), §1.5 (defaults) and §1.11 (volume flags).

Everything here is a pure function of (object, old object, operation, user, ``KnativeConfig``); the
small hooks at the end read the ConfigMaps through the ``ResourceAPI`` at admission time and plug
into ``admission.register``. Error messages are rendered the way knative.dev/pkg ``FieldError``
renders them (messages merged by text, sorted, ``<message>: <paths>`` with optional details).
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import admission, kinds, resources
from .errors import bad_request
from .quantity import canonical_quantity, canonicalize_pod_spec, pod_spec_quantities, quantity_error

if TYPE_CHECKING:
    from .admission import AdmissionContext
    from .resources import ResourceAPI

GROUP = "serving.knative.dev"
API_VERSION = f"{GROUP}/v1"
SYSTEM_NAMESPACE = "knative-serving"
CREATOR_ANNOTATION = f"{GROUP}/creator"
LAST_MODIFIER_ANNOTATION = f"{GROUP}/lastModifier"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
VISIBILITY_CLUSTER_LOCAL = "cluster-local"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
AUTOSCALING_GROUP = "autoscaling.knative.dev"
KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"

VALIDATION_WEBHOOK = "validation.webhook.serving.knative.dev"
DEFAULTING_WEBHOOK = "webhook.serving.knative.dev"

RESERVED_ENV_VARS = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
RESERVED_CONTAINER_NAMES = frozenset({"queue-proxy"})
RESERVED_MOUNT_PATHS = frozenset({"/", "/dev", "/dev/log"})
# queue-proxy (8012 http, 8013 h2c, 8022 admin, 9090/9091 metrics) and the profiling port 8008
RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091, 8008})
VALID_PORT_NAMES = frozenset({"", "http1", "h2c"})
MAX_INT32 = 2**31 - 1

# ---------------------------------------------------------------------------------------------
# The knative-serving ConfigMaps: what a fresh install means when a key is absent.
# ---------------------------------------------------------------------------------------------

FEATURE_DEFAULTS: dict[str, str] = {
    "multi-container": "enabled",
    "kubernetes.podspec-volumes-emptydir": "enabled",
    "kubernetes.podspec-persistent-volume-claim": "disabled",
    "kubernetes.podspec-persistent-volume-write": "disabled",
    "kubernetes.podspec-volumes-hostpath": "disabled",
    "kubernetes.podspec-volumes-csi": "disabled",
    "kubernetes.podspec-volumes-image": "disabled",
    "kubernetes.podspec-volumes-ephemeral": "disabled",
    "kubernetes.podspec-init-containers": "disabled",
    "kubernetes.podspec-affinity": "disabled",
    "kubernetes.podspec-hostaliases": "disabled",
    "kubernetes.podspec-nodeselector": "disabled",
    "kubernetes.podspec-runtimeclassname": "disabled",
    "kubernetes.podspec-tolerations": "disabled",
    "kubernetes.podspec-securitycontext": "disabled",
    "kubernetes.podspec-priorityclassname": "disabled",
    "kubernetes.podspec-schedulername": "disabled",
    "kubernetes.podspec-topologyspreadconstraints": "disabled",
    "kubernetes.podspec-dnspolicy": "disabled",
    "kubernetes.podspec-dnsconfig": "disabled",
    "kubernetes.podspec-shareprocessnamespace": "disabled",
    "kubernetes.podspec-fieldref": "disabled",
    "kubernetes.containerspec-addcapabilities": "disabled",
    "secure-pod-defaults": "disabled",
    "tag-header-based-routing": "disabled",
}

DEFAULTS_DEFAULTS: dict[str, str] = {
    "revision-timeout-seconds": "300",
    "max-revision-timeout-seconds": "600",
    "revision-response-start-timeout-seconds": "0",
    "revision-idle-timeout-seconds": "0",
    "container-concurrency": "0",
    "container-concurrency-max-limit": "1000",
    "allow-container-concurrency-zero": "true",
    "enable-service-links": "false",
    "container-name-template": "user-container",
    "init-container-name-template": "init-container",
}

AUTOSCALER_DEFAULTS: dict[str, str] = {
    "max-scale-limit": "0",
    "allow-zero-initial-scale": "false",
    "enable-scale-to-zero": "true",
}

DEPLOYMENT_DEFAULTS: dict[str, str] = {
    "registries-skipping-tag-resolving": "kind.local,ko.local,dev.local",
    "digest-resolution-timeout": "10s",
    "progress-deadline": "600s",
    "queue-sidecar-image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue",
    "queue-sidecar-cpu-request": "25m",
    "pod-is-always-schedulable": "false",
}

# The sandbox answers for a kind-like host (kn quickstart writes the same key), see FACTS §1.10.
SANDBOX_DOMAIN = "127.0.0.1.sslip.io"

NETWORK_DEFAULTS: dict[str, str] = {
    "ingress-class": "kourier.ingress.networking.knative.dev",
    "domain-template": "{{.Name}}.{{.Namespace}}.{{.Domain}}",
    "tag-template": "{{.Tag}}-{{.Name}}",
    "external-domain-tls": "Disabled",
    "http-protocol": "Enabled",
    "default-external-scheme": "http",
}

# PodSpec fields a Revision may always carry, and the feature flag that unlocks each other one.
ALLOWED_POD_FIELDS = frozenset(
    {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"}
)
FLAGGED_POD_FIELDS: dict[str, str] = {
    "affinity": "kubernetes.podspec-affinity",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
}
REVISION_SPEC_FIELDS = frozenset(
    {"containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds"}
)
ALLOWED_CONTAINER_FIELDS = frozenset(
    {
        "name",
        "args",
        "command",
        "env",
        "workingDir",
        "envFrom",
        "image",
        "imagePullPolicy",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "ports",
        "resources",
        "securityContext",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "volumeMounts",
    }
)
ALLOWED_PORT_FIELDS = frozenset({"containerPort", "name", "protocol"})
ALLOWED_MOUNT_FIELDS = frozenset({"name", "readOnly", "mountPath", "subPath"})
ALLOWED_ENV_FIELDS = frozenset({"name", "value", "valueFrom"})
# Volume sources Knative always accepts, and those behind a flag (allowed unless "disabled").
ALWAYS_VOLUME_SOURCES = ("secret", "configMap", "projected")
FLAGGED_VOLUME_SOURCES: dict[str, str] = {
    "emptyDir": "kubernetes.podspec-volumes-emptydir",
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "csi": "kubernetes.podspec-volumes-csi",
    "image": "kubernetes.podspec-volumes-image",
    "ephemeral": "kubernetes.podspec-volumes-ephemeral",
}
# Mounts of these may be writable; any other volume type is mounted read-only (FACTS §1.5).
WRITABLE_VOLUME_SOURCES = ("emptyDir", "persistentVolumeClaim", "ephemeral")


@dataclass(frozen=True)
class KnativeConfig:
    """The ConfigMap data the webhook reads (absent keys fall back to Knative's defaults)."""

    features: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    autoscaler: Mapping[str, str] = field(default_factory=dict)

    def feature(self, key: str) -> str:
        # config/features.go asFlag: a value is taken when it equals enabled, allowed or disabled
        # ignoring case (no trimming); any other value keeps the flag's default.
        raw = str(self.features.get(key, "")).lower()
        if raw in ("enabled", "allowed", "disabled"):
            return raw
        return FEATURE_DEFAULTS.get(key, "disabled")

    def feature_enabled(self, key: str) -> bool:
        return self.feature(key) == "enabled"

    def feature_not_disabled(self, key: str) -> bool:
        # Field masks let a field through unless its flag is "disabled"; "allowed" lets it through.
        return self.feature(key) != "disabled"

    def _default(self, key: str) -> str:
        return str(self.defaults.get(key, DEFAULTS_DEFAULTS.get(key, ""))).strip()

    def _int_default(self, key: str) -> int:
        try:
            return int(self._default(key))
        except ValueError:
            return int(DEFAULTS_DEFAULTS[key])

    @property
    def revision_timeout_seconds(self) -> int:
        return self._int_default("revision-timeout-seconds")

    @property
    def max_revision_timeout_seconds(self) -> int:
        return self._int_default("max-revision-timeout-seconds")

    @property
    def container_concurrency(self) -> int:
        return self._int_default("container-concurrency")

    @property
    def container_concurrency_max_limit(self) -> int:
        return self._int_default("container-concurrency-max-limit")

    @property
    def allow_container_concurrency_zero(self) -> bool:
        return self._default("allow-container-concurrency-zero").lower() != "false"

    @property
    def enable_service_links(self) -> bool | None:
        # "default" leaves the field unset (Kubernetes' own default applies).
        value = self._default("enable-service-links").lower()
        return None if value == "default" else value == "true"

    def user_container_name(self, parent_name: str) -> str:
        return self._default("container-name-template").replace("{{.Name}}", parent_name) or "user-container"

    def resource_defaults(self) -> dict[str, dict[str, str]]:
        """``{"requests": {...}, "limits": {...}}`` from ``revision-{cpu,memory,ephemeral-storage}-*``."""
        result: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
        for resource in ("cpu", "memory", "ephemeral-storage"):
            for kind, section in (("request", "requests"), ("limit", "limits")):
                value = str(self.defaults.get(f"revision-{resource}-{kind}", "")).strip()
                if value:
                    result[section][resource] = value
        return result

    @property
    def max_scale_limit(self) -> int:
        try:
            return int(str(self.autoscaler.get("max-scale-limit", "0")))
        except ValueError:
            return 0

    @property
    def allow_zero_initial_scale(self) -> bool:
        return str(self.autoscaler.get("allow-zero-initial-scale", "false")).lower() == "true"


# ---------------------------------------------------------------------------------------------
# Field errors, rendered like knative.dev/pkg apis.FieldError
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cause:
    message: str
    paths: tuple[str, ...] = ()
    details: str = ""


def join_path(*parts: str) -> str:
    """Join path parts the way FieldError.ViaField flattens them (``a.b[0].c``)."""
    joined: list[str] = []
    for part in parts:
        for piece in str(part).split("."):
            if not piece:
                continue
            if joined and piece.startswith("[") and piece.endswith("]"):
                joined[-1] += piece
            else:
                joined.append(piece)
    return ".".join(joined)


def render(causes: Iterable[Cause]) -> str:
    """Merge causes with the same message and details, sort, and format them."""
    merged: dict[tuple[str, str], list[str]] = {}
    for cause in causes:
        paths = merged.setdefault((cause.message, cause.details), [])
        paths.extend(p for p in cause.paths if p not in paths)
    lines = []
    for message, details in sorted(merged):
        text = f"{message}: {', '.join(sorted(merged[(message, details)]))}"
        lines.append(f"{text}\n{details}" if details else text)
    return "\n".join(lines)


def denial_message(causes: Iterable[Cause]) -> str:
    """What kube-apiserver says when the validation webhook refuses a request."""
    return f'admission webhook "{VALIDATION_WEBHOOK}" denied the request: validation failed: {render(causes)}'


def _missing(*paths: str) -> Cause:
    return Cause("missing field(s)", tuple(paths))


def _disallowed(*paths: str) -> Cause:
    return Cause("must not set the field(s)", tuple(paths))


def _invalid(value: Any, path: str, details: str = "") -> Cause:
    return Cause(f"invalid value: {_go_value(value)}", (path,), details)


def _out_of_bounds(value: Any, lower: Any, upper: Any, path: str) -> Cause:
    return Cause(f"expected {_go_value(lower)} <= {_go_value(value)} <= {_go_value(upper)}", (path,))


def _invalid_key(key: str, path: str, details: str = "") -> Cause:
    return Cause(f"invalid key name {json.dumps(key)}", (path,), details)


def _one_of_missing(*paths: str) -> Cause:
    return Cause("expected exactly one, got neither", tuple(paths))


def _one_of_multiple(*paths: str) -> Cause:
    return Cause("expected exactly one, got both", tuple(paths))


def _go_value(value: Any) -> str:
    """Format a value as Go's %v would (floats without a trailing .0, bools lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _quote(text: str) -> str:
    """Go's %q for the plain strings that appear in these messages."""
    return json.dumps(text, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Small parsers: Go durations, DNS labels, image references
# ---------------------------------------------------------------------------------------------

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (``90s``, ``1m30s``, ``-5s``, ``0``); ValueError if malformed."""
    value = str(text).strip()
    sign = -1.0 if value.startswith("-") else 1.0
    body = value.lstrip("+-")
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(body):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total


def format_go_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds (``0s``, ``6s``, ``1h0m0s``)."""
    whole = int(seconds)
    if whole == 0:
        return "0s"
    hours, rest = divmod(abs(whole), 3600)
    minutes, secs = divmod(rest, 60)
    sign = "-" if whole < 0 else ""
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def dns1035_errors(name: str, *, prefix: bool = False) -> list[str]:
    """k8s NameIsDNS1035Label: a generateName prefix may end in '-' (it gets a suffix)."""
    if prefix and name.endswith("-"):
        name = name[:-1] + "a"
    errors = []
    if len(name) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035.match(name):
        errors.append(DNS1035_MESSAGE)
    return errors


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


# go-containerregistry name.ParseReference with WeakValidation, reduced to its grammar.
_IMAGE_REFERENCE = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::\d+)?|\[[0-9a-fA-F:]+\](?::\d+)?)/)?"
    r"(?P<repository>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+:[a-f0-9]{32,}))?$"
)


def image_reference_error(image: str) -> str | None:
    if _IMAGE_REFERENCE.match(image):
        return None
    return f"could not parse reference: {image}"


# ---------------------------------------------------------------------------------------------
# Defaulting (FACTS §1.5)
# ---------------------------------------------------------------------------------------------


def _as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _handler_set(probe: dict) -> bool:
    return any(probe.get(key) is not None for key in ("tcpSocket", "httpGet", "exec", "grpc"))


def default_container_names(containers: list[dict], default_name: str) -> None:
    """``user-container``; several unnamed containers get ``-0``, ``-1``… skipping taken names."""
    taken = {c.get("name") for c in containers if isinstance(c, dict) and c.get("name")}
    suffix = 0
    for container in containers:
        if not isinstance(container, dict) or container.get("name"):
            continue
        name = default_name
        if len(containers) > 1 or name in taken:
            while True:
                name = f"{default_name}-{suffix}"[:63]
                suffix += 1
                if name not in taken:
                    break
        container["name"] = name
        taken.add(name)


def _default_probes(container: dict) -> None:
    probe = container.get("readinessProbe")
    if not isinstance(probe, dict):
        probe = container["readinessProbe"] = {}
    if not _handler_set(probe):
        # An empty TCPSocketAction serialises its IntOrString port as 0.
        probe["tcpSocket"] = {"port": 0}
    # HTTPGetAction.Port is an IntOrString without omitempty: an unset one is stored as 0.
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("port", 0)
    if isinstance(probe.get("grpc"), dict) and probe["grpc"].get("service") is None:
        probe["grpc"]["service"] = ""
    if not probe.get("successThreshold"):
        probe["successThreshold"] = 1
    if probe.get("periodSeconds"):
        if not probe.get("failureThreshold"):
            probe["failureThreshold"] = 3
        if not probe.get("timeoutSeconds"):
            probe["timeoutSeconds"] = 1


def _writable_volume_names(spec: dict) -> set[str]:
    names = set()
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict) and any(volume.get(src) is not None for src in WRITABLE_VOLUME_SOURCES):
            names.add(volume.get("name"))
    return names


def default_revision_spec(spec: dict, config: KnativeConfig, *, creating: bool, parent_name: str = "") -> None:
    """RevisionSpec.SetDefaults: timeouts, concurrency, container names, resources, probes, mounts."""
    if not spec.get("timeoutSeconds"):
        spec["timeoutSeconds"] = config.revision_timeout_seconds
    if spec.get("containerConcurrency") is None:
        spec["containerConcurrency"] = config.container_concurrency
    containers = spec.get("containers")
    if not isinstance(containers, list):
        return
    default_container_names(containers, config.user_container_name(parent_name))
    resource_defaults = config.resource_defaults()
    writable = _writable_volume_names(spec)
    for container in containers:
        if not isinstance(container, dict):
            continue
        resources = container.get("resources")
        if not isinstance(resources, dict):
            resources = container["resources"] = {}
        for section, values in resource_defaults.items():
            for resource, quantity in values.items():
                resources.setdefault(section, {}).setdefault(resource, quantity)
        # Only the serving container gets the default probe when there are sidecars.
        if len(containers) == 1 or container.get("ports"):
            _default_probes(container)
        if spec.get("enableServiceLinks") is None and creating and config.enable_service_links is not None:
            spec["enableServiceLinks"] = config.enable_service_links
        for mount in container.get("volumeMounts") or []:
            if isinstance(mount, dict) and mount.get("name") not in writable:
                mount["readOnly"] = True


def default_template(template: dict, config: KnativeConfig, *, creating: bool, parent_name: str) -> None:
    metadata = template.get("metadata")
    if not isinstance(metadata, dict):
        metadata = template["metadata"] = {}
    # An embedded ObjectMeta always serialises its (zero) creationTimestamp as null.
    metadata.setdefault("creationTimestamp", None)
    spec = template.get("spec")
    if not isinstance(spec, dict):
        spec = template["spec"] = {}
    default_revision_spec(spec, config, creating=creating, parent_name=parent_name)


def default_traffic(spec: dict, *, default_configuration: bool) -> None:
    """RouteSpec.SetDefaults: 100% to the latest revision, and each target's latestRevision/percent."""
    traffic = spec.get("traffic")
    if not traffic and default_configuration:
        spec["traffic"] = traffic = [{"latestRevision": True, "percent": 100}]
    for target in traffic or []:
        if not isinstance(target, dict):
            continue
        if target.get("latestRevision") is None:
            target["latestRevision"] = not target.get("revisionName")
        if target.get("percent") is None:
            target["percent"] = 0


def set_user_info(obj: dict, old_spec: Any, *, operation: str, user: str) -> None:
    """serving.SetUserInfo: creator on create; lastModifier on create and on spec-changing updates."""
    if not user:
        return
    if operation == "UPDATE" and old_spec == obj.get("spec"):
        return
    annotations = obj.setdefault("metadata", {}).get("annotations")
    if not isinstance(annotations, dict):
        annotations = obj["metadata"]["annotations"] = {}
    if operation != "UPDATE":
        annotations[CREATOR_ANNOTATION] = user
    annotations[LAST_MODIFIER_ANNOTATION] = user


def _template_defaulting_skipped(spec: dict, old: dict | None) -> bool:
    # An unchanged bring-your-own revision name means "this template is already a Revision".
    if old is None:
        return False
    new_name = _as_dict(_as_dict(spec.get("template")).get("metadata")).get("name")
    old_name = _as_dict(_as_dict(_as_dict(old.get("spec")).get("template")).get("metadata")).get("name")
    return bool(new_name) and new_name == old_name


def _parent_name(obj: dict) -> str:
    return _as_dict(obj.get("metadata")).get("name") or ""


def default_service(obj: dict, old: dict | None, *, operation: str, user: str, config: KnativeConfig) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    if not _template_defaulting_skipped(spec, old):
        template = spec.get("template")
        if not isinstance(template, dict):
            template = spec["template"] = {}
        default_template(template, config, creating=operation == "CREATE", parent_name=_parent_name(obj))
    # The webhook's Go round trip writes every quantity of the template in canonical form.
    canonicalize_pod_spec(_as_dict(spec.get("template")).get("spec"))
    default_traffic(spec, default_configuration=True)
    set_user_info(obj, _as_dict(old).get("spec") if old else None, operation=operation, user=user)


def default_configuration(obj: dict, old: dict | None, *, operation: str, user: str, config: KnativeConfig) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    if not _template_defaulting_skipped(spec, old):
        template = spec.get("template")
        if not isinstance(template, dict):
            template = spec["template"] = {}
        default_template(template, config, creating=operation == "CREATE", parent_name=_parent_name(obj))
    canonicalize_pod_spec(_as_dict(spec.get("template")).get("spec"))
    # A Configuration made by the Service controller carries the Service's creator instead.
    if not _as_dict(obj.get("metadata")).get("ownerReferences"):
        set_user_info(obj, _as_dict(old).get("spec") if old else None, operation=operation, user=user)


def default_route(obj: dict, old: dict | None, *, operation: str, user: str, config: KnativeConfig) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    default_traffic(spec, default_configuration=False)
    if not _as_dict(obj.get("metadata")).get("ownerReferences"):
        set_user_info(obj, _as_dict(old).get("spec") if old else None, operation=operation, user=user)


def default_revision(obj: dict, old: dict | None, *, operation: str, user: str, config: KnativeConfig) -> None:
    # A Revision's spec is immutable, so defaulting never runs on UPDATE (knative/serving#8128).
    if operation == "UPDATE":
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    default_revision_spec(spec, config, creating=True, parent_name=_parent_name(obj))
    canonicalize_pod_spec(spec)


# ---------------------------------------------------------------------------------------------
# Validation (FACTS §1.3, §1.4, §1.11)
# ---------------------------------------------------------------------------------------------


def validate_object_metadata(metadata: dict, path: str) -> list[Cause]:
    """knative.dev/pkg ValidateObjectMetadata: names are DNS-1035 labels."""
    name = metadata.get("name") or ""
    generate_name = metadata.get("generateName") or ""
    if generate_name:
        errors = dns1035_errors(generate_name, prefix=True)
        if errors:
            return [Cause(f"not a DNS 1035 label prefix: {_go_list(errors)}", (join_path(path, "generateName"),))]
    if name:
        errors = dns1035_errors(name)
        if errors:
            return [Cause(f"not a DNS 1035 label: {_go_list(errors)}", (join_path(path, "name"),))]
    if not name and not generate_name:
        return [Cause("name or generateName is required", (join_path(path, "name"),))]
    return []


def validate_no_autoscaling_annotations(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    details = 'autoscaling annotations must be put under "spec.template.metadata.annotations" to work'
    return [_invalid_key(key, path, details) for key in sorted(annotations) if key.startswith(AUTOSCALING_GROUP)]


def _int_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# -- autoscaling annotations ------------------------------------------------------------------


def _annotation_keys(name: str, legacy: str | None = None) -> tuple[str, ...]:
    keys = [f"{AUTOSCALING_GROUP}/{name}"]
    if legacy:
        keys.append(f"{AUTOSCALING_GROUP}/{legacy}")
    return tuple(keys)


# kmap.KeyPriority: the first key present wins, and the kebab-case spelling comes first.
CLASS_KEYS = _annotation_keys("class")
METRIC_KEYS = _annotation_keys("metric")
MIN_SCALE_KEYS = _annotation_keys("min-scale", "minScale")
MAX_SCALE_KEYS = _annotation_keys("max-scale", "maxScale")
INITIAL_SCALE_KEYS = _annotation_keys("initial-scale", "initialScale")
SCALE_DOWN_DELAY_KEYS = _annotation_keys("scale-down-delay", "scaleDownDelay")
TARGET_KEYS = _annotation_keys("target")
WINDOW_KEYS = _annotation_keys("window")
TARGET_UTILIZATION_KEYS = _annotation_keys("target-utilization-percentage", "targetUtilizationPercentage")
TARGET_BURST_CAPACITY_KEYS = _annotation_keys("target-burst-capacity", "targetBurstCapacity")
PANIC_WINDOW_KEYS = _annotation_keys("panic-window-percentage", "panicWindowPercentage")
PANIC_THRESHOLD_KEYS = _annotation_keys("panic-threshold-percentage", "panicThresholdPercentage")
RETENTION_KEYS = _annotation_keys("scale-to-zero-pod-retention-period", "scaleToZeroPodRetentionPeriod")
ACTIVATION_SCALE_KEYS = _annotation_keys("activation-scale")
AGGREGATION_KEYS = _annotation_keys("metric-aggregation-algorithm", "metricAggregationAlgorithm")
AGGREGATION_ALGORITHMS = frozenset({"linear", "weighted-exponential", "weightedExponential"})
WINDOW_MIN, WINDOW_MAX = 6.0, 3600.0


def annotation_lookup(annotations: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, str] | None:
    """The (key, value) that Knative reads for a setting spelled several ways, or None."""
    for key in keys:
        if key in annotations:
            return key, str(annotations[key])
    return None


def scale_bounds(annotations: Mapping[str, Any]) -> tuple[int, int]:
    """(min-scale, max-scale) as Knative reads them (0 = unset / unbounded)."""
    values = []
    for keys in (MIN_SCALE_KEYS, MAX_SCALE_KEYS):
        found = annotation_lookup(annotations, keys)
        try:
            values.append(max(int(found[1]), 0) if found else 0)
        except ValueError:
            values.append(0)
    return values[0], values[1]


def _parse_go_int32(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(text)
    return int(text)


def _int_ge0(annotations: Mapping[str, Any], keys: tuple[str, ...], path: str) -> tuple[int, list[Cause]]:
    found = annotation_lookup(annotations, keys)
    if not found:
        return 0, []
    key, value = found
    try:
        number = _parse_go_int32(value)
    except ValueError:
        return 0, [_invalid(value, join_path(path, key))]
    if number < 0 or number > MAX_INT32:
        return 0, [_out_of_bounds(value, 0, MAX_INT32, join_path(path, key))]
    return number, []


def _validate_class(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    found = annotation_lookup(annotations, CLASS_KEYS)
    if found and found[1].endswith(AUTOSCALING_GROUP) and found[1] not in (KPA_CLASS, HPA_CLASS):
        return [_invalid(found[1], join_path(path, found[0]))]
    return []


def _validate_min_max_scale(annotations: Mapping[str, Any], path: str, config: KnativeConfig) -> list[Cause]:
    minimum, causes = _int_ge0(annotations, MIN_SCALE_KEYS, path)
    maximum, max_causes = _int_ge0(annotations, MAX_SCALE_KEYS, path)
    causes += max_causes
    if maximum != 0 and maximum < minimum:
        # The message names the kebab-case keys whichever spelling the user wrote.
        paths = (join_path(path, MAX_SCALE_KEYS[0]), join_path(path, MIN_SCALE_KEYS[0]))
        causes.append(Cause(f"max-scale={maximum} is less than min-scale={minimum}", paths))
    found_max = annotation_lookup(annotations, MAX_SCALE_KEYS)
    limit = config.max_scale_limit
    if found_max and limit:
        if maximum > limit:
            causes.append(_out_of_bounds(maximum, 1, limit, join_path(path, found_max[0])))
        if maximum == 0:
            message = f"max-scale=0 (unlimited), must be less than {limit}"
            causes.append(Cause(message, (join_path(path, found_max[0]),)))
    activation = annotation_lookup(annotations, ACTIVATION_SCALE_KEYS)
    if activation:
        key, value = activation
        key_path = join_path(path, key)
        try:
            floor = _parse_go_int32(value)
        except ValueError:
            return [*causes, _invalid(value, key_path)]
        if minimum > floor:
            causes.append(Cause(f"min-scale={minimum} is greater than min-activate-scale={floor}", (key_path,)))
        elif maximum != 0 and maximum < floor:
            causes.append(Cause(f"max-scale={maximum} is less than min-activate-scale={floor}", (key_path,)))
        elif floor < 2:
            causes.append(Cause(f"min-activate-scale={floor} must be greater than 1", (key_path,)))
    return causes


def _validate_floats(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    bounded = (
        (PANIC_WINDOW_KEYS, 1.0, 100.0),
        (PANIC_THRESHOLD_KEYS, 110.0, 1000.0),
        (TARGET_UTILIZATION_KEYS, 1.0, 100.0),
    )
    for keys, lower, upper in bounded:
        found = annotation_lookup(annotations, keys)
        if not found:
            continue
        key, value = found
        try:
            number = float(value)
        except ValueError:
            causes.append(_invalid(value, join_path(path, key)))
            continue
        if not lower <= number <= upper:
            causes.append(_out_of_bounds(value, lower, upper, join_path(path, key)))
    found = annotation_lookup(annotations, TARGET_KEYS)
    if found:
        key, value = found
        try:
            if float(value) < 0.01:
                causes.append(Cause(f"target {value} should be at least 0.01", (join_path(path, key),)))
        except ValueError:
            causes.append(_invalid(value, join_path(path, key)))
    found = annotation_lookup(annotations, TARGET_BURST_CAPACITY_KEYS)
    if found:
        key, value = found
        try:
            number = float(value)
            if number < 0 and number != -1:
                causes.append(_invalid(value, join_path(path, key)))
        except ValueError:
            causes.append(_invalid(value, join_path(path, key)))
    return causes


def _validate_durations(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    window = annotation_lookup(annotations, WINDOW_KEYS)
    if window:
        window_path = join_path(path, WINDOW_KEYS[0])
        try:
            seconds = parse_go_duration(window[1])
        except ValueError:
            causes.append(_invalid(window[1], window_path))
        else:
            if not WINDOW_MIN <= seconds <= WINDOW_MAX:
                causes.append(
                    _out_of_bounds(
                        window[1], format_go_duration(WINDOW_MIN), format_go_duration(WINDOW_MAX), window_path
                    )
                )
            elif seconds != int(seconds):
                causes.append(Cause("must be specified with at most second precision", (window_path,)))
    for keys, precision in ((RETENTION_KEYS, False), (SCALE_DOWN_DELAY_KEYS, True)):
        found = annotation_lookup(annotations, keys)
        if not found:
            continue
        key, value = found
        key_path = join_path(path, key)
        try:
            seconds = parse_go_duration(value)
        except ValueError:
            causes.append(_invalid(value, key_path))
            continue
        if seconds < 0 or seconds > WINDOW_MAX:
            causes.append(_out_of_bounds(value, "0s", format_go_duration(WINDOW_MAX), key_path))
        elif precision and seconds != int(seconds):
            causes.append(Cause("must be specified with at most second precision", (key_path,)))
    return causes


def _validate_metric(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    found = annotation_lookup(annotations, METRIC_KEYS)
    if not found:
        return []
    metric = found[1]
    class_found = annotation_lookup(annotations, CLASS_KEYS)
    autoscaler_class = class_found[1] if class_found else KPA_CLASS
    if autoscaler_class == KPA_CLASS and metric not in ("concurrency", "rps"):
        return [_invalid(metric, join_path(path, METRIC_KEYS[0]))]
    if autoscaler_class == HPA_CLASS and metric == "":
        return [_invalid(metric, join_path(path, METRIC_KEYS[0]))]
    return []


def _validate_algorithm(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    class_found = annotation_lookup(annotations, CLASS_KEYS)
    if not class_found or class_found[1] != KPA_CLASS:
        return []  # custom autoscalers may define their own algorithms
    found = annotation_lookup(annotations, AGGREGATION_KEYS)
    if found and found[1] and found[1] not in AGGREGATION_ALGORITHMS:
        return [_invalid(found[1], join_path(path, found[0]))]
    return []


def _validate_initial_scale(annotations: Mapping[str, Any], path: str, config: KnativeConfig) -> list[Cause]:
    found = annotation_lookup(annotations, INITIAL_SCALE_KEYS)
    if not found:
        return []
    key, value = found
    try:
        number = _parse_go_int32(value)
    except ValueError:
        return [_invalid(value, join_path(path, key))]
    if number < 0:
        return [_invalid(value, join_path(path, f"{key} must be greater than 0"))]
    if number == 0 and not config.allow_zero_initial_scale:
        return [_invalid(value, join_path(path, f"{key}=0 not allowed by cluster"))]
    return []


def validate_autoscaling_annotations(annotations: Mapping[str, Any], path: str, config: KnativeConfig) -> list[Cause]:
    """autoscaling.ValidateAnnotations: class, min/max scale, floats, windows, metric, initial scale."""
    return [
        *_validate_class(annotations, path),
        *_validate_min_max_scale(annotations, path, config),
        *_validate_floats(annotations, path),
        *_validate_durations(annotations, path),
        *_validate_metric(annotations, path),
        *_validate_algorithm(annotations, path),
        *_validate_initial_scale(annotations, path, config),
    ]


# -- pod spec -----------------------------------------------------------------------------------


def _disallowed_keys(obj: dict, allowed: Iterable[str], path: str) -> list[Cause]:
    allowed = set(allowed)
    extra = sorted(key for key, value in obj.items() if key not in allowed and value not in (None, False))
    return [_disallowed(*(join_path(path, key) for key in extra))] if extra else []


def _validate_volume(volume: dict, path: str, config: KnativeConfig) -> list[Cause]:
    causes: list[Cause] = []
    name = volume.get("name") or ""
    pvc = volume.get("persistentVolumeClaim")
    if isinstance(pvc, dict):
        claim = pvc.get("claimName", "")
        # These two messages carry no field path in Knative, hence the bare ": " they end with.
        if not config.feature_enabled("kubernetes.podspec-persistent-volume-claim"):
            causes.append(
                Cause(f"Persistent volume claim support is disabled, but found persistent volume claim {claim}")
            )
        if not pvc.get("readOnly") and not config.feature_enabled("kubernetes.podspec-persistent-volume-write"):
            causes.append(
                Cause(
                    "Persistent volume write support is disabled, but found persistent volume claim "
                    f"{claim} that is not read-only"
                )
            )
    if volume.get("emptyDir") is not None and not config.feature_enabled("kubernetes.podspec-volumes-emptydir"):
        causes.append(Cause(f"EmptyDir volume support is disabled, but found EmptyDir volume {name}"))
    allowed_sources = set(ALWAYS_VOLUME_SOURCES) | {
        source for source, flag in FLAGGED_VOLUME_SOURCES.items() if config.feature_not_disabled(flag)
    }
    causes += _disallowed_keys(volume, allowed_sources | {"name"}, path)
    if not name:
        causes = [_missing(join_path(path, "name"))]  # Knative replaces the earlier errors here
    elif len(name) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        causes = [_invalid(name, join_path(path, "name"))]
    # emptyDir and PVC count as "specified" even when their flag refuses them, as in Knative.
    counted = allowed_sources | {"emptyDir", "persistentVolumeClaim"}
    specified = [source for source in counted if volume.get(source) is not None]
    if not specified:
        options = ["secret", "configMap", "projected"]
        if config.feature_enabled("kubernetes.podspec-volumes-emptydir"):
            options.append("emptyDir")
        if config.feature_enabled("kubernetes.podspec-persistent-volume-claim"):
            options.append("persistentVolumeClaim")
        causes.append(_one_of_missing(*(join_path(path, option) for option in options)))
    elif len(specified) > 1:
        causes.append(_one_of_multiple(*(join_path(path, source) for source in specified)))
    empty_dir = volume.get("emptyDir")
    if isinstance(empty_dir, dict) and empty_dir.get("medium") not in (None, "", "Memory"):
        causes.append(_invalid(empty_dir["medium"], join_path(path, "emptyDir.medium")))
    return causes


def _validate_volumes(spec: dict, path: str, config: KnativeConfig) -> tuple[dict[str, dict], list[Cause]]:
    mounted = {
        mount.get("name")
        for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
        if isinstance(container, dict)
        for mount in container.get("volumeMounts") or []
        if isinstance(mount, dict)
    }
    volumes: dict[str, dict] = {}
    causes: list[Cause] = []
    for index, volume in enumerate(spec.get("volumes") or []):
        volume_path = join_path(path, "volumes", f"[{index}]")
        if not isinstance(volume, dict):
            causes.append(_invalid(volume, volume_path))
            continue
        name = volume.get("name")
        if name in volumes:
            causes.append(Cause(f"duplicate volume name {_quote(str(name))}", (join_path(volume_path, "name"),)))
        if name not in mounted:
            causes.append(Cause(f"volume with name {_quote(str(name))} not mounted", (join_path(volume_path, "name"),)))
        causes += _validate_volume(volume, volume_path, config)
        volumes[name] = volume
    return volumes, causes


def _validate_env(container: dict, path: str, reserved: frozenset[str]) -> list[Cause]:
    causes: list[Cause] = []
    for index, env in enumerate(container.get("env") or []):
        env_path = join_path(path, "env", f"[{index}]")
        if not isinstance(env, dict):
            causes.append(_invalid(env, env_path))
            continue
        causes += _disallowed_keys(env, ALLOWED_ENV_FIELDS, env_path)
        name = env.get("name") or ""
        if not name:
            causes.append(_missing(join_path(env_path, "name")))
        elif name in reserved:
            causes.append(Cause(f"{_quote(name)} is a reserved environment variable", (join_path(env_path, "name"),)))
    return causes


def _validate_port_basics(port: dict, path: str) -> list[Cause]:
    causes = _disallowed_keys(port, ALLOWED_PORT_FIELDS, path)
    number = _int_value(port.get("containerPort", 0))
    if number is None:
        return [*causes, _invalid(port.get("containerPort"), join_path(path, "containerPort"))]
    if number in RESERVED_PORTS:
        causes.append(
            _invalid(
                f"{number} is a reserved port",
                join_path(path, "containerPort"),
                f"{number} is a reserved port, please use a different value",
            )
        )
    if number < 0 or number > 65535:
        causes.append(_out_of_bounds(number, 0, 65535, join_path(path, "containerPort")))
    return causes


def _validate_container_ports(container: dict, path: str) -> list[Cause]:
    ports = container.get("ports") or []
    if not ports:
        return []
    ports_path = join_path(path, "ports")
    user_port = ports[0] if isinstance(ports[0], dict) else {}
    causes = _validate_port_basics(user_port, ports_path)
    protocol = user_port.get("protocol") or ""
    if protocol not in ("", "TCP"):
        causes.append(_invalid(protocol, join_path(ports_path, "protocol")))
    port_name = user_port.get("name") or ""
    if port_name not in VALID_PORT_NAMES:
        causes.append(
            Cause(
                f"Port name {port_name} is not allowed", (ports_path,), "Name must be empty, or one of: 'h2c', 'http1'"
            )
        )
    return causes


def _serving_port(containers: list[dict], path: str) -> tuple[dict, list[Cause]]:
    """The one port traffic goes to (default http/8080), and the errors about port counts."""
    count = 0
    port: dict = {}
    for container in containers:
        ports = container.get("ports") or []
        if ports:
            count += len(ports)
            port = ports[0] if isinstance(ports[0], dict) else {}
    serving = {"name": port.get("name") or "http", "containerPort": port.get("containerPort") or 8080}
    all_path = join_path(path, "containers[*]")
    if count == 0 and len(containers) > 1:
        return serving, [_missing(join_path(all_path, "ports"))]
    if count > 1:
        cause = Cause(
            "more than one container port is set",
            (join_path(all_path, "ports"),),
            "Only a single port is allowed across all containers",
        )
        return serving, [cause]
    return serving, []


def _validate_probe(probe: Any, serving_port: dict, path: str, *, readiness: bool) -> list[Cause]:
    if not isinstance(probe, dict):
        return []
    causes: list[Cause] = []
    handlers = [key for key in ("httpGet", "tcpSocket", "exec", "grpc") if probe.get(key) is not None]
    for key in ("httpGet", "tcpSocket"):
        action = probe.get(key)
        named_port = action.get("port") if isinstance(action, dict) else None
        if isinstance(named_port, str) and named_port and named_port != serving_port["name"]:
            causes.append(_invalid(named_port, join_path(path, f"{key}.port"), "Probe port must match container port"))
    if not handlers:
        causes.append(_one_of_missing(*(join_path(path, h) for h in ("httpGet", "tcpSocket", "exec", "grpc"))))
    elif len(handlers) > 1:
        shown = ["gRPC" if h == "grpc" else h for h in handlers]
        causes.append(_one_of_multiple(*(join_path(path, h) for h in shown)))
    if not readiness:
        return causes
    period = _int_value(probe.get("periodSeconds", 0)) or 0
    for key, lower in (("periodSeconds", 0), ("initialDelaySeconds", 0), ("successThreshold", 1)):
        value = _int_value(probe.get(key, 0)) or 0
        if value < lower:
            causes.append(_out_of_bounds(value, lower, MAX_INT32, join_path(path, key)))
    if period == 0:
        for key in ("failureThreshold", "timeoutSeconds"):
            if _int_value(probe.get(key, 0)):
                causes.append(Cause(f"{key} is disallowed when periodSeconds is zero", (join_path(path, key),)))
    else:
        for key in ("timeoutSeconds", "failureThreshold"):
            value = _int_value(probe.get(key, 0)) or 0
            if value < 1:
                causes.append(_out_of_bounds(value, 1, MAX_INT32, join_path(path, key)))
    return causes


def _validate_volume_mounts(container: dict, volumes: dict[str, dict], path: str) -> list[Cause]:
    causes: list[Cause] = []
    seen_paths: set[str] = set()
    for index, mount in enumerate(container.get("volumeMounts") or []):
        mount_path = join_path(path, "volumeMounts", f"[{index}]")
        if not isinstance(mount, dict):
            causes.append(_invalid(mount, mount_path))
            continue
        causes += _disallowed_keys(mount, ALLOWED_MOUNT_FIELDS, mount_path)
        volume = volumes.get(mount.get("name"))
        if volume is None:
            causes.append(Cause("volumeMount has no matching volume", (join_path(mount_path, "name"),)))
        target = mount.get("mountPath") or ""
        clean = posixpath.normpath(target) if target else ""
        if clean.startswith("//"):
            clean = clean[1:]
        if not target:
            causes.append(_missing(join_path(mount_path, "mountPath")))
        elif clean in RESERVED_MOUNT_PATHS:
            causes.append(Cause(f"mountPath {_quote(clean)} is a reserved path", (join_path(mount_path, "mountPath"),)))
        elif not target.startswith("/"):
            causes.append(_invalid(target, join_path(mount_path, "mountPath")))
        elif clean in seen_paths:
            causes.append(_invalid(f"{_quote(target)} must be unique", join_path(mount_path, "mountPath")))
        seen_paths.add(clean)
        volume = volume or {}
        writable_type = any(volume.get(source) is not None for source in WRITABLE_VOLUME_SOURCES)
        if not writable_type and not mount.get("readOnly"):
            causes.append(
                Cause("volume mount should be readOnly for this type of volume", (join_path(mount_path, "readOnly"),))
            )
        pvc = volume.get("persistentVolumeClaim")
        if isinstance(pvc, dict) and pvc.get("readOnly") and not mount.get("readOnly"):
            causes.append(Cause("volume is readOnly but volume mount is not", (join_path(mount_path, "readOnly"),)))
    return causes


def _validate_container_common(
    container: dict, volumes: dict[str, dict], path: str, *, reserved_env: frozenset[str]
) -> list[Cause]:
    if not container:
        return [_missing(path)]
    causes = _disallowed_keys(container, ALLOWED_CONTAINER_FIELDS, path)
    name = container.get("name") or ""
    if name in RESERVED_CONTAINER_NAMES:
        causes.append(Cause(f"{_quote(name)} is a reserved container name", (join_path(path, "name"),)))
    causes += _validate_env(container, path, reserved_env)
    image = container.get("image") or ""
    if not image:
        causes.append(_missing(join_path(path, "image")))
    else:
        problem = image_reference_error(image)
        if problem:
            causes.append(
                Cause(
                    "Failed to parse image reference",
                    (join_path(path, "image"),),
                    f"image: {_quote(image)}, error: {problem}",
                )
            )
    causes += _validate_container_ports(container, path)
    policy = container.get("terminationMessagePolicy") or ""
    if policy not in ("", "File", "FallbackToLogsOnError"):
        causes.append(_invalid(policy, join_path(path, "terminationMessagePolicy")))
    causes += _validate_volume_mounts(container, volumes, path)
    return causes


def _validate_serving_container(container: dict, volumes: dict, serving_port: dict, path: str) -> list[Cause]:
    return [
        *_validate_probe(
            container.get("livenessProbe"), serving_port, join_path(path, "livenessProbe"), readiness=False
        ),
        *_validate_probe(
            container.get("readinessProbe"), serving_port, join_path(path, "readinessProbe"), readiness=True
        ),
        *_validate_container_common(container, volumes, path, reserved_env=RESERVED_ENV_VARS),
    ]


def validate_pod_spec(spec: dict, path: str, config: KnativeConfig) -> list[Cause]:
    """serving.ValidatePodSpec, for the fields and rules that FACTS §1.3/§1.11 describe."""
    allowed = set(ALLOWED_POD_FIELDS) | REVISION_SPEC_FIELDS
    allowed |= {key for key, flag in FLAGGED_POD_FIELDS.items() if config.feature_not_disabled(flag)}
    if spec.get("automountServiceAccountToken") is False:
        allowed.add("automountServiceAccountToken")
    causes = _disallowed_keys(spec, allowed, path)
    volumes, volume_causes = _validate_volumes(spec, path, config)
    causes += volume_causes
    init_containers = spec.get("initContainers") or []
    if init_containers and not config.feature_enabled("kubernetes.podspec-init-containers"):
        causes.append(
            Cause(f"pod spec support for init-containers is off, but found {len(init_containers)} init containers")
        )
    containers = [c if isinstance(c, dict) else {} for c in spec.get("containers") or []]
    serving_port, port_causes = _serving_port(containers, path)
    causes += port_causes
    if not containers:
        causes.append(_missing(join_path(path, "containers")))
    elif len(containers) == 1:
        causes += _validate_serving_container(containers[0], volumes, serving_port, join_path(path, "containers[0]"))
    elif not config.feature_enabled("multi-container"):
        causes.append(Cause(f"multi-container is off, but found {len(containers)} containers"))
    else:
        seen: set[str] = set()
        for index, container in enumerate(containers):
            container_path = join_path(path, "containers", f"[{index}]")
            name = container.get("name") or ""
            if name in seen:
                causes.append(Cause(f"duplicate container name {_quote(name)}", (join_path(container_path, "name"),)))
            seen.add(name)
            if container.get("ports"):
                causes += _validate_serving_container(container, volumes, serving_port, container_path)
            else:
                sidecar_env = RESERVED_ENV_VARS - {"PORT"}
                causes += _validate_container_common(container, volumes, container_path, reserved_env=sidecar_env)
    account = spec.get("serviceAccountName") or ""
    if account and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", account):
        causes.append(_invalid(account, join_path(path, "serviceAccountName")))
    return causes


def validate_revision_spec(spec: dict, path: str, config: KnativeConfig) -> list[Cause]:
    causes = validate_pod_spec(spec, path, config)
    timeout = spec.get("timeoutSeconds")
    if timeout is not None:
        number = _int_value(timeout)
        limit = config.max_revision_timeout_seconds
        if number is None:
            causes.append(_invalid(timeout, join_path(path, "timeoutSeconds")))
        elif number != 0 and (number > limit or number < 0):
            causes.append(_out_of_bounds(number, 0, limit, join_path(path, "timeoutSeconds")))
    concurrency = spec.get("containerConcurrency")
    if concurrency is not None:
        number = _int_value(concurrency)
        lower = 0 if config.allow_container_concurrency_zero else 1
        upper = config.container_concurrency_max_limit
        if number is None:
            causes.append(_invalid(concurrency, join_path(path, "containerConcurrency")))
        elif number < lower or number > upper:
            causes.append(_out_of_bounds(number, lower, upper, join_path(path, "containerConcurrency")))
    return causes


def validate_revision_name(template_metadata: dict, parent_metadata: dict, path: str) -> list[Cause]:
    """Bring-your-own revision names: a DNS-1035 label starting with ``<parent name>-``."""
    generate_name = template_metadata.get("generateName") or ""
    name = template_metadata.get("name") or ""
    if generate_name:
        errors = dns1035_errors(generate_name, prefix=True)
        if errors:
            return [
                _invalid(f"not a DNS 1035 label prefix: {_go_list(errors)}", join_path(path, "metadata.generateName"))
            ]
    if not name:
        return []
    errors = dns1035_errors(name)
    if errors:
        return [_invalid(f"not a DNS 1035 label: {_go_list(errors)}", join_path(path, "metadata.name"))]
    parent_name = parent_metadata.get("name") or ""
    if not parent_name and parent_metadata.get("generateName"):
        return [_disallowed(join_path(path, "metadata.name"))]
    prefix = f"{parent_name}-"
    if not name.startswith(prefix):
        return [_invalid(f"{_quote(name)} must have prefix {_quote(prefix)}", join_path(path, "metadata.name"))]
    return []


# knative.dev/networking's allowedAnnotations: any other key that starts with
# "networking.knative.dev" is refused on a revision template.
NETWORKING_TEMPLATE_ANNOTATIONS = frozenset(
    f"networking.knative.dev/{name}"
    for name in (
        "ingress.class",
        "ingress-class",
        "certificate.class",
        "certificate-class",
        "disableAutoTLS",
        "disable-auto-tls",
        "disable-external-domain-tls",
        "httpOption",
        "http-protocol",
    )
)
QUEUE_SIDECAR_PERCENTAGE_KEYS = (
    "queue.sidecar.serving.knative.dev/resource-percentage",
    "queue.sidecar.serving.knative.dev/resourcePercentage",
)
QUEUE_SIDECAR_QUANTITY_KEYS = tuple(
    f"queue.sidecar.serving.knative.dev/{resource}-resource-{kind}"
    for resource in ("cpu", "memory", "ephemeral-storage")
    for kind in ("request", "limit")
)
PROGRESS_DEADLINE_KEY = f"{GROUP}/progress-deadline"


def validate_networking_annotations(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    """networking.ValidateAnnotations (knative.dev/networking)."""
    return [
        _invalid_key(key, path)
        for key in sorted(annotations)
        if key.startswith("networking.knative.dev") and key not in NETWORKING_TEMPLATE_ANNOTATIONS
    ]


def validate_queue_sidecar_annotations(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    """validateQueueSidecarResourceAnnotations: a percentage in [0.1, 100], quantities that parse."""
    causes: list[Cause] = []
    found = annotation_lookup(annotations, QUEUE_SIDECAR_PERCENTAGE_KEYS)
    if found:
        key, value = found
        try:
            percentage = float(str(value))
        except ValueError:
            causes.append(_invalid(value, join_path(path, f"[{key}]")))
        else:
            if not 0.1 <= percentage <= 100:
                causes.append(_out_of_bounds(percentage, 0.1, 100.0, join_path(path, f"[{key}]")))
    for key in QUEUE_SIDECAR_QUANTITY_KEYS:
        if key in annotations and canonical_quantity(str(annotations[key])) is None:
            causes.append(_invalid(annotations[key], join_path(path, f"[{key}]")))
    return causes


def validate_progress_deadline(annotations: Mapping[str, Any], path: str) -> list[Cause]:
    """validateProgressDeadlineAnnotation: a Go duration, whole seconds, not negative."""
    value = str(annotations.get(PROGRESS_DEADLINE_KEY) or "")
    if not value:
        return []
    key_path = join_path(path, PROGRESS_DEADLINE_KEY)
    try:
        seconds = parse_go_duration(value)
    except ValueError:
        return [_invalid(value, key_path)]
    if seconds != round(seconds):
        return [Cause(f"progress-deadline={value} is not at second precision", (key_path,))]
    if seconds < 0:
        return [Cause(f"progress-deadline={value} must be positive", (key_path,))]
    return []


def validate_template(template: dict, parent_metadata: dict, path: str, config: KnativeConfig) -> list[Cause]:
    metadata = _as_dict(template.get("metadata"))
    annotations = _as_dict(metadata.get("annotations"))
    annotations_path = join_path(path, "metadata.annotations")
    return [
        *validate_revision_spec(_as_dict(template.get("spec")), join_path(path, "spec"), config),
        *validate_autoscaling_annotations(annotations, annotations_path, config),
        *validate_networking_annotations(annotations, annotations_path),
        *validate_revision_name(metadata, parent_metadata, path),
        *validate_queue_sidecar_annotations(annotations, annotations_path),
        *validate_progress_deadline(annotations, annotations_path),
    ]


def validate_traffic(traffic: Any, path: str, *, default_configuration: bool) -> list[Cause]:
    causes: list[Cause] = []
    tags: dict[str, int] = {}
    total = 0
    for index, target in enumerate(traffic or []):
        target_path = join_path(path, f"[{index}]")
        if not isinstance(target, dict):
            causes.append(_invalid(target, target_path))
            continue
        revision = target.get("revisionName") or ""
        configuration = target.get("configurationName") or ""
        latest = target.get("latestRevision")
        if latest is not None and bool(revision) == bool(latest):
            message = f"may not set revisionName {_quote(revision)} when latestRevision is {_go_value(bool(latest))}"
            causes.append(Cause(message, (join_path(target_path, "latestRevision"),)))
        if default_configuration and configuration:
            causes.append(_disallowed(join_path(target_path, "configurationName")))
        elif revision and configuration:
            causes.append(
                _one_of_multiple(join_path(target_path, "revisionName"), join_path(target_path, "configurationName"))
            )
        elif not revision and not configuration and not default_configuration:
            causes.append(
                _one_of_missing(join_path(target_path, "revisionName"), join_path(target_path, "configurationName"))
            )
        percent = target.get("percent")
        if percent is not None:
            number = _int_value(percent)
            if number is None:
                causes.append(_invalid(percent, join_path(target_path, "percent")))
            else:
                total += number
                if number < 0 or number > 100:
                    causes.append(_out_of_bounds(number, 0, 100, join_path(target_path, "percent")))
        if target.get("url"):
            causes.append(_disallowed(join_path(target_path, "url")))
        tag = target.get("tag") or ""
        if not tag:
            continue
        errors = dns1035_errors(tag)
        if errors:
            causes.append(_invalid(f"not a DNS 1035 label: {_go_list(errors)}", join_path(path, f"tag[{index}]")))
        if tag in tags:
            paths = (join_path(path, f"[{index}].tag"), join_path(path, f"[{tags[tag]}].tag"))
            causes.append(Cause(f"Multiple definitions for {_quote(tag)}", paths))
        else:
            tags[tag] = index
    if total != 100:
        causes.append(Cause(f"Traffic targets sum to {total}, want 100", (path,)))
    return causes


def _owned_by(metadata: dict, kind: str, name: str) -> bool:
    return any(
        isinstance(ref, dict) and ref.get("kind") == kind and ref.get("name") == name
        for ref in metadata.get("ownerReferences") or []
    )


def _validate_parent_labels(metadata: dict, owner_label: str, owner_kind: str) -> list[Cause]:
    """validateLabels of a Configuration, Route or Revision (Knative v0.50): only the owner label is
    checked, against the ownerReferences. Other labels, `serving.knative.dev/*` ones and the
    visibility label included, are not checked."""
    labels = _as_dict(metadata.get("labels"))
    if owner_label in labels and not _owned_by(metadata, owner_kind, str(labels[owner_label])):
        return [_missing(join_path("metadata.labels", owner_label))]
    return []


def validate_creator_and_modifier(old: dict, new: dict) -> list[Cause]:
    """apis.ValidateCreatorAndModifier: creator never changes; lastModifier only with the spec."""
    old_annotations = _as_dict(old.get("metadata")).get("annotations") or {}
    new_annotations = _as_dict(new.get("metadata")).get("annotations") or {}
    if not old_annotations or not new_annotations:
        return []
    causes = []
    if old_annotations.get(CREATOR_ANNOTATION) != new_annotations.get(CREATOR_ANNOTATION):
        causes.append(Cause("annotation value is immutable", (join_path("metadata.annotations", CREATOR_ANNOTATION),)))
    if old.get("spec") == new.get("spec"):
        new_modifier = new_annotations.get(LAST_MODIFIER_ANNOTATION, "")
        if old_annotations.get(LAST_MODIFIER_ANNOTATION, "") != new_modifier:
            causes.append(_invalid(new_modifier, join_path("metadata.annotations", LAST_MODIFIER_ANNOTATION)))
    return causes


def _short_diff(old: Any, new: Any) -> str:
    return "\n".join(
        [
            "-: " + json.dumps(old, sort_keys=True, separators=(",", ":")),
            "+: " + json.dumps(new, sort_keys=True, separators=(",", ":")),
        ]
    )


def verify_name_change(old_template: dict, new_template: dict, path: str) -> list[Cause]:
    """A BYO revision name must change whenever the template does."""
    name = _as_dict(new_template.get("metadata")).get("name") or ""
    if not name or name != (_as_dict(old_template.get("metadata")).get("name") or ""):
        return []
    if old_template == new_template:
        return []
    return [
        Cause(
            "Saw the following changes without a name change (-old +new)",
            (join_path(path, "metadata.name"),),
            _short_diff(old_template, new_template),
        )
    ]


def validate_service(obj: dict, old: dict | None, *, operation: str, config: KnativeConfig) -> list[Cause]:
    metadata = _as_dict(obj.get("metadata"))
    spec = _as_dict(obj.get("spec"))
    # Knative v0.50 checks no label of a Service (its Route and Configuration check theirs).
    causes = validate_object_metadata(metadata, "metadata")
    causes += validate_no_autoscaling_annotations(_as_dict(metadata.get("annotations")), "metadata.annotations")
    causes += validate_template(_as_dict(spec.get("template")), metadata, "spec.template", config)
    causes += validate_traffic(spec.get("traffic"), "spec.traffic", default_configuration=True)
    if operation == "UPDATE" and old is not None:
        causes += validate_creator_and_modifier(old, obj)
        old_template = _as_dict(_as_dict(old.get("spec")).get("template"))
        causes += verify_name_change(old_template, _as_dict(spec.get("template")), "spec.template")
    return causes


def validate_configuration(obj: dict, old: dict | None, *, operation: str, config: KnativeConfig) -> list[Cause]:
    metadata = _as_dict(obj.get("metadata"))
    spec = _as_dict(obj.get("spec"))
    causes = validate_object_metadata(metadata, "metadata")
    causes += _validate_parent_labels(metadata, f"{GROUP}/service", "Service")
    causes += validate_no_autoscaling_annotations(_as_dict(metadata.get("annotations")), "metadata.annotations")
    causes += validate_template(_as_dict(spec.get("template")), metadata, "spec.template", config)
    if operation == "UPDATE" and old is not None:
        if not metadata.get("ownerReferences"):
            causes += validate_creator_and_modifier(old, obj)
        old_template = _as_dict(_as_dict(old.get("spec")).get("template"))
        causes += verify_name_change(old_template, _as_dict(spec.get("template")), "spec.template")
    return causes


def validate_route(obj: dict, old: dict | None, *, operation: str, config: KnativeConfig) -> list[Cause]:
    metadata = _as_dict(obj.get("metadata"))
    causes = validate_object_metadata(metadata, "metadata")
    causes += _validate_parent_labels(metadata, f"{GROUP}/service", "Service")
    causes += validate_traffic(_as_dict(obj.get("spec")).get("traffic"), "spec.traffic", default_configuration=False)
    if operation == "UPDATE" and old is not None and not metadata.get("ownerReferences"):
        causes += validate_creator_and_modifier(old, obj)
    return causes


def validate_revision(obj: dict, old: dict | None, *, operation: str, config: KnativeConfig) -> list[Cause]:
    metadata = _as_dict(obj.get("metadata"))
    causes = validate_object_metadata(metadata, "metadata")
    causes += _validate_parent_labels(metadata, f"{GROUP}/configuration", "Configuration")
    causes += validate_autoscaling_annotations(_as_dict(metadata.get("annotations")), "metadata.annotations", config)
    if operation == "UPDATE" and old is not None:
        if old.get("spec") != obj.get("spec"):
            return [
                *causes,
                Cause("Immutable fields changed (-old +new)", ("spec",), _short_diff(old.get("spec"), obj.get("spec"))),
            ]
        return causes
    return [*causes, *validate_revision_spec(_as_dict(obj.get("spec")), "spec", config)]


# ---------------------------------------------------------------------------------------------
# Seed objects: the knative-serving ConfigMaps (the namespace is a base object of every sandbox)
# ---------------------------------------------------------------------------------------------


def _configmap(name: str, data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": SYSTEM_NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "knative-serving",
                "app.kubernetes.io/component": "controller",
            },
        },
        "data": dict(data),
    }


SEED_OBJECTS: list[dict] = [
    _configmap(
        "config-features",
        {
            key: FEATURE_DEFAULTS[key]
            for key in (
                "multi-container",
                "kubernetes.podspec-volumes-emptydir",
                "kubernetes.podspec-persistent-volume-claim",
                "kubernetes.podspec-persistent-volume-write",
                "kubernetes.podspec-volumes-hostpath",
                "kubernetes.podspec-volumes-csi",
                "kubernetes.podspec-init-containers",
                "kubernetes.podspec-securitycontext",
                "secure-pod-defaults",
            )
        },
    ),
    _configmap("config-deployment", DEPLOYMENT_DEFAULTS),
    _configmap("config-domain", {SANDBOX_DOMAIN: ""}),
    _configmap(
        "config-defaults",
        {
            key: DEFAULTS_DEFAULTS[key]
            for key in (
                "revision-timeout-seconds",
                "max-revision-timeout-seconds",
                "container-concurrency",
                "container-concurrency-max-limit",
                "allow-container-concurrency-zero",
                "enable-service-links",
                "container-name-template",
            )
        },
    ),
    _configmap("config-network", NETWORK_DEFAULTS),
    _configmap("config-autoscaler", AUTOSCALER_DEFAULTS),
]


# ---------------------------------------------------------------------------------------------
# Admission hooks: read the ConfigMaps at admission time, as the webhook's config store does
# ---------------------------------------------------------------------------------------------


async def read_configmap_data(api: ResourceAPI, name: str) -> dict[str, str]:
    """``data`` of a knative-serving ConfigMap; ``{}`` when it is absent (Knative's defaults apply)."""
    configmap = api.get_nowait(kinds.lookup("v1", "ConfigMap"), name, namespace=SYSTEM_NAMESPACE)
    return dict((configmap or {}).get("data") or {})


async def load_config(api: ResourceAPI) -> KnativeConfig:
    return KnativeConfig(
        features=await read_configmap_data(api, "config-features"),
        defaults=await read_configmap_data(api, "config-defaults"),
        autoscaler=await read_configmap_data(api, "config-autoscaler"),
    )


Defaulter = Callable[..., None]
Validator = Callable[..., list[Cause]]


def _defaulting_hook(defaulter: Defaulter) -> Callable[[dict, dict | None, AdmissionContext], Awaitable[None]]:
    async def hook(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
        # The webhook decodes the object into Go types first: a quantity that does not parse ends
        # the request there, before any defaulting or validation.
        spec = _as_dict(obj.get("spec"))
        pod_spec = spec if obj.get("kind") == "Revision" else _as_dict(spec.get("template")).get("spec")
        for quantity in pod_spec_quantities(pod_spec):
            problem = quantity_error(quantity)
            if problem:
                raise bad_request(
                    f'admission webhook "{DEFAULTING_WEBHOOK}" denied the request: mutation failed: '
                    f"cannot decode incoming new object: {problem}"
                )
        config = await load_config(ctx.api)
        defaulter(obj, old, operation=ctx.operation, user=ctx.user, config=config)

    return hook


def _validation_hook(validator: Validator) -> Callable[[dict, dict | None, AdmissionContext], Awaitable[None]]:
    async def hook(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
        causes = validator(obj, old, operation=ctx.operation, config=await load_config(ctx.api))
        if causes:
            # A webhook denial reaches the client as 400 BadRequest, not as a 422 from the API server.
            raise bad_request(denial_message(causes))

    return hook


HOOKS: dict[str, tuple[Defaulter, Validator]] = {
    "Service": (default_service, validate_service),
    "Configuration": (default_configuration, validate_configuration),
    "Route": (default_route, validate_route),
    "Revision": (default_revision, validate_revision),
}


def seed_objects(settings: object) -> list[dict]:
    return copy.deepcopy(SEED_OBJECTS)


def register_hooks() -> None:
    for kind, (defaulter, validator) in HOOKS.items():
        admission.register(
            f"{API_VERSION}/{kind}", default=_defaulting_hook(defaulter), validate=_validation_hook(validator)
        )
    resources.register_seed(seed_objects)


register_hooks()
