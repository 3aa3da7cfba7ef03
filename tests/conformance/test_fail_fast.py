"""A rollout that cannot succeed fails in seconds with its cause, with the default settings.

Knative reports a pull error, a crash loop or an app that never answers only at the progress
deadline (600 s by default). ``knative_service`` reads the pods of the revision it rolls out and
ends the wait on what they show. ``wait_timeout`` is set to 60 s here as a bound, not a tuning:
a wait that did not see the cause would end with "Timed out" instead, and the scenario fails.
"""

from __future__ import annotations

import pytest

DEMO_NAMESPACE = "default"  # the demo app, whose image these apps run


def _demo_image(target) -> str:
    service = target.json("get", "ksvc", "hello", "-n", DEMO_NAMESPACE)
    return service["spec"]["template"]["spec"]["containers"][0]["image"]


def _rollout(target, observe, namespace: str, name: str, **options) -> dict:
    result = target.module("knative_service", name=name, namespace=namespace, wait_timeout=60, **options)
    msg = str(result.get("msg", ""))
    diagnosis = result.get("diagnosis") or {}
    observe("failed", bool(result.get("failed")))
    observe("timed_out", "Timed out" in msg)
    observe("one_line", "\n" not in msg)
    observe("whole_object_returned", "service" in result)
    reason = diagnosis.get("reason")
    observe("diagnosis.reason", "ImagePull" if reason in ("ErrImagePull", "ImagePullBackOff") else reason)
    observe("diagnosis.final", diagnosis.get("final"))
    observe("diagnosis.names_the_pod", bool(diagnosis.get("pod")) and diagnosis.get("pod", "") in msg)
    target.module("knative_service", name=name, namespace=namespace, state="absent")
    return result


def test_image_missing_from_the_hub(target, observe, work_namespace) -> None:
    image = _demo_image(target).split("@", 1)[0] + "@sha256:" + "0" * 64
    result = _rollout(target, observe, work_namespace, "ff-missing-image", image=image)
    observe("message_names_the_image", image in str(result.get("msg")))
    observe("message_says_not_found", "not found" in str(result.get("msg")).lower()
            or "manifest_unknown" in str(result.get("msg")).lower())  # fmt: skip


def test_app_that_crashes_again(target, observe, work_namespace) -> None:
    command = ["python3", "-c", "import sys; print('boom: no configuration found', flush=True); sys.exit(3)"]
    result = _rollout(target, observe, work_namespace, "ff-crash", image=_demo_image(target), command=command)
    diagnosis = result.get("diagnosis") or {}
    observe("exit_code", diagnosis.get("exit_code"))
    observe("message_names_the_exit", "exited with code 3" in str(result.get("msg")))
    observe(
        "log_tail_has_the_cause",
        any("boom: no configuration found" in line for line in diagnosis.get("log_tail") or []),
    )


@pytest.mark.parametrize("port", [18099])
def test_app_listening_on_another_port(target, observe, work_namespace, port) -> None:
    # Knative tells the app PORT=8080; this one listens elsewhere whatever it is told.
    command = ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    result = _rollout(target, observe, work_namespace, "ff-wrong-port", image=_demo_image(target), command=command)
    observe("message_names_the_port", "port 8080" in str(result.get("msg")))
