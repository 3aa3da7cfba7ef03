# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Knative Services: options → desired object, validation, write, readiness.

What the user owns is exactly what the options say; options left out are not managed, so the
values a defaulting webhook or another tool put on the Service never cause a change.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils import _validation
from ansible_collections.knlab.serverless.plugins.module_utils._client import write_or_fallback
from ansible_collections.knlab.serverless.plugins.module_utils._diff import (
    merge_patch,
    owned_diff,
    project,
    same,
    without_none,
)
from ansible_collections.knlab.serverless.plugins.module_utils._errors import (
    ApiError,
    Conflict,
    NotFound,
    ServerlessError,
)
from ansible_collections.knlab.serverless.plugins.module_utils._pods import (
    Finding,
    app_running_unready,
    as_result,
    claim_names,
    pod_finding,
)
from ansible_collections.knlab.serverless.plugins.module_utils._validation import (
    INT32_MAX,
    check_annotations,
    check_labels,
    check_range,
    check_wait_seconds,
    clean_path,
    has_control_characters,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    parse_image_reference,
    scalar_text,
)
from ansible_collections.knlab.serverless.plugins.module_utils._waiter import (
    Verdict,
    WaitFailed,
    WaitTimeout,
    wait_for,
)

API_VERSION = "serving.knative.dev/v1"
KIND = "Service"

VISIBILITY_LABEL = "networking.knative.dev/visibility"
MIN_SCALE = "autoscaling.knative.dev/min-scale"
MAX_SCALE = "autoscaling.knative.dev/max-scale"
# The pre-1.1 spellings still work, and lose to the kebab-case key when both are set (FACTS 1.4).
OLD_SPELLING = {
    MIN_SCALE: "autoscaling.knative.dev/minScale",
    MAX_SCALE: "autoscaling.knative.dev/maxScale",
}

# Knative's validation (FACTS 1.3): queue-proxy and profiling ports, injected variables, paths.
# How long the app's container may run unready before the wait calls it not listening (0: never).
MAX_LISTEN_TIMEOUT = 3600
# How often a rollout wait looks at the pods of the revision it waits for, and how many log lines
# a pod diagnosis carries.
PROBE_INTERVAL = 2.0
DIAGNOSIS_LOG_LINES = 10
REVISION_LABEL = "serving.knative.dev/revision"
RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091, 8008})
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
RESERVED_MOUNT_PATHS = frozenset({"/", "/dev", "/dev/log"})
# How long a Ready=False may last before the wait believes it (kn's --wait-window is 2 s).
MAX_WAIT_WINDOW = 600
VOLUME_SOURCES = {
    "persistent_volume_claim": "persistentVolumeClaim",
    "config_map": "configMap",
    "secret": "secret",
    "empty_dir": "emptyDir",
}
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)")
_QUANTITY_FACTOR = {
    None: Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


InvalidOption = _validation.InvalidOption


# -- validation --------------------------------------------------------------------------------


def validate(params: dict[str, Any]) -> None:
    """Raise ``InvalidOption`` for anything the API server would reject or we cannot honour.

    Everything is judged from the options alone, so bad input never causes a request.
    """
    if not is_dns1035_label(params["name"]):
        raise InvalidOption(
            f"name {params['name']!r} is not a valid Knative Service name (DNS-1035 label): at most 63 lowercase "
            "letters, digits and '-', starting with a letter and ending with a letter or digit"
        )
    if not is_dns1123_label(params["namespace"]):
        raise InvalidOption(
            f"namespace {params['namespace']!r} is not a valid DNS-1123 label: at most 63 lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    if params.get("wait_timeout") is not None:
        check_wait_seconds("wait_timeout", params["wait_timeout"])
    if params.get("wait_window") is not None:
        check_range("wait_window", params["wait_window"], 0, MAX_WAIT_WINDOW)
    if params.get("wait_listen_timeout") is not None:
        check_range("wait_listen_timeout", params["wait_listen_timeout"], 0, MAX_LISTEN_TIMEOUT)
    if params["state"] != "present":
        return
    _check_image(params.get("image"))
    for option in ("min_scale", "max_scale", "concurrency"):
        if params.get(option) is not None:
            check_range(option, params[option], 0, INT32_MAX)
    min_scale, max_scale = params.get("min_scale"), params.get("max_scale")
    # max-scale 0 means "no upper bound" to Knative, so it never conflicts with min-scale.
    if min_scale is not None and max_scale and max_scale < min_scale:
        raise InvalidOption(f"max_scale ({max_scale}) is less than min_scale ({min_scale})")
    timeout = params.get("timeout_seconds")
    if timeout == 0:
        # Knative reads 0 as "the default" and stores the default: owning 0 would differ every run.
        raise InvalidOption("timeout_seconds must be at least 1; leave it out for Knative's default")
    if timeout is not None:
        # The upper limit is the cluster's max-revision-timeout-seconds (600 unless raised), which
        # Knative's webhook applies; only what no cluster can accept is refused here.
        check_range("timeout_seconds", timeout, 1, INT32_MAX)
    _check_port(params.get("port"))
    for option in ("command", "args"):
        for index, item in enumerate(params.get(option) or []):
            if "\x00" in item:
                raise InvalidOption(f"{option}[{index}] must not contain NUL characters")
    _check_annotations(params)
    _check_labels(params)
    if params.get("service_account"):
        _check_subdomain("service_account", params["service_account"])
    for index, secret in enumerate(params.get("image_pull_secrets") or []):
        _check_subdomain(f"image_pull_secrets[{index}]", secret)
    env = env_list(params.get("env"))
    reserved = sorted(RESERVED_ENV & {item["name"] for item in env})
    if reserved:
        raise InvalidOption(f"env must not set {', '.join(reserved)}: Knative sets these itself")
    _check_volumes(params.get("volumes"))
    _check_resources(params.get("resources"))
    _check_readiness_probe(params.get("readiness_probe"))


def _check_readiness_probe(probe: dict[str, Any] | None) -> None:
    """Knative's rules for a readiness probe (its k8s_validation), judged before any request."""
    if probe is None:
        return
    path = probe.get("path")
    if path is not None and (not path.startswith("/") or any(ch in path for ch in "\x00\r\n ")):
        raise InvalidOption(
            f"readiness_probe.path must be an absolute HTTP path without spaces or control characters, got {path!r}"
        )
    for option, low in (("initial_delay_seconds", 0), ("period_seconds", 0), ("success_threshold", 1)):
        if probe.get(option) is not None:
            check_range(f"readiness_probe.{option}", probe[option], low, INT32_MAX)
    period = probe.get("period_seconds") or 0
    for option in ("timeout_seconds", "failure_threshold"):
        if probe.get(option) is None:
            continue
        if not period:
            # Knative refuses both with period 0, the probe it repeats itself every 50 ms.
            raise InvalidOption(
                f"readiness_probe.{option} needs readiness_probe.period_seconds above 0: with 0 (the default) "
                "Knative's queue-proxy retries the check every 50 ms on each of the kubelet's probes"
            )
        check_range(f"readiness_probe.{option}", probe[option], 1, INT32_MAX)


def _check_image(image: Any) -> None:
    if not image:
        raise InvalidOption("image is required when state is present")
    reference = parse_image_reference(image)
    if reference is None:
        hint = "[host[:port]/]repository[:tag][@sha256:digest], with a lowercase repository"
        if isinstance(image, str) and (image != image.strip() or has_control_characters(image) or " " in image):
            hint = "an image reference has no spaces, newlines or other control characters"
        elif isinstance(image, str) and image.endswith(":"):
            hint = "the tag after ':' must not be empty"
        raise InvalidOption(f"image {image!r} is not a valid image reference: {hint}")


def _check_subdomain(option: str, value: str) -> None:
    if not is_dns1123_subdomain(value):
        raise InvalidOption(
            f"{option} {value!r} is not a valid Kubernetes object name (DNS-1123 subdomain): at most 253 lowercase "
            "letters, digits, '-' and '.', starting and ending with a letter or digit"
        )


def _check_port(port: Any) -> None:
    if port is None:
        return
    if isinstance(port, bool) or not 0 < port < 65536:
        raise InvalidOption(f"port must be between 1 and 65535, got {port}")
    if port in RESERVED_PORTS:
        raise InvalidOption(f"port {port} is reserved by Knative (queue-proxy and profiling ports)")


def _check_annotations(params: dict[str, Any]) -> None:
    annotations = params.get("annotations")
    if annotations is None:
        return
    check_annotations("annotations", annotations)
    for option, key in (("min_scale", MIN_SCALE), ("max_scale", MAX_SCALE)):
        given = {key, OLD_SPELLING[key]} & set(annotations)
        if params.get(option) is not None and given:
            raise InvalidOption(f"set either {option} or the annotation {sorted(given)[0]}, not both")


def _check_labels(params: dict[str, Any]) -> None:
    labels = params.get("labels")
    if labels is None:
        return
    check_labels("labels", labels)
    if VISIBILITY_LABEL in labels:
        raise InvalidOption(f"labels must not set {VISIBILITY_LABEL}: use cluster_local instead")


ENV_VALUE_FROM_SOURCES = ("configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef")


def env_list(env: Any) -> list[dict[str, Any]]:
    """``env`` as Kubernetes EnvVars: a dict maps names to values; a list is taken as EnvVars."""
    if env is None:
        return []
    if isinstance(env, dict):
        return _unique([_env_var(name, {"value": value}) for name, value in env.items()])
    if not isinstance(env, list):
        raise InvalidOption("env must be a dict of name: value or a list of EnvVar dicts")
    result = []
    for index, item in enumerate(env):
        if not isinstance(item, dict) or "name" not in item:
            raise InvalidOption(f"env[{index}] needs a name (an EnvVar dict), got {item!r}")
        unknown = set(item) - {"name", "value", "valueFrom"}
        if unknown:
            raise InvalidOption(f"env item {item['name']!r} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
        if ("value" in item) == ("valueFrom" in item):
            raise InvalidOption(f"env item {item['name']!r} needs exactly one of value or valueFrom")
        result.append(_env_var(item["name"], item))
    return _unique(result)


def _env_var(name: Any, item: dict[str, Any]) -> dict[str, Any]:
    if not is_env_var_name(name):
        raise InvalidOption(
            f"env name {name!r} is not a valid environment variable name: letters, digits, '_', '-' and '.', "
            "not starting with a digit"
        )
    if "valueFrom" in item:
        return {"name": name, "value": None, "valueFrom": _env_value_from(name, item["valueFrom"])}
    return {"name": name, "value": _env_value(name, item["value"]), "valueFrom": None}


def _env_value_from(name: str, source: Any) -> dict[str, Any]:
    if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in ENV_VALUE_FROM_SOURCES:
        raise InvalidOption(
            f"env {name!r} valueFrom must be a dict with exactly one of {', '.join(ENV_VALUE_FROM_SOURCES)}"
        )
    kind, ref = next(iter(source.items()))
    if not isinstance(ref, dict) or not ref:
        raise InvalidOption(f"env {name!r} valueFrom.{kind} must be a dict")
    return source


def _unique(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = [item["name"] for item in result]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidOption(f"env sets {', '.join(duplicates)} more than once")
    return result


def _env_value(name: str, value: Any) -> str | None:
    # EnvVar.value is omitempty: the server stores "" as no value, so "" is owned as "absent".
    if value is None or value == "":
        return None
    # Kubernetes wants strings; YAML booleans become what a shell script expects.
    text = scalar_text(value, f"env {name!r} value")
    if "\x00" in text:
        raise InvalidOption(f"env {name!r} value must not contain NUL characters")
    return text


def _check_volumes(volumes: list[dict[str, Any]] | None) -> None:
    names: set[str] = set()
    paths: set[str] = set()
    for volume in volumes or []:
        name, path = volume["name"], volume["mount_path"]
        if not is_dns1123_label(name):
            raise InvalidOption(f"volume name {name!r} is not a valid DNS-1123 label")
        if name in names:
            raise InvalidOption(f"volume {name!r} is listed more than once")
        names.add(name)
        if not path.startswith("/"):
            raise InvalidOption(f"mount_path of volume {name!r} must be absolute, got {path!r}")
        if has_control_characters(path):
            raise InvalidOption(f"mount_path of volume {name!r} must not contain control characters: {path!r}")
        # Knative compares paths as Go's path.Clean leaves them: /dev/../ is / and /dev//log is /dev/log.
        normalized = clean_path(path)
        if normalized in RESERVED_MOUNT_PATHS:
            raise InvalidOption(f"mount_path {path!r} of volume {name!r} is reserved by Knative ({normalized})")
        if normalized in paths:
            raise InvalidOption(f"mount_path {path!r} is used by more than one volume")
        paths.add(normalized)
        sources = [option for option in VOLUME_SOURCES if volume.get(option) is not None]
        if len(sources) != 1:
            raise InvalidOption(f"volume {name!r} needs exactly one of {', '.join(VOLUME_SOURCES)}")
        source = sources[0]
        if source in ("config_map", "secret") and volume.get("read_only") is False:
            raise InvalidOption(f"volume {name!r}: Knative always mounts {source} volumes read-only")
        if source == "empty_dir":
            size = (volume["empty_dir"] or {}).get("size_limit")
            if size is not None and not _non_negative_quantity(size):
                raise InvalidOption(
                    f"volume {name!r}: empty_dir.size_limit {size!r} is not a Kubernetes quantity such as 64Mi or 1Gi"
                )
        else:
            _check_subdomain(f"volume {name!r} {source}", volume[source])


def _non_negative_quantity(value: Any) -> bool:
    quantity = parse_quantity(value)
    return quantity is not None and quantity >= 0


def _check_resources(resources: dict[str, Any] | None) -> None:
    parsed: dict[str, dict[str, Decimal]] = {}
    for section, quantities in (resources or {}).items():
        if quantities is None:
            continue
        if section not in ("requests", "limits"):
            raise InvalidOption(f"resources takes requests and limits, not {section!r}")
        if not isinstance(quantities, dict):
            raise InvalidOption(f"resources.{section} must be a dict of resource name: quantity")
        for resource, quantity in quantities.items():
            if not is_qualified_name(resource):
                raise InvalidOption(
                    f"resources.{section} has an invalid resource name {resource!r}: use cpu, memory, "
                    "ephemeral-storage or a domain-prefixed extended resource"
                )
            value = parse_quantity(quantity)
            if value is None:
                raise InvalidOption(f"resources.{section}.{resource}: {quantity!r} is not a Kubernetes quantity")
            if value < 0:
                raise InvalidOption(f"resources.{section}.{resource} must not be negative, got {quantity!r}")
            parsed.setdefault(section, {})[resource] = value
    for resource, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(resource)
        if limit is not None and request > limit:
            raise InvalidOption(
                f"resources.requests.{resource} ({request}) is more than resources.limits.{resource} ({limit})"
            )


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (``500m``, ``1Gi``, ``1e3``, 2) as a number; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    match = _QUANTITY.fullmatch(str(value).strip())
    if not match:
        return None
    number, exponent, suffix = match.groups()
    try:
        if exponent:
            return Decimal(number + exponent)
        return Decimal(number) * _QUANTITY_FACTOR[suffix]
    except InvalidOperation:
        return None


# -- the desired object -------------------------------------------------------------------------


def desired_service(params: dict[str, Any]) -> dict[str, Any]:
    """The owned part of the Service: only what the options set (``None`` = must be absent)."""
    container = _container(params)
    template_spec: dict[str, Any] = {"containers": [container]}
    if params.get("service_account") is not None:
        # serviceAccountName is omitempty: "" (the namespace's default account) is stored as absent.
        template_spec["serviceAccountName"] = params["service_account"] or None
    _set(template_spec, "containerConcurrency", params.get("concurrency"))
    _set(template_spec, "timeoutSeconds", params.get("timeout_seconds"))
    if params.get("image_pull_secrets") is not None:
        template_spec["imagePullSecrets"] = _owned_list([{"name": name} for name in params["image_pull_secrets"]])
    if params.get("volumes") is not None:
        template_spec["volumes"] = _owned_list([_volume(volume) for volume in params["volumes"]])

    template: dict[str, Any] = {"spec": template_spec}
    annotations = _template_annotations(params)
    if annotations:
        template["metadata"] = {"annotations": annotations}

    labels = {str(key): str(value) for key, value in (params.get("labels") or {}).items()}
    # cluster_local is a yes/no the module owns: false removes a visibility label set earlier.
    labels[VISIBILITY_LABEL] = "cluster-local" if params.get("cluster_local") else None
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": params["name"], "namespace": params["namespace"], "labels": labels},
        "spec": {"template": template},
    }


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _owned_list(items: list[Any]) -> list[Any] | None:
    """A list option as the desired value: ``[]`` becomes ``None``, "must be absent".

    Knative's webhook round-trips objects through Go types, so an empty list is never stored:
    ``[]`` in the desired object would differ from the live one on every run. ``None`` matches
    a Service without the list, and when the live one has items it makes the merge patch send
    ``null``, which deletes the key: the user's ``[]`` clears the list.
    """
    return items or None


def _container(params: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = {"image": params["image"]}
    for option in ("command", "args"):
        if params.get(option) is not None:
            container[option] = _owned_list(list(params[option]))
    if params.get("env") is not None:
        container["env"] = _owned_list(env_list(params["env"]))
    if params.get("port") is not None:
        container["ports"] = [{"containerPort": params["port"]}]
    if params.get("resources") is not None:
        container["resources"] = {
            section: {name: _quantity_text(value) for name, value in quantities.items()}
            for section, quantities in params["resources"].items()
            if quantities is not None
        }
    if params.get("volumes") is not None:
        container["volumeMounts"] = _owned_list([_mount(volume) for volume in params["volumes"]])
    if params.get("readiness_probe") is not None:
        container["readinessProbe"] = readiness_probe(params["readiness_probe"])
    return container


def readiness_probe(probe: dict[str, Any]) -> dict[str, Any]:
    """The container's ``readinessProbe``, owned whole, as Knative stores it after its defaults.

    Knative fills in a TCP check, ``successThreshold: 1`` and, when ``periodSeconds`` is set,
    ``timeoutSeconds: 1`` and ``failureThreshold: 3`` (RevisionSpec.SetDefaults). Writing those
    same values, and ``None`` (must be absent) for every other key, keeps a re-run unchanged and
    lets a later run take a setting away again: a key left unowned would survive from the last
    write, and Knative refuses a timeout or failure threshold next to ``periodSeconds: 0``.
    """
    period = probe.get("period_seconds") or 0
    path = probe.get("path")
    return {
        # An HTTP GET of the path on the serving port, else a TCP connect to it (the port is
        # Knative's to fill in: the container's port).
        "httpGet": {"path": path} if path else None,
        "tcpSocket": None if path else {},
        "grpc": None,
        "exec": None,
        "initialDelaySeconds": probe.get("initial_delay_seconds") or None,
        "periodSeconds": period or None,
        "timeoutSeconds": (probe.get("timeout_seconds") or 1) if period else None,
        "failureThreshold": (probe.get("failure_threshold") or 3) if period else None,
        "successThreshold": probe.get("success_threshold") or 1,
    }


def _quantity_text(value: Any) -> str:
    return str(value).strip()


def _template_annotations(params: dict[str, Any]) -> dict[str, Any]:
    annotations: dict[str, Any] = {str(k): str(v) for k, v in (params.get("annotations") or {}).items()}
    for option, key in (("min_scale", MIN_SCALE), ("max_scale", MAX_SCALE)):
        if params.get(option) is not None:
            annotations[key] = str(params[option])
            # Write the current key only: the old spelling goes, so one value is left to read.
            annotations[OLD_SPELLING[key]] = None
    return annotations


def _volume(volume: dict[str, Any]) -> dict[str, Any]:
    # Every source key is owned: switching a volume from configMap to secret must drop configMap.
    result: dict[str, Any] = {"name": volume["name"], **dict.fromkeys(VOLUME_SOURCES.values())}
    if volume.get("persistent_volume_claim") is not None:
        # Owned either way: a claim made writable again must lose readOnly, or Knative refuses a
        # read-only claim behind a writable mount. false is stored as absent (omitempty).
        result["persistentVolumeClaim"] = {
            "claimName": volume["persistent_volume_claim"],
            "readOnly": True if volume.get("read_only") else None,
        }
    elif volume.get("config_map") is not None:
        result["configMap"] = {"name": volume["config_map"]}
    elif volume.get("secret") is not None:
        result["secret"] = {"secretName": volume["secret"]}
    else:
        empty_dir = volume.get("empty_dir") or {}
        result["emptyDir"] = without_none(
            {"medium": empty_dir.get("medium") or None, "sizeLimit": empty_dir.get("size_limit")}
        )
    return result


def _mount(volume: dict[str, Any]) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": volume["name"], "mountPath": volume["mount_path"]}
    if volume.get("read_only") is not None:
        # readOnly is omitempty: the webhook's Go round trip stores false as absent, so false is
        # owned as "absent" (and removes a true set earlier).
        mount["readOnly"] = True if volume["read_only"] else None
    return mount


def align_quantities(desired: dict[str, Any], live: dict[str, Any] | None) -> None:
    """Take the server's spelling of quantities that equal ours.

    The API server stores quantities in canonical form (``1000m`` becomes ``1``, ``1024Mi``
    becomes ``1Gi``): in resources and in an emptyDir's ``sizeLimit``.
    """
    if live is None:
        return
    live_spec = ((live.get("spec") or {}).get("template") or {}).get("spec") or {}
    live_volumes = {volume.get("name"): volume for volume in live_spec.get("volumes") or [] if isinstance(volume, dict)}
    for volume in desired["spec"]["template"]["spec"].get("volumes") or []:
        wanted = volume.get("emptyDir") or {}
        current = (live_volumes.get(volume["name"]) or {}).get("emptyDir") or {}
        same_size = "sizeLimit" in wanted and "sizeLimit" in current
        if same_size and parse_quantity(current["sizeLimit"]) == parse_quantity(wanted["sizeLimit"]):
            wanted["sizeLimit"] = current["sizeLimit"]
    live_containers = live_spec.get("containers") or []
    desired_containers = desired["spec"]["template"]["spec"]["containers"]
    for wanted, current in _pairs(desired_containers, live_containers):
        for section, quantities in (wanted.get("resources") or {}).items():
            current_section = (current.get("resources") or {}).get(section) or {}
            for name, value in quantities.items():
                if name in current_section and parse_quantity(current_section[name]) == parse_quantity(value):
                    quantities[name] = current_section[name]


def _pairs(desired: list[Any], live: list[Any]) -> list[tuple[Any, Any]]:
    """Items paired by position, as the diff pairs containers (no zip(strict=): Python 3.9 targets)."""
    return [(item, live[index]) for index, item in enumerate(desired) if index < len(live)]


# -- readiness ----------------------------------------------------------------------------------


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") == kind), None)


def readiness(obj: dict[str, Any] | None) -> Verdict | None:
    """Done on Ready=True for the current generation; terminal on Ready=False for it."""
    if obj is None:
        return Verdict(False, True, "Deleted", "the Service was deleted while waiting for it")
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    observed = int((obj.get("status") or {}).get("observedGeneration") or 0)
    if observed < generation:
        return None  # the status still describes an older spec
    ready = _condition(obj, "Ready")
    if ready is None or ready.get("status") == "Unknown":
        return None
    if ready.get("status") == "True":
        return Verdict(True, False, "Ready", ready.get("message") or "")
    return Verdict(False, True, ready.get("reason") or "NotReady", _failure_detail(obj, ready))


def _failure_detail(obj: dict[str, Any], ready: dict[str, Any]) -> str:
    """Ready's message plus what ConfigurationsReady/RoutesReady add to it."""
    parts = [ready.get("message") or ""]
    for kind in ("ConfigurationsReady", "RoutesReady"):
        condition = _condition(obj, kind)
        if condition is None or condition.get("status") != "False":
            continue
        text = ": ".join(str(condition[key]) for key in ("reason", "message") if condition.get(key))
        if condition.get("message") and condition["message"] in parts[0]:
            continue  # Ready copies its message from one of these; do not say it twice
        parts.append(f"{kind}=False ({text})")
    return "; ".join(part for part in parts if part)


def is_cluster_local_url(obj: dict[str, Any]) -> bool:
    """Whether the Service's URL is its cluster-local one (``<name>.<namespace>.svc.<cluster domain>``)."""
    metadata = obj.get("metadata") or {}
    url = str((obj.get("status") or {}).get("url") or "")
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return host.startswith(f"{metadata.get('name')}.{metadata.get('namespace')}.svc.")


def _ready_with_visibility(cluster_local: bool) -> Any:
    """Readiness, and a URL that already shows the visibility asked for."""

    def check(obj: dict[str, Any] | None) -> Verdict | None:
        verdict = readiness(obj)
        if verdict is not None and verdict.done and obj is not None and is_cluster_local_url(obj) != cluster_local:
            return None  # Ready, but the Route has not switched the URL yet
        return verdict

    return check


class RolloutProbe:
    """The waiter's probe for a rollout: what the pods of the newest revision show.

    Knative reports a pull error or a crash loop only after the progress deadline (600 s by
    default); the pods show it within seconds. A final finding (``_pods.pod_finding``) ends the
    wait with the container, its image, the kubelet's message and the last log lines; any other
    finding goes into the message of a later failure or timeout.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        listen_timeout: float,
        clock: Any = time.monotonic,
        *,
        stale_revision: str | None = None,
    ) -> None:
        self.client = client
        # The newest revision before this run changed the Service: until Knative reports the one
        # the change creates, the status still names this one, and its pods say nothing about it.
        self.stale_revision = stale_revision
        self.namespace = namespace
        self.listen_timeout = listen_timeout
        self.clock = clock
        self.running_since: dict[tuple[str, str, int], float] = {}
        self.result: dict[str, Any] | None = None  # the ``diagnosis`` return value

    @staticmethod
    def revision(obj: dict[str, Any] | None) -> str | None:
        """The revision the Service rolls out, once its status describes the current spec."""
        if obj is None:
            return None
        status = obj.get("status") or {}
        if int(status.get("observedGeneration") or 0) < int((obj.get("metadata") or {}).get("generation") or 0):
            return None
        return status.get("latestCreatedRevisionName") or None

    def __call__(self, obj: dict[str, Any] | None) -> Verdict | None:
        revision = self.revision(obj)
        if revision is None or revision == self.stale_revision:
            return None
        pods, _version = self.client.list("v1", "Pod", self.namespace, label_selector=f"{REVISION_LABEL}={revision}")
        findings = [finding for finding in (self._finding(pod) for pod in pods) if finding is not None]
        if not findings:
            self.result = None
            return None
        finding = sorted(findings, key=lambda f: not f.final)[0]
        tail, log_error = self._log_tail(finding) if finding.final else ([], None)
        self.result = as_result(finding, tail, log_error)
        message = f"revision {revision}, pod {finding.pod}: {finding.message}"
        if tail:
            message += f"; last log line: {tail[-1]}"
        return Verdict(False, finding.final, finding.reason, message)

    def _finding(self, pod: dict[str, Any]) -> Any:
        name = pod_name(pod)
        running = app_running_unready(pod)
        running_for = 0.0
        if running is not None:
            now = self.clock()
            running_for = now - self.running_since.setdefault((name, *running), now)
        finding = pod_finding(pod, running_for, self.listen_timeout)
        if finding is not None and finding.reason == "Unschedulable":
            return self._claim_finding(pod, finding.message) or finding
        return finding

    def _claim_finding(self, pod: dict[str, Any], unscheduled: str) -> Any:
        for claim in claim_names(pod):
            found = self.client.get_or_none("v1", "PersistentVolumeClaim", claim, self.namespace)
            phase = ((found or {}).get("status") or {}).get("phase")
            if found is None or phase == "Pending":
                state = "does not exist" if found is None else "is Pending"
                storage_class = ((found or {}).get("spec") or {}).get("storageClassName")
                where = f" (storage class {storage_class})" if storage_class else ""
                message = f"{unscheduled}; it waits for PersistentVolumeClaim {claim}, which {state}{where}"
                return Finding(False, "ClaimPending", message, pod_name(pod), "", "", 0, None, False)
        return None

    def _log_tail(self, finding: Any) -> tuple[list[str], str | None]:
        if not finding.container or finding.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
            return [], None
        try:
            text = self.client.pod_log(
                finding.pod,
                self.namespace,
                container=finding.container,
                tail_lines=DIAGNOSIS_LOG_LINES,
                previous=finding.previous_log,
            )
        except ApiError as err:
            return [], f"log of {finding.container} unavailable: {err.msg}"
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return (text or "").splitlines()[-DIAGNOSIS_LOG_LINES:], None


def _without_managed_fields(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object without ``metadata.managedFields``: server bookkeeping nobody reads in a result."""
    if obj is None or "managedFields" not in (obj.get("metadata") or {}):
        return obj
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


def pod_name(pod: dict[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("name") or ""


def _gone(obj: dict[str, Any] | None) -> Verdict | None:
    return Verdict(True, False, "Deleted", "") if obj is None else None


# -- the action ---------------------------------------------------------------------------------


class ServiceReconciler:
    """Make one Knative Service match the module's options (or be absent) and report on it."""

    def __init__(self, client: Any, params: dict[str, Any], *, check_mode: bool, warn: Any = None) -> None:
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.warn = warn or (lambda _msg: None)
        self.name = params["name"]
        self.namespace = params["namespace"]
        self.started = time.monotonic()
        self.changed = False

    @property
    def where(self) -> str:
        return f"Knative Service {self.namespace}/{self.name}"

    def read(self) -> dict[str, Any] | None:
        return self.client.get_or_none(API_VERSION, KIND, self.name, self.namespace)

    # -- present -----------------------------------------------------------------------------------

    def present(self) -> dict[str, Any]:
        desired = desired_service(self.params)
        live = self.read()
        live_labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        # A visibility change is a label change: it does not bump the generation, so Ready=True
        # at the current generation can still carry the old URL until the Route catches up.
        visibility_changed = (
            live is not None and live_labels.get(VISIBILITY_LABEL) != (desired["metadata"]["labels"][VISIBILITY_LABEL])
        )
        obj, diff = self._converge(desired, live)
        if self.params["wait"] and not self.check_mode:
            # After a write, the revision the Service named before it is not the one rolling out.
            stale = ((live or {}).get("status") or {}).get("latestCreatedRevisionName") if self.changed else None
            obj = self._wait_ready(
                obj, bool(self.params.get("cluster_local")) if visibility_changed else None, stale_revision=stale
            )
        return self._result(obj, diff)

    def _converge(self, desired: dict[str, Any], live: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict]:
        for attempt in (1, 2):
            try:
                return self._write_once(desired, live)
            except Conflict:
                # Someone wrote in between (or created it first): read again and redo the
                # comparison once; a second conflict means a writer is fighting us.
                if attempt == 2:
                    raise
                live = self.read()
        raise AssertionError("unreachable")

    def _write_once(self, desired: dict[str, Any], live: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict]:
        if live is not None and (live.get("metadata") or {}).get("deletionTimestamp"):
            raise ServerlessError(f"{self.where} is being deleted; run again once it is gone")
        align_quantities(desired, live)
        changed, before, after = owned_diff(desired, live)
        diff = {"before": before, "after": after if changed else before}
        if not changed:
            return live, diff
        self._warn_old_spellings(live)
        self.changed = True
        if live is None:
            body = without_none(desired)
            return self._dry_run_or(lambda: self.client.create(API_VERSION, KIND, body, self.namespace), body), diff
        # Write strategy: a JSON merge patch of the owned metadata and spec.template, carrying the
        # resourceVersion we read. Lists (containers, env, volumes) are sent whole, rebuilt from
        # the live object so webhook defaults and unowned keys inside them survive; the
        # resourceVersion makes that read-modify-write safe (a concurrent writer gives 409, and we
        # re-read once). A PUT would have to round-trip the whole object, including status and
        # fields of other writers; a merge patch touches only what we own.
        patch = merge_patch(desired, live)
        self._release_revision_name(desired, live, patch)
        patch["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        for key in ("apiVersion", "kind"):
            patch.pop(key, None)
        patch["metadata"].pop("name", None)
        patch["metadata"].pop("namespace", None)
        written = self._dry_run_or(lambda: self.client.patch(API_VERSION, KIND, self.name, patch, self.namespace), live)
        return written, diff

    def _release_revision_name(self, desired: dict[str, Any], live: dict[str, Any], patch: dict[str, Any]) -> None:
        """Drop a revision name the template carries (``kn --revision-name``) when the template changes.

        Knative names the next revision after ``spec.template.metadata.name`` and refuses a template
        change under the same name (VerifyNameChange): without the name, it names the new revision
        itself (``<service>-0000N``).
        """
        live_template = (live.get("spec") or {}).get("template") or {}
        name = (live_template.get("metadata") or {}).get("name")
        if not name or same(desired["spec"]["template"], live_template):
            return
        template = patch.setdefault("spec", {}).setdefault("template", {})
        template.setdefault("metadata", {})["name"] = None
        self.warn(f"{self.where}: its revisions were named ({name}); the new revision gets Knative's own name")

    def _dry_run_or(self, write: Any, fallback: dict[str, Any]) -> dict[str, Any]:
        """The write (a server dry run in check mode); a server that cannot dry-run gets no write."""
        return write_or_fallback(write, fallback, warn=self.warn, what=f"the change to {self.where}")

    def _warn_old_spellings(self, live: dict[str, Any] | None) -> None:
        annotations = (((live or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
        annotations = annotations.get("annotations") or {}
        for option, key in (("min_scale", MIN_SCALE), ("max_scale", MAX_SCALE)):
            old = OLD_SPELLING[key]
            if self.params.get(option) is not None and old in annotations:
                self.warn(f"{self.where}: replacing the old annotation {old} with {key}")

    def _wait_ready(
        self, obj: dict[str, Any] | None, cluster_local: bool | None = None, *, stale_revision: str | None = None
    ) -> dict[str, Any]:
        check = readiness if cluster_local is None else _ready_with_visibility(cluster_local)
        probe = RolloutProbe(
            self.client, self.namespace, self.params.get("wait_listen_timeout") or 0, stale_revision=stale_revision
        )
        try:
            return wait_for(
                self.client,
                API_VERSION,
                KIND,
                self.name,
                self.namespace,
                check,
                self.params["wait_timeout"],
                initial=obj,
                settle=self.params.get("wait_window") or 0,
                probe=probe,
                probe_interval=PROBE_INTERVAL,
            )
        except WaitFailed as err:
            msg = f"{self.where} is not ready: {err.msg}"
            if err.diagnosis is not None and err.diagnosis.message and err.diagnosis.message not in msg:
                msg += f"; {err.diagnosis.message}"
            raise ServerlessError(msg, **self._failure_result(err.obj, probe.result)) from err
        except WaitTimeout as err:
            raise ServerlessError(f"{self.where}: {err.msg}", **self._failure_result(err.obj, probe.result)) from err

    def _failure_result(self, obj: dict[str, Any] | None, diagnosis: dict[str, Any] | None = None) -> dict[str, Any]:
        # A failure carries what a person needs, never the whole object: its conditions, the
        # revisions, and what the pods showed.
        status = (obj or {}).get("status") or {}
        return {
            "changed": self.changed,
            "conditions": _conditions(obj or {}),
            "latest_created_revision": status.get("latestCreatedRevisionName"),
            "latest_ready_revision": status.get("latestReadyRevisionName"),
            "diagnosis": diagnosis,
        }

    def _result(self, obj: dict[str, Any] | None, diff: dict) -> dict[str, Any]:
        status = (obj or {}).get("status") or {}
        return {
            "changed": self.changed,
            "service": _without_managed_fields(obj),
            "url": status.get("url"),
            "address": (status.get("address") or {}).get("url"),
            "latest_created_revision": status.get("latestCreatedRevisionName"),
            "latest_ready_revision": status.get("latestReadyRevisionName"),
            "conditions": _conditions(obj or {}),
            "duration": round(time.monotonic() - self.started, 3),
            "diff": diff,
        }

    # -- absent ------------------------------------------------------------------------------------

    def absent(self) -> dict[str, Any]:
        live = self.read()
        if live is None:
            return self._result(None, {"before": {}, "after": {}})
        if (live.get("metadata") or {}).get("deletionTimestamp"):
            # Already being deleted (finalizers hold it): deleting again changes nothing, so only
            # wait for it to go, starting from the object just read.
            self._wait_gone(live)
            return self._result(None, {"before": {}, "after": {}})
        before = project(_summary_shape(), live)
        try:
            self._dry_run_or(lambda: self.client.delete(API_VERSION, KIND, self.name, self.namespace), live)
        except NotFound:
            return self._result(None, {"before": {}, "after": {}})  # someone else deleted it first
        self.changed = True
        self._wait_gone(None)
        self._wait_children_gone()
        return self._result(None, {"before": before, "after": {}})

    def _wait_gone(self, initial: dict[str, Any] | None) -> None:
        if not self.params["wait"] or self.check_mode:
            return
        try:
            wait_for(
                self.client,
                API_VERSION,
                KIND,
                self.name,
                self.namespace,
                _gone,
                self.params["wait_timeout"],
                initial=initial,
            )
        except WaitTimeout as err:
            raise ServerlessError(f"{self.where} was not deleted in time: {err.msg}", changed=self.changed) from err

    def _wait_children_gone(self) -> None:
        """Wait until the Route, the Configuration and the Revisions of the Service are gone too.

        The garbage collector deletes them in the background after the Service, and the Route
        holds a finalizer: a Service created again with the same name before they are gone finds
        children it does not own (``NotOwned``). So a delete with wait is done when they are.
        """
        if not self.params["wait"] or self.check_mode:
            return
        children = [("Route", self.name), ("Configuration", self.name)]
        selector = f"serving.knative.dev/service={self.name}"
        revisions = self.client.list(API_VERSION, "Revision", self.namespace, label_selector=selector)[0]
        children += [("Revision", (item.get("metadata") or {}).get("name")) for item in revisions]
        deadline = self.started + self.params["wait_timeout"]
        for kind, name in children:
            try:
                wait_for(
                    self.client, API_VERSION, kind, name, self.namespace, _gone, max(1.0, deadline - time.monotonic())
                )
            except WaitTimeout as err:
                raise ServerlessError(
                    f"{self.where} was deleted but its {kind} {name} is still there: {err.msg}", changed=self.changed
                ) from err


def _summary_shape() -> dict[str, Any]:
    """What the diff shows of a Service being deleted."""
    return {"metadata": {"name": None, "namespace": None, "labels": None}, "spec": {"template": None}}


def run_service(client: Any, params: dict[str, Any], *, check_mode: bool, warn: Any = None) -> dict[str, Any]:
    """Converge and report; ``params`` must have passed ``validate`` (before the client was built)."""
    reconciler = ServiceReconciler(client, params, check_mode=check_mode, warn=warn)
    return reconciler.present() if params["state"] == "present" else reconciler.absent()
