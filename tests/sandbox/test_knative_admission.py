"""Knative webhook simulation: defaults (FACTS §1.5) and validation messages (§1.3, §1.4, §1.11).

Pure functions, no server: each test builds an object, runs the defaulter/validator the way the
admission chain does, and compares with what a real Knative Serving answers.
"""

from __future__ import annotations

import copy

import pytest
from knlab_sandbox import knative_admission as ka

CONFIG = ka.KnativeConfig()
PVC_ON = ka.KnativeConfig(
    features={
        "kubernetes.podspec-persistent-volume-claim": "enabled",
        "kubernetes.podspec-persistent-volume-write": "enabled",
    }
)


def service(name: str = "hello", **spec_fields) -> dict:
    container = {"image": "docker.io/library/registry:2"}
    container.update(spec_fields.pop("container", {}))
    spec = {"containers": [container], **spec_fields.pop("template_spec", {})}
    template = {"spec": spec}
    if "annotations" in spec_fields:
        template["metadata"] = {"annotations": spec_fields.pop("annotations")}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": template, **spec_fields},
    }


def defaulted(obj: dict, *, old: dict | None = None, user: str = "alice", config=CONFIG) -> dict:
    obj = copy.deepcopy(obj)
    ka.default_service(obj, old, operation="UPDATE" if old else "CREATE", user=user, config=config)
    return obj


def errors(obj: dict, *, old: dict | None = None, config=CONFIG) -> str:
    obj = defaulted(obj, old=old, config=config)
    return ka.render(ka.validate_service(obj, old, operation="UPDATE" if old else "CREATE", config=config))


# --- defaults ---------------------------------------------------------------------------------


def test_minimal_service_gets_every_webhook_default():
    obj = defaulted(service())
    template = obj["spec"]["template"]
    assert template["metadata"] == {"creationTimestamp": None}
    assert template["spec"] == {
        "containers": [
            {
                "name": "user-container",
                "image": "docker.io/library/registry:2",
                "resources": {},
                "readinessProbe": {"tcpSocket": {"port": 0}, "successThreshold": 1},
            }
        ],
        "containerConcurrency": 0,
        "timeoutSeconds": 300,
        "enableServiceLinks": False,
    }
    assert obj["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    annotations = obj["metadata"]["annotations"]
    assert annotations == {"serving.knative.dev/creator": "alice", "serving.knative.dev/lastModifier": "alice"}


def test_defaulting_is_idempotent():
    once = defaulted(service())
    twice = defaulted(once)
    assert once == twice


def test_unnamed_containers_are_numbered_skipping_taken_names():
    containers = [
        {"image": "a", "ports": [{"containerPort": 8080}]},
        {"image": "b", "name": "user-container-0"},
        {"image": "c"},
    ]
    obj = service(template_spec={"containers": containers})
    names = [c["name"] for c in defaulted(obj)["spec"]["template"]["spec"]["containers"]]
    assert names == ["user-container-1", "user-container-0", "user-container-2"]


def test_probe_defaults_only_for_the_serving_container_and_periodic_probe_gets_k8s_defaults():
    obj = service(
        template_spec={
            "containers": [
                {"image": "a", "ports": [{"containerPort": 8080}], "readinessProbe": {"periodSeconds": 5}},
                {"image": "b"},
            ]
        }
    )
    serving, sidecar = defaulted(obj)["spec"]["template"]["spec"]["containers"]
    assert serving["readinessProbe"] == {
        "periodSeconds": 5,
        "tcpSocket": {"port": 0},
        "successThreshold": 1,
        "failureThreshold": 3,
        "timeoutSeconds": 1,
    }
    assert "readinessProbe" not in sidecar


def test_user_probe_handler_is_kept():
    obj = service(container={"readinessProbe": {"httpGet": {"path": "/healthz"}}})
    probe = defaulted(obj)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    # Seen on the real cluster (Knative v0.50): an unset httpGet port is stored as 0 (Go's
    # IntOrString has no omitempty), as for tcpSocket.
    assert probe == {"httpGet": {"path": "/healthz", "port": 0}, "successThreshold": 1}


def test_volume_mounts_forced_read_only_except_writable_volume_types():
    obj = service(
        container={
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/cfg"},
                {"name": "data", "mountPath": "/var/lib/registry"},
                {"name": "scratch", "mountPath": "/tmp/x"},
            ]
        },
        template_spec={
            "volumes": [
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "hub"}},
                {"name": "scratch", "emptyDir": {}},
            ]
        },
    )
    mounts = defaulted(obj)["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert [m.get("readOnly") for m in mounts] == [True, None, None]


def test_enable_service_links_only_on_create():
    created = defaulted(service())
    update = copy.deepcopy(created)
    del update["spec"]["template"]["spec"]["enableServiceLinks"]
    update["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert "enableServiceLinks" not in defaulted(update, old=created)["spec"]["template"]["spec"]


def test_config_defaults_are_honoured():
    config = ka.KnativeConfig(
        defaults={"revision-timeout-seconds": "120", "container-concurrency": "10", "revision-cpu-request": "50m"}
    )
    spec = defaulted(service(), config=config)["spec"]["template"]["spec"]
    assert (spec["timeoutSeconds"], spec["containerConcurrency"]) == (120, 10)
    assert spec["containers"][0]["resources"] == {"requests": {"cpu": "50m"}}


def test_traffic_targets_get_latest_revision_and_zero_percent():
    obj = service(traffic=[{"revisionName": "hello-00001", "percent": 100}, {"tag": "next"}])
    assert defaulted(obj)["spec"]["traffic"] == [
        {"revisionName": "hello-00001", "percent": 100, "latestRevision": False},
        {"tag": "next", "latestRevision": True, "percent": 0},
    ]


def test_last_modifier_changes_only_when_spec_changes():
    created = defaulted(service(), user="alice")
    metadata_only = copy.deepcopy(created)
    metadata_only["metadata"]["labels"] = {"team": "a"}
    assert defaulted(metadata_only, old=created, user="bob")["metadata"]["annotations"] == {
        "serving.knative.dev/creator": "alice",
        "serving.knative.dev/lastModifier": "alice",
    }
    spec_change = copy.deepcopy(created)
    spec_change["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    annotations = defaulted(spec_change, old=created, user="bob")["metadata"]["annotations"]
    assert annotations["serving.knative.dev/lastModifier"] == "bob"
    assert annotations["serving.knative.dev/creator"] == "alice"
    assert errors(spec_change, old=created) == ""


def test_changing_the_creator_is_rejected():
    created = defaulted(service(), user="alice")
    tampered = copy.deepcopy(created)
    tampered["metadata"]["annotations"]["serving.knative.dev/creator"] = "mallory"
    assert errors(tampered, old=created) == (
        "annotation value is immutable: metadata.annotations.serving.knative.dev/creator"
    )


def test_revision_defaulting_skipped_on_update():
    revision = {"metadata": {"name": "hello-00001"}, "spec": {"containers": [{"image": "x"}]}}
    ka.default_revision(revision, {}, operation="UPDATE", user="u", config=CONFIG)
    assert revision["spec"] == {"containers": [{"image": "x"}]}


# --- validation: spec rules (§1.3) ------------------------------------------------------------


def test_valid_service_has_no_errors():
    assert errors(service(container={"ports": [{"containerPort": 5000}]})) == ""


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        (
            {"env": [{"name": "PORT", "value": "1"}]},
            '"PORT" is a reserved environment variable: spec.template.spec.containers[0].env[0].name',
        ),
        (
            {"ports": [{"containerPort": 8012}]},
            "invalid value: 8012 is a reserved port: spec.template.spec.containers[0].ports.containerPort\n"
            "8012 is a reserved port, please use a different value",
        ),
        (
            {"ports": [{"containerPort": 8080, "name": "web"}]},
            "Port name web is not allowed: spec.template.spec.containers[0].ports\n"
            "Name must be empty, or one of: 'h2c', 'http1'",
        ),
        (
            {"ports": [{"containerPort": 8080, "protocol": "UDP"}]},
            "invalid value: UDP: spec.template.spec.containers[0].ports.protocol",
        ),
        (
            {"ports": [{"containerPort": 8080}, {"containerPort": 9000}]},
            "more than one container port is set: spec.template.spec.containers[*].ports\n"
            "Only a single port is allowed across all containers",
        ),
        (
            {"name": "queue-proxy"},
            '"queue-proxy" is a reserved container name: spec.template.spec.containers[0].name',
        ),
        ({"image": ""}, "missing field(s): spec.template.spec.containers[0].image"),
        ({"lifecycle": {"preStop": {}}}, "must not set the field(s): spec.template.spec.containers[0].lifecycle"),
    ],
)
def test_container_rules(container, expected):
    assert errors(service(container=container)) == expected


def test_reserved_mount_path_and_missing_volume():
    obj = service(
        container={"volumeMounts": [{"name": "v", "mountPath": "/dev/"}, {"name": "nope", "mountPath": "/x"}]},
        template_spec={"volumes": [{"name": "v", "emptyDir": {}}]},
    )
    assert errors(obj) == "\n".join(
        [
            'mountPath "/dev" is a reserved path: spec.template.spec.containers[0].volumeMounts[0].mountPath',
            "volumeMount has no matching volume: spec.template.spec.containers[0].volumeMounts[1].name",
        ]
    )


@pytest.mark.parametrize(
    ("template_spec", "expected"),
    [
        ({"timeoutSeconds": 601}, "expected 0 <= 601 <= 600: spec.template.spec.timeoutSeconds"),
        ({"containerConcurrency": 1001}, "expected 0 <= 1001 <= 1000: spec.template.spec.containerConcurrency"),
        ({"nodeSelector": {"a": "b"}}, "must not set the field(s): spec.template.spec.nodeSelector"),
    ],
)
def test_revision_spec_bounds_and_masks(template_spec, expected):
    assert errors(service(template_spec=template_spec)) == expected


def test_timeout_limit_follows_config_defaults():
    config = ka.KnativeConfig(defaults={"max-revision-timeout-seconds": "900"})
    assert errors(service(template_spec={"timeoutSeconds": 800}), config=config) == ""


def test_service_name_must_be_a_dns1035_label():
    assert errors(service(name="1hub")) == f"not a DNS 1035 label: [{ka.DNS1035_MESSAGE}]: metadata.name"


def test_byo_revision_name_rules():
    obj = service()
    obj["spec"]["template"]["metadata"] = {"name": "other-v1"}
    assert errors(obj) == 'invalid value: "other-v1" must have prefix "hello-": spec.template.metadata.name'
    generated = service()
    generated["metadata"] = {"generateName": "hello-", "namespace": "default"}
    generated["spec"]["template"]["metadata"] = {"name": "hello-v1"}
    assert errors(generated) == "must not set the field(s): spec.template.metadata.name"


def test_byo_name_must_change_with_the_template():
    obj = service()
    obj["spec"]["template"]["metadata"] = {"name": "hello-v1"}
    created = defaulted(obj)
    changed = copy.deepcopy(created)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "other:2"
    message = errors(changed, old=created)
    assert message.startswith(
        "Saw the following changes without a name change (-old +new): spec.template.metadata.name\n"
    )


def test_traffic_rules():
    obj = service(traffic=[{"revisionName": "hello-00001", "percent": 60}, {"latestRevision": True, "percent": 50}])
    assert errors(obj) == "Traffic targets sum to 110, want 100: spec.traffic"
    named = service(traffic=[{"configurationName": "hello", "percent": 100}])
    assert errors(named) == "must not set the field(s): spec.traffic[0].configurationName"


def test_service_labels_are_not_checked():
    # Knative v0.50's Service.Validate checks no label: an unknown visibility value and a
    # serving.knative.dev/* key are accepted (the real cluster accepts both; see
    # tests/conformance/test_admission.py, service_serving_label and service_visibility_label_unknown).
    obj = service()
    obj["metadata"]["labels"] = {"networking.knative.dev/visibility": "internal", "serving.knative.dev/x": "y"}
    assert errors(obj) == ""


# --- validation: autoscaling annotations (§1.4) -----------------------------------------------

SCALE = "autoscaling.knative.dev"


def test_max_scale_below_min_scale_names_both_kebab_keys():
    obj = service(annotations={f"{SCALE}/min-scale": "5", f"{SCALE}/max-scale": "2"})
    assert errors(obj) == (
        "max-scale=2 is less than min-scale=5: "
        f"spec.template.metadata.annotations.{SCALE}/max-scale, spec.template.metadata.annotations.{SCALE}/min-scale"
    )


def test_camel_case_keys_still_work_and_kebab_wins():
    assert errors(service(annotations={f"{SCALE}/minScale": "5", f"{SCALE}/maxScale": "2"})).startswith(
        "max-scale=2 is less than min-scale=5"
    )
    both = {f"{SCALE}/minScale": "9", f"{SCALE}/min-scale": "1", f"{SCALE}/max-scale": "1"}
    assert errors(service(annotations=both)) == ""
    assert ka.scale_bounds(both) == (1, 1)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (
            {f"{SCALE}/min-scale": "-1"},
            f"expected 0 <= -1 <= 2147483647: spec.template.metadata.annotations.{SCALE}/min-scale",
        ),
        ({f"{SCALE}/max-scale": "x"}, f"invalid value: x: spec.template.metadata.annotations.{SCALE}/max-scale"),
        (
            {f"{SCALE}/class": "foo.autoscaling.knative.dev"},
            f"invalid value: foo.autoscaling.knative.dev: spec.template.metadata.annotations.{SCALE}/class",
        ),
        ({f"{SCALE}/metric": "cpu"}, f"invalid value: cpu: spec.template.metadata.annotations.{SCALE}/metric"),
        (
            {f"{SCALE}/window": "2s"},
            f"expected 6s <= 2s <= 1h0m0s: spec.template.metadata.annotations.{SCALE}/window",
        ),
    ],
)
def test_autoscaling_annotation_errors(annotations, expected):
    assert errors(service(annotations=annotations)) == expected


def test_hpa_accepts_cpu_and_memory_metrics():
    for metric in ("cpu", "memory"):
        annotations = {f"{SCALE}/class": "hpa.autoscaling.knative.dev", f"{SCALE}/metric": metric}
        assert errors(service(annotations=annotations)) == ""


def test_autoscaling_annotations_on_the_service_itself_are_rejected():
    obj = service()
    obj["metadata"]["annotations"] = {f"{SCALE}/min-scale": "1"}
    assert errors(obj) == (
        f'invalid key name "{SCALE}/min-scale": metadata.annotations\n'
        'autoscaling annotations must be put under "spec.template.metadata.annotations" to work'
    )


# --- validation: volume feature flags (§1.11) -------------------------------------------------


def pvc_service(read_only: bool = False) -> dict:
    return service(
        container={"volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry"}]},
        template_spec={
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "hub", "readOnly": read_only}}]
        },
    )


def test_pvc_rejected_while_flags_are_disabled():
    assert errors(pvc_service()) == "\n".join(
        [
            "Persistent volume claim support is disabled, but found persistent volume claim hub: ",
            "Persistent volume write support is disabled, "
            "but found persistent volume claim hub that is not read-only: ",
            "must not set the field(s): spec.template.spec.volumes[0].persistentVolumeClaim",
        ]
    )


def test_pvc_accepted_with_both_flags():
    assert errors(pvc_service(), config=PVC_ON) == ""


def test_read_only_pvc_needs_only_the_claim_flag_and_a_read_only_mount():
    config = ka.KnativeConfig(features={"kubernetes.podspec-persistent-volume-claim": "enabled"})
    assert errors(pvc_service(read_only=True), config=config) == (
        "volume is readOnly but volume mount is not: spec.template.spec.containers[0].volumeMounts[0].readOnly"
    )


def test_empty_dir_can_be_switched_off():
    config = ka.KnativeConfig(features={"kubernetes.podspec-volumes-emptydir": "disabled"})
    obj = service(
        container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
        template_spec={"volumes": [{"name": "scratch", "emptyDir": {}}]},
    )
    assert errors(obj, config=config).startswith(
        "EmptyDir volume support is disabled, but found EmptyDir volume scratch: "
    )


def test_denial_message_is_the_webhook_wording():
    causes = [ka.Cause("missing field(s)", ("spec.x",))]
    assert ka.denial_message(causes) == (
        'admission webhook "validation.webhook.serving.knative.dev" denied the request: '
        "validation failed: missing field(s): spec.x"
    )


# --- other kinds ------------------------------------------------------------------------------


def test_revision_spec_is_immutable():
    old = {"metadata": {"name": "hello-00001"}, "spec": {"containers": [{"image": "a"}]}}
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "b"
    (cause,) = ka.validate_revision(new, old, operation="UPDATE", config=CONFIG)
    assert (cause.message, cause.paths) == ("Immutable fields changed (-old +new)", ("spec",))


def test_configuration_service_label_needs_an_owner():
    configuration = {
        "metadata": {"name": "hello", "labels": {"serving.knative.dev/service": "hello"}},
        "spec": {"template": {"spec": {"containers": [{"image": "a"}]}}},
    }
    ka.default_configuration(configuration, None, operation="CREATE", user="u", config=CONFIG)
    causes = ka.validate_configuration(configuration, None, operation="CREATE", config=CONFIG)
    assert ka.render(causes) == "missing field(s): metadata.labels.serving.knative.dev/service"


def test_route_targets_need_a_revision_or_configuration():
    route = {"metadata": {"name": "r"}, "spec": {"traffic": [{"percent": 100}]}}
    ka.default_route(route, None, operation="CREATE", user="u", config=CONFIG)
    assert ka.render(ka.validate_route(route, None, operation="CREATE", config=CONFIG)) == (
        "expected exactly one, got neither: spec.traffic[0].configurationName, spec.traffic[0].revisionName"
    )


def test_go_duration_round_trip():
    assert ka.parse_go_duration("1m30s") == 90
    assert ka.parse_go_duration("600s") == 600
    assert ka.format_go_duration(3600) == "1h0m0s"
    with pytest.raises(ValueError, match="invalid duration"):
        ka.parse_go_duration("10 minutes")


def test_feature_flag_values_follow_knative_as_flag():
    # EqualFold against enabled/allowed/disabled, no trimming; anything else keeps the default.
    config = ka.KnativeConfig(
        features={
            "kubernetes.podspec-persistent-volume-claim": "Enabled",
            "kubernetes.podspec-persistent-volume-write": " enabled",
            "multi-container": "yes",
            "kubernetes.podspec-volumes-emptydir": "DISABLED",
        }
    )
    assert config.feature_enabled("kubernetes.podspec-persistent-volume-claim")
    assert not config.feature_enabled("kubernetes.podspec-persistent-volume-write")  # default: disabled
    assert config.feature_enabled("multi-container")  # default: enabled
    assert not config.feature_not_disabled("kubernetes.podspec-volumes-emptydir")
