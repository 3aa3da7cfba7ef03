"""What the API accepts: the same objects sent as server-side dry runs to both targets.

Knative's and Tekton's admission (defaulting and validation webhooks on the cluster, their
re-implementation in the sandbox) must accept and refuse the same objects, and default what they
accept the same way. A dry run stores nothing, so these are cheap and leave no trace.
Observed per case: "accepted" or "refused", and for some accepted ones the field as stored.
"""

from __future__ import annotations

import copy
import json

import pytest

IMAGE = "registry.knlab.test/app@sha256:" + "0" * 64
NAMESPACE = "default"


def _service(name: str = "cf-admission") -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"template": {"spec": {"containers": [{"image": IMAGE}]}}},
    }


def _with(path: str, value, base: dict | None = None) -> dict:
    """A copy of base (a Service by default) with the dotted path set ("[0]" indexes a list)."""
    obj = copy.deepcopy(base or _service())
    keys = path.split(".")
    node = obj
    for key in keys[:-1]:
        node = node[int(key[1:-1])] if key.startswith("[") else node.setdefault(key, {})
    node[keys[-1]] = value
    return obj


def _template_annotation(key: str, value: str) -> dict:
    return _with("spec.template.metadata", {"annotations": {key: value}})


def _container(field: str, value) -> dict:
    obj = _service()
    obj["spec"]["template"]["spec"]["containers"][0][field] = value
    return obj


def _empty_dir(size_limit: str | None = None, read_only: bool | None = None) -> dict:
    obj = _service()
    spec = obj["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": size_limit} if size_limit else {}}]
    mount = {"name": "scratch", "mountPath": "/scratch"}
    if read_only is not None:
        mount["readOnly"] = read_only
    spec["containers"][0]["volumeMounts"] = [mount]
    return obj


def _taskrun(name: str = "cf-admission", step_name: str = "build") -> dict:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"taskSpec": {"steps": [{"name": step_name, "image": IMAGE, "args": ["x"]}]}},
    }


CASES = {
    # Names (issue 8 item 12).
    "service_name_dns1035": _service("cf-app"),
    "service_name_leading_digit": _service("1app"),
    "service_name_dotted": _service("cf.app"),
    # Template annotations (item 13).
    "networking_template_annotation": _template_annotation("networking.knative.dev/visibility", "cluster-local"),
    "progress_deadline_valid": _template_annotation("serving.knative.dev/progress-deadline", "30s"),
    "progress_deadline_malformed": _template_annotation("serving.knative.dev/progress-deadline", "soon"),
    "queue_sidecar_cpu_valid": _template_annotation("queue.sidecar.serving.knative.dev/cpu-resource-request", "25m"),
    "queue_sidecar_cpu_malformed": _template_annotation("queue.sidecar.serving.knative.dev/cpu-resource-request", "x"),
    "min_scale_malformed": _template_annotation("autoscaling.knative.dev/min-scale", "abc"),
    "activation_scale_one": _template_annotation("autoscaling.knative.dev/activation-scale", "1"),
    "activation_scale_zero": _template_annotation("autoscaling.knative.dev/activation-scale", "0"),
    # Labels on the Service (item 13).
    "service_serving_label": _with("metadata.labels", {"serving.knative.dev/custom": "x"}),
    "service_visibility_label": _with("metadata.labels", {"networking.knative.dev/visibility": "cluster-local"}),
    "service_visibility_label_unknown": _with("metadata.labels", {"networking.knative.dev/visibility": "public"}),
    # Limits that come from Knative's configuration (item 12).
    "timeout_zero": _with("spec.template.spec.timeoutSeconds", 0),
    "timeout_default_max": _with("spec.template.spec.timeoutSeconds", 600),
    "timeout_above_max": _with("spec.template.spec.timeoutSeconds", 601),
    "concurrency_zero": _with("spec.template.spec.containerConcurrency", 0),
    "concurrency_max": _with("spec.template.spec.containerConcurrency", 1000),
    "concurrency_above_max": _with("spec.template.spec.containerConcurrency", 1001),
    # Mount paths are cleaned before they are checked (path.Clean).
    "mount_path_reserved_dotdot": _with(
        "spec.template.spec.containers.[0].volumeMounts",
        [{"name": "scratch", "mountPath": "/dev/../dev/log"}],
        _empty_dir(),
    ),
    "mount_path_double_slash": _with(
        "spec.template.spec.containers.[0].volumeMounts",
        [{"name": "scratch", "mountPath": "/var//scratch"}],
        _empty_dir(),
    ),
    "port_named_h2c": _container("ports", [{"name": "h2c", "containerPort": 8080}]),
    "two_ports": _container("ports", [{"containerPort": 8080}, {"containerPort": 8081}]),
    "port_reserved_8012": _container("ports", [{"containerPort": 8012}]),
    # Defaulting round trips (item 8).
    "empty_dir_size_1024Mi": _empty_dir("1024Mi"),
    "empty_dir_size_half_gi": _empty_dir("0.5Gi"),
    "empty_dir_size_1000M": _empty_dir("1000M"),
    "mount_read_only_false": _empty_dir(read_only=False),
    "resources_canonical": _container(
        "resources",
        {"requests": {"cpu": "0.5", "memory": "1000Mi"}, "limits": {"cpu": "1500m", "memory": "1.5Gi"}},
    ),
    "resources_malformed": _container("resources", {"requests": {"cpu": "half"}}),
    # knative_service's readiness_probe writes these (and relies on how they are defaulted).
    "probe_period_1": _container("readinessProbe", {"periodSeconds": 1}),
    "probe_http_period_1": _container("readinessProbe", {"httpGet": {"path": "/healthz"}, "periodSeconds": 1}),
    "probe_timeout_without_period": _container("readinessProbe", {"timeoutSeconds": 2}),
    "probe_failure_threshold_without_period": _container("readinessProbe", {"failureThreshold": 1}),
    # Tekton (item 6: names are DNS-1123 subdomains of at most 63 characters).
    "taskrun_dotted_name": _taskrun("cf.admission.run"),
    "taskrun_name_64": _taskrun("cf-" + "a" * 61),
    "taskrun_step_name_upper": _taskrun(step_name="Build"),
    "taskrun_name_underscore": _taskrun("cf_admission"),
}

# What is kept of an accepted object: where defaulting and canonicalisation show.
STORED = {
    "empty_dir_size_1024Mi": lambda o: o["spec"]["template"]["spec"]["volumes"][0]["emptyDir"].get("sizeLimit"),
    "empty_dir_size_half_gi": lambda o: o["spec"]["template"]["spec"]["volumes"][0]["emptyDir"].get("sizeLimit"),
    "empty_dir_size_1000M": lambda o: o["spec"]["template"]["spec"]["volumes"][0]["emptyDir"].get("sizeLimit"),
    "mount_read_only_false": lambda o: o["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0].get(
        "readOnly", "(absent)"
    ),
    "resources_canonical": lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"],
    "probe_period_1": lambda o: o["spec"]["template"]["spec"]["containers"][0].get("readinessProbe"),
    "probe_http_period_1": lambda o: o["spec"]["template"]["spec"]["containers"][0].get("readinessProbe"),
    "timeout_zero": lambda o: o["spec"]["template"]["spec"].get("timeoutSeconds"),
    "concurrency_zero": lambda o: o["spec"]["template"]["spec"].get("containerConcurrency"),
    "service_name_dns1035": lambda o: {
        "timeoutSeconds": o["spec"]["template"]["spec"].get("timeoutSeconds"),
        "containerConcurrency": o["spec"]["template"]["spec"].get("containerConcurrency"),
        "readinessProbe": o["spec"]["template"]["spec"]["containers"][0].get("readinessProbe"),
        "traffic": o["spec"].get("traffic"),
        "container_name": o["spec"]["template"]["spec"]["containers"][0].get("name"),
    },
    "taskrun_dotted_name": lambda o: {
        "timeout": o["spec"].get("timeout"),
        "serviceAccountName": o["spec"].get("serviceAccountName"),
    },
}


def _refused_field(stderr: str) -> str:
    """Where a refusal points. A webhook's denial ends with the field path ("...: spec.x"); the API
    server's own ("The TaskRun "x" is invalid: metadata.name: Invalid value: ...") starts with it."""
    line = [text for text in stderr.splitlines() if text.strip()][-1]
    if " is invalid: " in line:
        return line.split(" is invalid: ", 1)[1].split(": ", 1)[0]
    return line.rsplit(": ", 1)[-1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_admission(target, observe, case: str) -> None:
    done = target.run(
        "kubectl", "apply", "--dry-run=server", "--server-side", "--field-manager=knlab-conformance",
        "-o", "json", "-f", "-",
        input=json.dumps(CASES[case]),
    )  # fmt: skip
    if done.returncode != 0:
        # A refusal is an answer from the API (kubectl's "Error from server"), not a broken call.
        assert "Error from server" in done.stderr or "is invalid" in done.stderr, done.output
        observe("verdict", "refused")
        observe("field", _refused_field(done.stderr))
        return
    observe("verdict", "accepted")
    if case in STORED:
        observe("stored", STORED[case](json.loads(done.stdout)))
