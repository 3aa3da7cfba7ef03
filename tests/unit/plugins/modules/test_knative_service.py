"""knative_service run as Ansible runs it (arguments in, JSON out) against a scripted fake cluster.

The fake applies Knative's defaulting webhook (FACTS 1.5) on every write, including its round trip
through Go types (empty lists and empty strings vanish), and a controller that reports the Service
ready, so idempotency is tested against what a real server returns.
"""

from __future__ import annotations

import copy
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.knlab.serverless.plugins.module_utils._errors import Conflict
from ansible_collections.knlab.serverless.plugins.module_utils._knative import API_VERSION, KIND
from ansible_collections.knlab.serverless.plugins.modules import knative_service
from fakes import FakeKubeClient, event, go_round_trip

IMAGE = "hub.default.svc.cluster.local/hello@sha256:" + "ab" * 32
BASE = {"name": "hello", "namespace": "default", "image": IMAGE, "port": 8080, "min_scale": 1, "env": {"A": "1"}}


def knative_webhook(obj: dict, old: dict | None) -> None:
    """What Knative's defaulting webhook adds to a Service (FACTS 1.5)."""
    template = obj["spec"].setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    spec = template.setdefault("spec", {})
    for container in spec.get("containers", []):
        container.setdefault("name", "user-container")
        container.setdefault("resources", {})
        probe = container.setdefault("readinessProbe", {})
        if not any(probe.get(handler) is not None for handler in ("httpGet", "tcpSocket", "grpc", "exec")):
            probe["tcpSocket"] = {}
        if "tcpSocket" in probe:
            probe["tcpSocket"].setdefault("port", 0)
        if "httpGet" in probe:
            probe["httpGet"].setdefault("port", 0)
        probe.setdefault("successThreshold", 1)
        if probe.get("periodSeconds"):
            probe.setdefault("failureThreshold", 3)
            probe.setdefault("timeoutSeconds", 1)
        # Knative's validation: a timeout or failure threshold needs periodSeconds above 0.
        if not probe.get("periodSeconds") and (probe.get("timeoutSeconds") or probe.get("failureThreshold")):
            raise AssertionError(f"Knative would refuse this probe: {probe}")
        for mount in container.get("volumeMounts", []):
            source = next(v for v in spec.get("volumes", []) if v["name"] == mount["name"])
            if "emptyDir" not in source and "persistentVolumeClaim" not in source:
                mount["readOnly"] = True
    spec.setdefault("containerConcurrency", 0)
    if not spec.get("timeoutSeconds"):
        spec["timeoutSeconds"] = 300
    if old is None:
        spec.setdefault("enableServiceLinks", False)
    obj["spec"].setdefault("traffic", [{"latestRevision": True, "percent": 100}])
    annotations = obj["metadata"].setdefault("annotations", {})
    if old is None:
        annotations["serving.knative.dev/creator"] = "kubernetes-admin"
    if old is None or old.get("spec") != obj.get("spec"):
        annotations["serving.knative.dev/lastModifier"] = "kubernetes-admin"
    go_round_trip(obj)


def ready_controller(obj: dict) -> None:
    name, generation = obj["metadata"]["name"], obj["metadata"]["generation"]
    revision = f"{name}-{generation:05d}"
    obj["status"] = {
        "observedGeneration": generation,
        "url": f"http://{name}.default.127.0.0.1.sslip.io",
        "address": {"url": f"http://{name}.default.svc.cluster.local"},
        "latestCreatedRevisionName": revision,
        "latestReadyRevisionName": revision,
        "conditions": [
            {"type": "ConfigurationsReady", "status": "True"},
            {"type": "Ready", "status": "True"},
            {"type": "RoutesReady", "status": "True"},
        ],
    }


def failing_controller(obj: dict) -> None:
    generation = obj["metadata"]["generation"]
    message = f'Revision "hello-{generation:05d}" failed with message: Unable to fetch image.'
    obj["status"] = {
        "observedGeneration": generation,
        "conditions": [
            {"type": "ConfigurationsReady", "status": "False", "reason": "RevisionFailed", "message": message},
            {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": message},
        ],
    }


@pytest.fixture
def cluster(monkeypatch):
    """The fake API server behind ``get_client``; ``clients`` records every client the module built."""
    client = FakeKubeClient(admit=knative_webhook, controller=ready_controller, watch_store=True)
    client.clients = []

    def get_client(module):
        client.dry_run = bool(module.check_mode)
        client.clients.append(client)
        return client

    monkeypatch.setattr(knative_service, "get_client", get_client)
    return client


def run_module(capsys, *, check_mode: bool = False, diff: bool = False, **args) -> dict:
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        knative_service.main()
    return json.loads(capsys.readouterr().out)


def stored(client: FakeKubeClient) -> dict | None:
    return client.stored(API_VERSION, KIND, "hello", "default")


def test_create_writes_kebab_case_keys_waits_and_reports(cluster, capsys):
    result = run_module(capsys, **BASE, cluster_local=True, labels={"app": "hello"})
    assert result["changed"] is True
    assert cluster.methods() == ["get", "create", "watch"]
    body = cluster.writes[0][1]["body"]
    assert body["spec"]["template"]["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "1"}
    assert body["metadata"]["labels"] == {"app": "hello", "networking.knative.dev/visibility": "cluster-local"}
    assert body["spec"]["template"]["spec"]["containers"] == [
        {"image": IMAGE, "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 8080}]}
    ]
    assert result["url"] == "http://hello.default.127.0.0.1.sslip.io"
    assert result["address"] == "http://hello.default.svc.cluster.local"
    assert (result["latest_created_revision"], result["latest_ready_revision"]) == ("hello-00001", "hello-00001")
    assert {c["type"]: c["status"] for c in result["conditions"]}["Ready"] == "True"
    assert isinstance(result["duration"], float)
    assert result["diff"]["before"] == {}
    assert result["service"]["metadata"]["name"] == "hello"


def test_second_run_against_the_defaulted_object_changes_nothing(cluster, capsys):
    run_module(capsys, **BASE)
    cluster.requests.clear()
    result = run_module(capsys, **BASE)
    assert result["changed"] is False
    assert cluster.writes == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert result["latest_ready_revision"] == "hello-00001"


def test_update_patches_owned_fields_with_the_resource_version_and_keeps_defaults(cluster, capsys):
    run_module(capsys, **BASE, command=["/bin/app"])
    version_read = stored(cluster)["metadata"]["resourceVersion"]
    cluster.requests.clear()
    result = run_module(capsys, **(BASE | {"image": "hello:2", "env": {"B": "2"}}))
    assert result["changed"] is True
    assert cluster.methods() == ["get", "patch", "watch"]
    patch = cluster.writes[0][1]["patch"]
    assert patch["metadata"]["resourceVersion"] == version_read
    live = stored(cluster)
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "hello:2"
    assert container["env"] == [{"name": "B", "value": "2"}]
    assert container["command"] == ["/bin/app"]  # not an option this time: left alone
    assert container["name"] == "user-container"
    assert live["metadata"]["annotations"]["serving.knative.dev/creator"] == "kubernetes-admin"
    assert result["latest_ready_revision"] == "hello-00002"
    assert result["diff"]["before"]["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_check_mode_reports_what_a_real_run_would_and_writes_nothing(cluster, capsys):
    predicted = run_module(capsys, check_mode=True, diff=True, **BASE)
    assert predicted["changed"] is True
    assert [details["dry_run"] for method, details in cluster.writes] == [True]
    assert stored(cluster) is None
    real = run_module(capsys, diff=True, **BASE)
    assert real["diff"] == predicted["diff"]

    update = BASE | {"max_scale": 4}
    cluster.requests.clear()
    predicted = run_module(capsys, check_mode=True, diff=True, **update)
    assert predicted["changed"] is True
    assert cluster.methods() == ["get", "patch"]  # a dry-run patch, and no wait
    assert "autoscaling.knative.dev/max-scale" not in stored(cluster)["spec"]["template"]["metadata"]["annotations"]
    real = run_module(capsys, diff=True, **update)
    assert (real["changed"], real["diff"]) == (True, predicted["diff"])
    again = run_module(capsys, check_mode=True, **update)
    assert again["changed"] is False


def test_missing_image_fails_before_any_request(cluster, capsys):
    result = run_module(capsys, name="hello")
    assert result["failed"] is True
    assert result["msg"] == "state is present but all of the following are missing: image"
    assert cluster.clients == []
    assert cluster.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (BASE | {"name": "Hello_World"}, "name 'Hello_World' is not a valid Knative Service name"),
        (BASE | {"min_scale": 3, "max_scale": 1}, "max_scale (1) is less than min_scale (3)"),
        (BASE | {"timeout_seconds": -1}, "timeout_seconds must be between 1 and 2147483647"),
        (BASE | {"port": 9090}, "port 9090 is reserved by Knative"),
        (BASE | {"env": {"K_SERVICE": "x"}}, "env must not set K_SERVICE"),
        (BASE | {"state": "gone"}, "value of state must be one of: present, absent, got: gone"),
        (BASE | {"volumes": [{"name": "v", "mount_path": "/v"}]}, "one of the following is required"),
    ],
)
def test_invalid_arguments_fail_with_one_line_and_send_nothing(cluster, capsys, args, message):
    result = run_module(capsys, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert "\n" not in result["msg"]
    assert "exception" not in result
    assert cluster.requests == []


def test_ready_false_fails_fast_with_reason_and_message(cluster, capsys):
    cluster.controller = failing_controller
    result = run_module(capsys, **BASE)
    assert result["failed"] is True
    assert result["changed"] is True
    assert result["msg"].startswith("Knative Service default/hello is not ready: RevisionFailed: ")
    assert "Unable to fetch image" in result["msg"]
    assert result["conditions"][1]["reason"] == "RevisionFailed"


def test_wait_timeout_reports_the_last_conditions(cluster, capsys):
    def slow_controller(obj):
        obj["status"] = {
            "observedGeneration": obj["metadata"]["generation"],
            "conditions": [{"type": "Ready", "status": "Unknown", "reason": "RevisionMissing", "message": "not yet"}],
        }

    cluster.controller = slow_controller
    result = run_module(capsys, **BASE, wait_timeout=1)
    assert result["failed"] is True
    assert "Timed out after 1s waiting for Service default/hello" in result["msg"]
    assert "Ready=Unknown (RevisionMissing: not yet)" in result["msg"]


def test_no_wait_returns_right_after_the_write(cluster, capsys):
    cluster.controller = None
    result = run_module(capsys, **BASE, wait=False)
    assert result["changed"] is True
    assert "watch" not in cluster.methods()
    assert result["url"] is None


def test_a_conflict_is_retried_once_after_reading_again(cluster, capsys):
    run_module(capsys, **BASE)
    cluster.requests.clear()
    cluster.errors["patch"] = [Conflict(409, "Conflict", "the object has been modified")]
    result = run_module(capsys, **(BASE | {"image": "hello:2"}))
    assert result["changed"] is True
    assert cluster.methods() == ["get", "patch", "get", "patch", "watch"]
    assert stored(cluster)["spec"]["template"]["spec"]["containers"][0]["image"] == "hello:2"


def test_a_second_conflict_fails(cluster, capsys):
    run_module(capsys, **BASE)
    conflict = Conflict(409, "Conflict", "the object has been modified")
    cluster.errors["patch"] = [conflict, copy.copy(conflict)]
    result = run_module(capsys, **(BASE | {"image": "hello:2"}))
    assert result["failed"] is True
    assert result["msg"] == "Kubernetes API error: Conflict (409): the object has been modified"


def test_old_camel_case_scale_key_is_replaced_with_a_warning(cluster, capsys):
    run_module(capsys, **BASE)
    live = stored(cluster)
    live["spec"]["template"]["metadata"]["annotations"] = {"autoscaling.knative.dev/minScale": "1"}
    cluster.put(live)
    result = run_module(capsys, **BASE)
    assert result["changed"] is True
    assert "replacing the old annotation autoscaling.knative.dev/minScale" in json.dumps(result["warnings"])
    assert stored(cluster)["spec"]["template"]["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "1"}
    assert run_module(capsys, **BASE)["changed"] is False


def test_unmanaged_scale_and_foreign_labels_stay(cluster, capsys):
    run_module(capsys, **(BASE | {"max_scale": 5}))
    live = stored(cluster)
    live["metadata"]["labels"] = {"team": "web"}
    cluster.put(live)
    result = run_module(capsys, **BASE)  # max_scale no longer given: not managed
    assert result["changed"] is False
    annotations = stored(cluster)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/max-scale"] == "5"


def test_absent_deletes_waits_and_is_idempotent(cluster, capsys):
    run_module(capsys, **BASE)
    cluster.requests.clear()
    predicted = run_module(capsys, check_mode=True, name="hello", state="absent")
    assert predicted["changed"] is True
    assert stored(cluster) is not None
    result = run_module(capsys, name="hello", state="absent")
    assert result["changed"] is True
    assert stored(cluster) is None
    assert result["diff"]["before"]["metadata"]["name"] == "hello"
    methods = cluster.methods()
    last_delete = len(methods) - 1 - methods[::-1].index("delete")
    assert set(methods[last_delete + 1 :]) == {"list"}  # the waits saw it and its children gone
    again = run_module(capsys, name="hello", state="absent")
    assert again["changed"] is False


def test_absent_waits_for_the_children_the_garbage_collector_removes(cluster, capsys):
    # Issue 8 item 10: the Route (finalizer routes.serving.knative.dev) outlives the Service for a
    # moment; a Service created again before it is gone would get NotOwned.
    run_module(capsys, **BASE)
    route = {
        "apiVersion": API_VERSION,
        "kind": "Route",
        "metadata": {
            "name": "hello",
            "namespace": "default",
            "resourceVersion": "900",
            "finalizers": ["routes.serving.knative.dev"],
        },
    }
    cluster.put(route)
    cluster.watch_script = [[event("DELETED", route)]]
    cluster.requests.clear()
    result = run_module(capsys, name="hello", state="absent")
    assert result["changed"] is True
    watched = [details for method, details in cluster.requests if method == "watch"]
    assert [(w["kind"], w["field_selector"]) for w in watched] == [("Route", "metadata.name=hello")]


def test_an_unexpected_error_is_one_line(cluster, capsys):
    # The traceback goes to ``exception``, which Ansible only fills when tracebacks are enabled.
    cluster.errors["get"] = [RuntimeError("boom\nsecond line")]
    result = run_module(capsys, **BASE)
    assert result["failed"] is True
    assert result["msg"] == "Unexpected RuntimeError: boom second line"


def test_volumes_and_resources_are_idempotent_against_the_webhook(cluster, capsys):
    args = BASE | {
        "volumes": [
            {"name": "config", "mount_path": "/etc/app", "config_map": "app-config"},
            {"name": "scratch", "mount_path": "/scratch", "empty_dir": {}},
            {"name": "data", "mount_path": "/data", "persistent_volume_claim": "app-data"},
        ],
        "resources": {"requests": {"cpu": "1000m", "memory": "64Mi"}},
    }
    assert run_module(capsys, **args)["changed"] is True
    spec = stored(cluster)["spec"]["template"]["spec"]
    assert spec["volumes"] == [
        {"name": "config", "configMap": {"name": "app-config"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "app-data"}},
    ]
    assert spec["containers"][0]["volumeMounts"][0] == {"name": "config", "mountPath": "/etc/app", "readOnly": True}
    # The API server canonicalises quantities; 1 CPU is still 1000m.
    spec["containers"][0]["resources"]["requests"]["cpu"] = "1"
    live = stored(cluster)
    live["spec"]["template"]["spec"] = spec
    cluster.put(live)
    assert run_module(capsys, **args)["changed"] is False


def test_a_readiness_probe_is_written_whole_and_idempotent_against_the_webhook(cluster, capsys):
    args = BASE | {"readiness_probe": {"path": "/healthz", "period_seconds": 1}}
    result = run_module(capsys, **args)
    assert result["changed"] is True
    probe = stored(cluster)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe == {
        "httpGet": {"path": "/healthz", "port": 0},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
        "successThreshold": 1,
    }
    assert run_module(capsys, **args)["changed"] is False


def test_a_readiness_probe_taken_back_to_knatives_default_loses_its_period_settings(cluster, capsys):
    run_module(capsys, **(BASE | {"readiness_probe": {"period_seconds": 2, "timeout_seconds": 2}}))
    probe = stored(cluster)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["periodSeconds"] == 2 and probe["timeoutSeconds"] == 2 and probe["tcpSocket"] == {"port": 0}
    # {} is Knative's default; the fake webhook fails the write if a timeout survived next to period 0.
    assert run_module(capsys, **(BASE | {"readiness_probe": {}}))["changed"] is True
    probe = stored(cluster)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe == {"tcpSocket": {"port": 0}, "successThreshold": 1}
    assert run_module(capsys, **(BASE | {"readiness_probe": {}}))["changed"] is False
    # Left out, the probe is not managed: a probe set by someone else stays.
    assert run_module(capsys, **BASE)["changed"] is False


def test_knatives_default_probe_already_matches_an_empty_readiness_probe(cluster, capsys):
    run_module(capsys, **BASE)
    assert run_module(capsys, **(BASE | {"readiness_probe": {}}))["changed"] is False


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ({"timeout_seconds": 2}, "readiness_probe.timeout_seconds needs readiness_probe.period_seconds above 0"),
        ({"failure_threshold": 1}, "readiness_probe.failure_threshold needs readiness_probe.period_seconds above 0"),
        ({"period_seconds": -1}, "readiness_probe.period_seconds must be between 0 and"),
        ({"period_seconds": 1, "timeout_seconds": 0}, "readiness_probe.timeout_seconds must be between 1 and"),
        ({"success_threshold": 0}, "readiness_probe.success_threshold must be between 1 and"),
        ({"path": "healthz"}, "readiness_probe.path must be an absolute HTTP path"),
    ],
)
def test_a_readiness_probe_knative_would_refuse_is_refused_before_any_request(cluster, capsys, probe, message):
    result = run_module(capsys, **(BASE | {"readiness_probe": probe}))
    assert result["failed"] is True
    assert message in result["msg"]
    assert cluster.requests == []


def test_read_only_false_is_idempotent_against_the_go_round_trip(cluster, capsys):
    # Issue 8 item 8: readOnly is omitempty, so the webhook stores false as absent.
    args = BASE | {
        "volumes": [
            {"name": "scratch", "mount_path": "/scratch", "empty_dir": {}, "read_only": False},
            {"name": "data", "mount_path": "/data", "persistent_volume_claim": "app-data", "read_only": False},
        ]
    }
    assert run_module(capsys, **args)["changed"] is True
    assert run_module(capsys, **args)["changed"] is False


def test_a_claim_made_writable_again_loses_read_only_on_both_sides(cluster, capsys):
    volume = {"name": "data", "mount_path": "/data", "persistent_volume_claim": "app-data"}
    run_module(capsys, **(BASE | {"volumes": [volume | {"read_only": True}]}))
    spec = stored(cluster)["spec"]["template"]["spec"]
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "app-data", "readOnly": True}
    assert run_module(capsys, **(BASE | {"volumes": [volume | {"read_only": False}]}))["changed"] is True
    spec = stored(cluster)["spec"]["template"]["spec"]
    # Knative refuses a read-only claim behind a writable mount (validateVolumeMounts).
    assert spec["volumes"][0]["persistentVolumeClaim"] == {"claimName": "app-data"}
    assert "readOnly" not in spec["containers"][0]["volumeMounts"][0]


@pytest.mark.parametrize(("given", "canonical"), [("1024Mi", "1Gi"), ("0.5Gi", "512Mi"), ("1000M", "1G")])
def test_a_size_limit_in_another_spelling_is_idempotent(cluster, capsys, given, canonical):
    args = BASE | {"volumes": [{"name": "scratch", "mount_path": "/scratch", "empty_dir": {"size_limit": given}}]}
    assert run_module(capsys, **args)["changed"] is True
    # The API server stores quantities in canonical form.
    live = stored(cluster)
    live["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = canonical
    cluster.put(live)
    assert run_module(capsys, **args)["changed"] is False


def test_a_service_with_named_revisions_can_be_updated(cluster, capsys, monkeypatch):
    # Issue 8 item 11: kn --revision-name sets spec.template.metadata.name; Knative refuses a
    # template change under the same name, so the module drops the name with the change.
    run_module(capsys, **BASE)
    live = stored(cluster)
    live["spec"]["template"]["metadata"]["name"] = "hello-v1"
    cluster.put(live)
    assert run_module(capsys, **BASE)["changed"] is False  # no change: the name stays
    assert stored(cluster)["spec"]["template"]["metadata"]["name"] == "hello-v1"
    result = run_module(capsys, **(BASE | {"env": {"A": "2"}}))
    assert result["changed"] is True
    assert "revisions were named (hello-v1)" in json.dumps(result["warnings"])
    assert "name" not in stored(cluster)["spec"]["template"]["metadata"]


def test_a_visibility_change_waits_for_the_new_url(cluster, capsys):
    # Issue 8 item 9: the label does not bump the generation, so the Service is Ready at once with
    # the old URL; the Route switches it a moment later.
    run_module(capsys, **BASE)
    cluster.requests.clear()
    local = copy.deepcopy(stored(cluster))
    local["metadata"].setdefault("labels", {})["networking.knative.dev/visibility"] = "cluster-local"
    local["metadata"]["resourceVersion"] = "999"
    local["status"]["url"] = "http://hello.default.svc.cluster.local"
    cluster.watch_script = [[event("MODIFIED", local)]]
    result = run_module(capsys, **(BASE | {"cluster_local": True}))
    assert result["url"] == "http://hello.default.svc.cluster.local"
    assert "watch" in cluster.methods()


EMPTY_LISTS = {"image_pull_secrets": [], "volumes": [], "command": [], "args": []}


def test_empty_lists_and_strings_are_idempotent_against_the_go_round_trip(cluster, capsys):
    # The app role always passes image_pull_secrets: [] and the registry role volumes: []; the
    # webhook drops empty lists and empty env values, which must not read as a change every run.
    args = BASE | EMPTY_LISTS | {"env": {"A": "1", "EMPTY": ""}}
    assert run_module(capsys, **args)["changed"] is True
    body = cluster.writes[0][1]["body"]
    assert "imagePullSecrets" not in body["spec"]["template"]["spec"]
    assert body["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "EMPTY"}]
    cluster.requests.clear()
    again = run_module(capsys, **args)
    assert again["changed"] is False
    assert cluster.writes == []
    assert run_module(capsys, **(BASE | {"env": {}}))["changed"] is True  # {} clears A and EMPTY
    assert run_module(capsys, **(BASE | {"env": {}}))["changed"] is False


def test_an_empty_list_clears_what_the_service_has(cluster, capsys):
    volume = {"name": "config", "mount_path": "/etc/app", "config_map": "app-config"}
    full = BASE | {"image_pull_secrets": ["pull"], "volumes": [volume], "command": ["/bin/app"], "args": ["-v"]}
    run_module(capsys, **full)
    cluster.requests.clear()
    result = run_module(capsys, **(BASE | EMPTY_LISTS | {"env": {}}))
    assert result["changed"] is True
    assert cluster.methods() == ["get", "patch", "watch"]
    spec = stored(cluster)["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in spec
    assert "volumes" not in spec
    container = spec["containers"][0]
    assert [key for key in ("env", "volumeMounts", "command", "args") if key in container] == []
    assert container["name"] == "user-container"  # the webhook's default survives
    assert run_module(capsys, **(BASE | EMPTY_LISTS | {"env": {}}))["changed"] is False


def test_an_empty_env_value_replaces_a_set_one(cluster, capsys):
    run_module(capsys, **BASE)
    assert run_module(capsys, **(BASE | {"env": {"A": ""}}))["changed"] is True
    assert stored(cluster)["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A"}]
    assert run_module(capsys, **(BASE | {"env": {"A": ""}}))["changed"] is False


def test_a_plain_value_replaces_a_value_from(cluster, capsys):
    secret_ref = {"secretKeyRef": {"name": "s", "key": "k"}}
    run_module(capsys, **(BASE | {"env": [{"name": "A", "valueFrom": secret_ref}]}))
    assert run_module(capsys, **BASE)["changed"] is True
    assert stored(cluster)["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_absent_on_a_service_being_deleted_only_waits(cluster, capsys):
    run_module(capsys, **BASE)
    live = stored(cluster)
    live["metadata"] |= {"deletionTimestamp": "2026-08-01T10:00:00Z", "finalizers": ["example.com/hold"]}
    live = cluster.put(live)
    cluster.requests.clear()
    assert run_module(capsys, check_mode=True, name="hello", state="absent")["changed"] is False
    assert run_module(capsys, name="hello", state="absent", wait=False)["changed"] is False
    assert cluster.methods() == ["get", "get"]
    cluster.watch_script = [[event("DELETED", live)]]  # the finalizer is released
    result = run_module(capsys, name="hello", state="absent")
    assert result["changed"] is False
    assert cluster.writes == []
    assert cluster.methods()[-1] == "watch"
