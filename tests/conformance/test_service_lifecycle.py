"""knative_service through a Service's life on each target (issue 8 items 8, 10 and 11): a re-run
with values Knative rewrites (`read_only: false`, a non-canonical size limit) changes nothing; a
delete that waits, then a create at once, is Ready (the Route's finalizer and garbage collection
are waited for); a Service created with its own revision name can still be updated.
Uses the demo's image (files run in name order)."""

from __future__ import annotations

import json

from conftest import conditions

DEMO_NAMESPACE = "default"


def _image(target) -> str:
    return target.json("get", "ksvc", "hello", "-n", DEMO_NAMESPACE)["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]


def test_rewritten_values_converge(target, observe, work_namespace) -> None:
    namespace = work_namespace
    args = {
        "name": "cf-converge",
        "namespace": namespace,
        "image": _image(target),
        "env": {"TARGET": "converge"},
        "volumes": [
            {"name": "scratch", "mount_path": "/scratch", "read_only": False, "empty_dir": {"size_limit": "1024Mi"}}
        ],
    }
    first = target.module("knative_service", **args)
    observe("first.failed", bool(first.get("failed")))
    observe("first.changed", first.get("changed"))
    second = target.module("knative_service", **args)
    observe("second.changed", second.get("changed"))
    observe("second.failed", bool(second.get("failed")))
    stored = target.json("get", "ksvc", "cf-converge", "-n", namespace)["spec"]["template"]["spec"]
    observe("stored.size_limit", stored["volumes"][0]["emptyDir"].get("sizeLimit"))
    observe("stored.read_only", stored["containers"][0]["volumeMounts"][0].get("readOnly", "(absent)"))
    observe(
        "revisions",
        len(target.json("get", "revisions", "-n", namespace, "-l", "serving.knative.dev/service=cf-converge")["items"]),
    )


def test_delete_then_create_at_once(target, observe, work_namespace) -> None:
    namespace = work_namespace
    args = {"name": "cf-recreate", "namespace": namespace, "image": _image(target), "env": {"TARGET": "again"}}
    assert not target.module("knative_service", **args).get("failed")
    gone = target.module("knative_service", name="cf-recreate", namespace=namespace, state="absent")
    observe("absent.changed", gone.get("changed"))
    children = {
        kind: target.json("get", kind, "-n", namespace, "-l", "serving.knative.dev/service=cf-recreate")["items"]
        for kind in ("routes", "configurations", "revisions")
    }
    observe("children_left_after_absent", {kind: len(items) for kind, items in children.items()})
    again = target.module("knative_service", **args)
    observe("recreated.failed", bool(again.get("failed")))
    observe("recreated.conditions", conditions(target.json("get", "ksvc", "cf-recreate", "-n", namespace)))
    target.module("knative_service", name="cf-recreate", namespace=namespace, state="absent")


def test_own_revision_name_then_update(target, observe, work_namespace) -> None:
    namespace = work_namespace
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "cf-named", "namespace": namespace},
        "spec": {
            "template": {
                "metadata": {"name": "cf-named-first"},
                "spec": {"containers": [{"image": _image(target), "env": [{"name": "TARGET", "value": "first"}]}]},
            }
        },
    }
    target.kubectl("apply", "--server-side", "--field-manager=kn", "-f", "-", input=json.dumps(service))
    result = target.module(
        "knative_service", name="cf-named", namespace=namespace, image=_image(target), env={"TARGET": "second"}
    )
    observe("update.failed", bool(result.get("failed")))
    observe("update.warned", any("were named" in w for w in result.get("warnings", [])))
    live = target.json("get", "ksvc", "cf-named", "-n", namespace)
    observe("template_name", live["spec"]["template"].get("metadata", {}).get("name", "(none)"))
    observe("conditions", conditions(live))
    target.module("knative_service", name="cf-named", namespace=namespace, state="absent")
