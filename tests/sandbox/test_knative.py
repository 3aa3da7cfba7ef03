"""The Knative controller simulation, driven through ResourceAPI as the HTTP API drives it.

The runtime and the gateway are small fakes here (they have their own tests): this file checks what
the controller makes of them — names, labels, owner references, conditions and messages (FACTS
§1.6, §1.7), URLs, traffic, routing — and that the webhooks run on every write.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from knlab_sandbox import kinds
from knlab_sandbox.errors import ApiStatusError
from knlab_sandbox.gateway import Endpoint, Pool
from knlab_sandbox.knative import KnativeController
from knlab_sandbox.resources import ResourceAPI
from knlab_sandbox.runtime import RuntimeFailure
from knlab_sandbox.settings import Settings
from knlab_sandbox.store import Store

SERVICE = kinds.lookup("serving.knative.dev/v1", "Service")
CONFIGURATION = kinds.lookup("serving.knative.dev/v1", "Configuration")
REVISION = kinds.lookup("serving.knative.dev/v1", "Revision")
ROUTE = kinds.lookup("serving.knative.dev/v1", "Route")
POD = kinds.lookup("v1", "Pod")
EVENT = kinds.lookup("v1", "Event")
CONFIGMAP = kinds.lookup("v1", "ConfigMap")
PVC = kinds.lookup("v1", "PersistentVolumeClaim")
WAIT = 10.0  # an upper bound for a wait, not a performance expectation


class FakeRuntime:
    """Starts nothing; remembers what it was asked to run. Images listed in `missing` fail."""

    def __init__(self) -> None:
        self.running: dict[str, dict] = {}
        self.stopped: list[str] = []
        self.missing: set[str] = set()
        self.digests: dict[str, str] = {}  # image -> the digest its pull resolves to (unlisted: not pulled)
        self.resolved: list[str] = []  # images whose tag the controller resolved
        self.port = 40000

    async def start(
        self, key, namespace, pod_spec, env, log_path: Path, *, volume_sources=None, pull_secrets=(), on_started=None
    ):
        image = pod_spec["containers"][0]["image"]
        if image in self.missing:
            message = f'Unable to fetch image "{image}": failed to resolve image to digest: MANIFEST_UNKNOWN'
            raise RuntimeFailure("ContainerMissing", message)
        log_path.write_text(f"serving {image}\n")
        self.port += 1
        self.running[key] = {"pod_spec": pod_spec, "env": dict(env), "volumes": dict(volume_sources or {})}
        return Endpoint("127.0.0.1", self.port)

    async def stop(self, key: str) -> None:
        if self.running.pop(key, None) is not None:
            self.stopped.append(key)

    def image_digest(self, key: str) -> str | None:
        run = self.running.get(key)
        return self.digests.get(run["pod_spec"]["containers"][0]["image"]) if run else None

    async def resolve(self, image: str, pull_secrets=()) -> str | None:
        """Knative's tag-to-digest resolution: a missing image fails as it would fail a pull."""
        self.resolved.append(image)
        if image in self.missing:
            message = f'Unable to fetch image "{image}": failed to resolve image to digest: MANIFEST_UNKNOWN'
            raise RuntimeFailure("ContainerMissing", message)
        return self.digests.get(image)


class FakeGateway:
    def __init__(self) -> None:
        self.routes: dict[str, Endpoint] = {}
        self.pools: dict[str, Pool] = {}

    def set_pool(self, name, endpoints) -> Pool:
        pool = self.pools.setdefault(name, Pool())
        pool.endpoints = list(endpoints)
        return pool

    def remove_pool(self, name) -> None:
        self.pools.pop(name, None)

    def pool(self, name) -> Pool | None:
        return self.pools.get(name)

    def set_route(self, hosts, endpoint) -> None:
        self.routes.update(dict.fromkeys(hosts, endpoint))

    def remove_route(self, hosts) -> None:
        for host in hosts:
            self.routes.pop(host, None)


class Cluster:
    def __init__(self, api: ResourceAPI, runtime: FakeRuntime, gateway: FakeGateway, controller: KnativeController):
        self.api, self.runtime, self.gateway, self.controller = api, runtime, gateway, controller

    async def get(self, rt, name, namespace="default"):
        return self.api.get_nowait(rt, name, namespace=namespace)

    async def wait(self, rt, name, check, namespace="default"):
        """Poll until `check(obj)` is true; the last object is in the failure message."""
        obj = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT):
                while True:
                    obj = await self.get(rt, name, namespace)
                    if check(obj):
                        return obj
                    await asyncio.sleep(0.01)
        pytest.fail(f"{rt.kind} {name} never satisfied the check; last seen: {obj}")

    async def wait_ready(self, rt, name, status="True"):
        return await self.wait(rt, name, lambda o: current(o) and condition(o, "Ready").get("status") == status)


def condition(obj: dict | None, kind: str) -> dict:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def current(obj: dict | None) -> bool:
    return bool(obj) and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]


def ksvc(name: str = "hello", image: str = "127.0.0.1:5000/hello:v1", **template_spec) -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"image": image}], **template_spec}}},
    }


@pytest.fixture
async def cluster(tmp_path):
    settings = Settings(state_dir=tmp_path / "state")
    store = Store(settings.db_path)
    api = ResourceAPI(store, settings)
    await api.seed_registered()
    runtime, gateway = FakeRuntime(), FakeGateway()
    controller = KnativeController(api, settings, runtime, gateway)
    task = asyncio.create_task(controller.run())
    try:
        yield Cluster(api, runtime, gateway, controller)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()


async def test_service_becomes_ready_with_children_named_and_owned_like_knative(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default", user="alice")
    service = await cluster.wait_ready(SERVICE, "hello")

    status = service["status"]
    assert status["url"] == "http://hello.default.127.0.0.1.sslip.io"
    assert status["address"] == {"url": "http://hello.default.svc.cluster.local"}
    assert status["latestCreatedRevisionName"] == status["latestReadyRevisionName"] == "hello-00001"
    assert status["traffic"] == [{"revisionName": "hello-00001", "latestRevision": True, "percent": 100}]
    assert [c["type"] for c in status["conditions"]] == ["ConfigurationsReady", "Ready", "RoutesReady"]

    configuration = await cluster.get(CONFIGURATION, "hello")
    route = await cluster.get(ROUTE, "hello")
    revision = await cluster.get(REVISION, "hello-00001")
    for child in (configuration, route):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("Service", service["metadata"]["uid"], True)
        assert child["metadata"]["labels"]["serving.knative.dev/service"] == "hello"
    assert route["spec"]["traffic"] == [{"configurationName": "hello", "latestRevision": True, "percent": 100}]
    labels = revision["metadata"]["labels"]
    assert labels["serving.knative.dev/configuration"] == "hello"
    assert labels["serving.knative.dev/configurationGeneration"] == "1"
    assert labels["serving.knative.dev/configurationUID"] == configuration["metadata"]["uid"]
    assert labels["serving.knative.dev/serviceUID"] == service["metadata"]["uid"]
    assert labels["serving.knative.dev/routingState"] == "active"
    assert revision["metadata"]["annotations"]["serving.knative.dev/creator"] == "alice"
    assert revision["metadata"]["annotations"]["serving.knative.dev/routes"] == "hello"
    assert revision["metadata"]["ownerReferences"][0]["kind"] == "Configuration"
    assert {c["type"]: c["status"] for c in revision["status"]["conditions"]} == {
        "Active": "True",
        "ContainerHealthy": "True",
        "Ready": "True",
        "ResourcesAvailable": "True",
    }
    assert {c["type"]: c["status"] for c in route["status"]["conditions"]} == dict.fromkeys(
        ("AllTrafficAssigned", "CertificateProvisioned", "IngressReady", "Ready"), "True"
    )

    run = cluster.runtime.running["default/hello-00001"]
    assert {k: run["env"][k] for k in ("K_SERVICE", "K_CONFIGURATION", "K_REVISION")} == {
        "K_SERVICE": "hello",
        "K_CONFIGURATION": "hello",
        "K_REVISION": "hello-00001",
    }
    endpoint = cluster.gateway.routes["hello.default.svc.cluster.local"]
    assert cluster.gateway.routes["hello.default.127.0.0.1.sslip.io"] == endpoint


async def test_revision_has_a_pod_whose_user_container_log_is_the_process_output(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    pods, _ = await cluster.api.list(
        POD, namespace="default", label_selector="serving.knative.dev/revision=hello-00001"
    )
    (pod,) = pods
    assert pod["metadata"]["name"].startswith("hello-00001-deployment-")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["user-container"]
    assert pod["status"]["phase"] == "Running"
    log_path = cluster.controller.settings.log_path("default", pod["metadata"]["name"], "user-container")
    assert log_path.read_text() == "serving 127.0.0.1:5000/hello:v1\n"


DIGEST = "sha256:" + "ab" * 32


async def _revision_pod(cluster, revision: str) -> dict:
    pods, _ = await cluster.api.list(
        POD, namespace="default", label_selector=f"serving.knative.dev/revision={revision}"
    )
    (pod,) = pods
    return pod


async def test_the_pulled_digest_is_the_revision_image_digest_and_the_pod_image_id(cluster):
    cluster.runtime.digests["127.0.0.1:5000/hello:v1"] = DIGEST
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    service = await cluster.wait_ready(SERVICE, "hello")
    pinned = "127.0.0.1:5000/hello@sha256:" + "cd" * 32
    revision = await cluster.get(REVISION, "hello-00001")
    expected = f"127.0.0.1:5000/hello@{DIGEST}"
    assert revision["status"]["containerStatuses"] == [{"name": "user-container", "imageDigest": expected}]
    pod = await _revision_pod(cluster, "hello-00001")
    assert pod["status"]["containerStatuses"][0]["imageID"] == expected
    # A digest-pinned image is not resolved: Knative reports it as written. The retired revision keeps its own.
    service["spec"]["template"]["spec"]["containers"][0]["image"] = pinned
    await cluster.api.update(SERVICE, service)
    await cluster.wait(REVISION, "hello-00002", lambda o: condition(o, "Ready").get("status") == "True")
    second = await cluster.get(REVISION, "hello-00002")
    assert second["status"]["containerStatuses"] == [{"name": "user-container", "imageDigest": pinned}]
    first = await cluster.wait(REVISION, "hello-00001", lambda o: "default/hello-00001" in cluster.runtime.stopped)
    assert first["status"]["containerStatuses"][0]["imageDigest"] == expected


async def test_an_image_that_was_not_pulled_gets_no_invented_digest(cluster):
    await cluster.api.create(SERVICE, ksvc(image="docker.io/library/registry:2"), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    revision = await cluster.get(REVISION, "hello-00001")
    assert revision["status"]["containerStatuses"] == [{"name": "user-container"}]
    pod = await _revision_pod(cluster, "hello-00001")
    assert pod["status"]["containerStatuses"][0]["imageID"] == ""


async def test_template_change_makes_a_second_revision_and_retires_the_first(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    service = await cluster.wait_ready(SERVICE, "hello")
    service["spec"]["template"]["spec"]["containers"][0]["image"] = "127.0.0.1:5000/hello:v2"
    await cluster.api.update(SERVICE, service)
    await cluster.wait(
        SERVICE, "hello", lambda o: current(o) and o["status"].get("latestReadyRevisionName") == "hello-00002"
    )
    service = await cluster.wait_ready(SERVICE, "hello")
    assert service["status"]["traffic"][0]["revisionName"] == "hello-00002"

    old = await cluster.wait(REVISION, "hello-00001", lambda o: condition(o, "Active").get("reason") == "NoTraffic")
    assert old["metadata"]["labels"]["serving.knative.dev/routingState"] == "reserve"
    assert condition(old, "Ready")["status"] == "True"  # scaled to zero, still a good revision
    assert "default/hello-00001" in cluster.runtime.stopped
    endpoint = cluster.gateway.routes["hello.default.svc.cluster.local"]
    assert cluster.runtime.running["default/hello-00002"] and endpoint.port == cluster.runtime.port


async def test_traffic_only_change_bumps_the_service_but_not_the_configuration(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    service = await cluster.wait_ready(SERVICE, "hello")
    service["spec"]["traffic"] = [{"revisionName": "hello-00001", "percent": 100}]
    await cluster.api.update(SERVICE, service)
    service = await cluster.wait(SERVICE, "hello", lambda o: o["metadata"]["generation"] == 2 and current(o))
    service = await cluster.wait_ready(SERVICE, "hello")
    configuration = await cluster.get(CONFIGURATION, "hello")
    assert configuration["metadata"]["generation"] == 1
    assert await cluster.get(REVISION, "hello-00002") is None
    assert service["status"]["traffic"] == [{"revisionName": "hello-00001", "latestRevision": False, "percent": 100}]


async def test_a_configuration_named_by_route_traffic_carries_the_routes_annotation(cluster):
    # The Service's Configuration names its Route (MakeConfigurationFromExisting), and the labeler
    # adds every other Route that sends latest-revision traffic to it; neither write undoes the other.
    routes = "serving.knative.dev/routes"
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    await cluster.wait(
        CONFIGURATION, "hello", lambda o: (o["metadata"].get("annotations") or {}).get(routes) == "hello"
    )
    other = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Route",
        "metadata": {"name": "other"},
        "spec": {"traffic": [{"configurationName": "hello", "percent": 100}]},
    }
    await cluster.api.create(ROUTE, other, namespace="default")
    await cluster.wait_ready(ROUTE, "other")
    await cluster.wait(
        CONFIGURATION, "hello", lambda o: (o["metadata"].get("annotations") or {}).get(routes) == "hello,other"
    )
    await cluster.api.delete(ROUTE, "other", namespace="default")
    await cluster.wait(
        CONFIGURATION, "hello", lambda o: (o["metadata"].get("annotations") or {}).get(routes) == "hello"
    )


async def test_missing_image_fails_the_way_knative_reports_it(cluster):
    image = "127.0.0.1:5000/nothing:v1"
    cluster.runtime.missing.add(image)
    await cluster.api.create(SERVICE, ksvc(image=image), namespace="default")
    service = await cluster.wait_ready(SERVICE, "hello", status="False")

    fetch = f'Unable to fetch image "{image}": failed to resolve image to digest: MANIFEST_UNKNOWN'
    revision = await cluster.wait_ready(REVISION, "hello-00001", status="False")
    healthy = condition(revision, "ContainerHealthy")
    assert (healthy["status"], healthy["reason"], healthy["message"]) == ("False", "ContainerMissing", fetch)
    configuration = await cluster.wait_ready(CONFIGURATION, "hello", status="False")
    ready = condition(configuration, "Ready")
    assert (ready["reason"], ready["message"]) == (
        "RevisionFailed",
        f'Revision "hello-00001" failed with message: {fetch}.',
    )
    route = await cluster.wait_ready(ROUTE, "hello", status="False")
    assigned = condition(route, "AllTrafficAssigned")
    assert (assigned["reason"], assigned["message"]) == (
        "RevisionMissing",
        'Configuration "hello" does not have any ready Revision.',
    )
    service = await cluster.wait(
        SERVICE, "hello", lambda o: condition(o, "ConfigurationsReady").get("reason") == "RevisionFailed"
    )
    assert condition(service, "Ready")["status"] == "False"
    assert "hello.default.svc.cluster.local" not in cluster.gateway.routes


async def test_an_unresolvable_tag_fails_the_revision_before_any_pod_exists(cluster):
    # Knative resolves the tag before it makes the Deployment: no pod, no ErrImagePull, and the
    # autoscaler-owned Active condition is not turned into a copy of the failure.
    image = "127.0.0.1:5000/nothing:v1"
    cluster.runtime.missing.add(image)
    await cluster.api.create(SERVICE, ksvc(image=image), namespace="default")
    revision = await cluster.wait_ready(REVISION, "hello-00001", status="False")
    assert condition(revision, "ContainerHealthy")["reason"] == "ContainerMissing"
    assert condition(revision, "ResourcesAvailable").get("status") != "False"
    assert condition(revision, "Active").get("status") in (None, "Unknown")
    pods, _ = await cluster.api.list(POD, namespace="default")
    assert pods == []
    assert cluster.runtime.resolved == [image]
    assert "default/hello-00001" not in cluster.runtime.running


async def test_fixing_a_failed_service_does_not_report_the_old_failure_for_the_new_generation(cluster):
    cluster.runtime.missing.add("127.0.0.1:5000/nothing:v1")
    await cluster.api.create(SERVICE, ksvc(image="127.0.0.1:5000/nothing:v1"), namespace="default")
    service = await cluster.wait_ready(SERVICE, "hello", status="False")
    seen: list[tuple[int, str]] = []

    async def record() -> None:
        after = service["metadata"]["resourceVersion"]
        async for event in cluster.api.watch(SERVICE, namespace="default", resource_version=after):
            obj = event["object"]
            if current(obj):
                seen.append((obj["metadata"]["generation"], condition(obj, "Ready").get("status")))
                if seen[-1] == (2, "True"):
                    return

    watcher = asyncio.create_task(record())
    service["spec"]["template"]["spec"]["containers"][0]["image"] = "127.0.0.1:5000/hello:v1"
    await cluster.api.update(SERVICE, service)
    async with asyncio.timeout(WAIT):
        await watcher
    assert (2, "False") not in seen


async def test_cluster_local_service_gets_the_cluster_url_and_no_external_host(cluster):
    body = ksvc()
    body["metadata"]["labels"] = {"networking.knative.dev/visibility": "cluster-local"}
    await cluster.api.create(SERVICE, body, namespace="default")
    service = await cluster.wait_ready(SERVICE, "hello")
    assert service["status"]["url"] == "http://hello.default.svc.cluster.local"
    assert "hello.default.127.0.0.1.sslip.io" not in cluster.gateway.routes
    assert "hello.default.svc.cluster.local" in cluster.gateway.routes
    route = await cluster.get(ROUTE, "hello")
    assert condition(route, "CertificateProvisioned")["message"] == "TLS is not enabled for cluster-local"


async def test_config_domain_change_moves_the_url(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    domain = await cluster.api.get(CONFIGMAP, "config-domain", namespace="knative-serving")
    domain["data"] = {"example.test": ""}
    await cluster.api.update(CONFIGMAP, domain)
    await cluster.wait(SERVICE, "hello", lambda o: o["status"].get("url") == "http://hello.default.example.test")
    assert "hello.default.example.test" in cluster.gateway.routes
    assert "hello.default.127.0.0.1.sslip.io" not in cluster.gateway.routes


async def test_deleting_the_service_stops_its_process_and_unroutes_it(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    await cluster.api.delete(SERVICE, "hello", namespace="default")
    await cluster.wait(REVISION, "hello-00001", lambda o: o is None)
    async with asyncio.timeout(WAIT):
        while cluster.runtime.running or cluster.gateway.routes:
            await asyncio.sleep(0.01)
    pods, _ = await cluster.api.list(POD, namespace="default")
    assert pods == []


def scaled_ksvc(**annotations: str) -> dict:
    body = ksvc()
    body["spec"]["template"]["metadata"] = {
        "annotations": {f"autoscaling.knative.dev/{k}": v for k, v in annotations.items()}
    }
    return body


async def wait_for(check, what: str, limit: float = WAIT):
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            while not check():
                await asyncio.sleep(0.05)
            return
    pytest.fail(f"never happened: {what}")


async def revision_pods(cluster) -> list[dict]:
    pods, _ = await cluster.api.list(
        POD, namespace="default", label_selector="serving.knative.dev/revision=hello-00001"
    )
    return pods


async def test_min_scale_runs_that_many_pods_behind_one_pool(cluster):
    await cluster.api.create(SERVICE, scaled_ksvc(**{"min-scale": "3", "max-scale": "3"}), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    await wait_for(lambda: len(cluster.runtime.running) == 3, "three processes")
    assert "default/hello-00001" in cluster.runtime.running
    pool = cluster.gateway.pools["default/hello-00001"]
    await wait_for(lambda: len(pool.endpoints) == 3, "three ready endpoints in the pool")
    pods = await revision_pods(cluster)
    assert len(pods) == 3
    prefixes = {p["metadata"]["name"].rsplit("-", 1)[0] for p in pods}
    assert len(prefixes) == 1 and prefixes.pop().startswith("hello-00001-deployment-")
    revision = await cluster.wait(REVISION, "hello-00001", lambda o: (o.get("status") or {}).get("actualReplicas") == 3)
    assert revision["status"]["desiredReplicas"] == 3
    events, _ = await cluster.api.list(EVENT, namespace="default")
    assert not [e for e in events if e["reason"] == "ScalingNotSimulated"]


async def test_one_instance_without_scale_annotations_has_no_pool(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    await asyncio.sleep(1.5)  # past an autoscaler tick
    assert list(cluster.runtime.running) == ["default/hello-00001"]
    assert cluster.gateway.pools == {}


async def test_an_instance_that_exits_is_restarted_in_its_pod_and_the_revision_stays_ready(cluster):
    await cluster.api.create(SERVICE, scaled_ksvc(**{"min-scale": "2", "max-scale": "2"}), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    await wait_for(lambda: len(cluster.runtime.running) == 2, "two processes")
    (extra,) = [k for k in cluster.runtime.running if "#" in k]
    pool = cluster.gateway.pools["default/hello-00001"]
    await wait_for(lambda: len(pool.endpoints) == 2, "two ready endpoints")
    names = sorted(p["metadata"]["name"] for p in await revision_pods(cluster))
    del cluster.runtime.running[extra]  # the process is gone
    await cluster.controller.on_runtime_exit(extra, RuntimeFailure("ExitCode137", "killed"))
    assert len(pool.endpoints) == 1
    await wait_for(lambda: extra in cluster.runtime.running and len(pool.endpoints) == 2, "the instance restarted")
    pods = await revision_pods(cluster)
    assert sorted(p["metadata"]["name"] for p in pods) == names
    restarts = sorted(p["status"]["containerStatuses"][0]["restartCount"] for p in pods)
    assert restarts == [0, 1]
    revision = await cluster.get(REVISION, "hello-00001")
    assert condition(revision, "Ready")["status"] == "True"


async def test_the_first_instance_of_a_scaled_revision_is_restarted_too(cluster):
    await cluster.api.create(SERVICE, scaled_ksvc(**{"min-scale": "2", "max-scale": "2"}), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    pool = cluster.gateway.pools["default/hello-00001"]
    await wait_for(lambda: len(pool.endpoints) == 2, "two ready endpoints")
    routed = cluster.gateway.routes["hello.default.svc.cluster.local"]
    del cluster.runtime.running["default/hello-00001"]
    await cluster.controller.on_runtime_exit("default/hello-00001", RuntimeFailure("ExitCode137", "killed"))
    assert len(pool.endpoints) == 1 and routed not in pool.endpoints
    await wait_for(lambda: "default/hello-00001" in cluster.runtime.running, "the first instance restarted")
    await wait_for(lambda: len(pool.endpoints) == 2, "both ready again")
    revision = await cluster.get(REVISION, "hello-00001")
    assert condition(revision, "Ready")["status"] == "True"


async def test_load_scales_a_revision_up_to_max_scale_and_back_after_the_window(cluster):
    body = scaled_ksvc(**{"max-scale": "3", "target": "1", "window": "6s"})
    await cluster.api.create(SERVICE, body, namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    pool = cluster.gateway.pools["default/hello-00001"]
    await wait_for(lambda: len(pool.endpoints) == 1, "one ready endpoint")
    await asyncio.sleep(1.5)
    assert len(cluster.runtime.running) == 1  # no load, min-scale unset: one
    busy = Endpoint("127.0.0.1", 1)
    for _ in range(5):  # five requests in flight, target 1 x 70%: wants 8, max-scale 3
        pool.begin(busy)
    await wait_for(lambda: len(pool.endpoints) == 3, "scaled up to three", limit=5)
    assert len(cluster.runtime.running) == 3
    for _ in range(5):
        pool.end(busy)
    await asyncio.sleep(2.5)
    assert len(cluster.runtime.running) == 3  # within the stable window: no scale-down yet
    await wait_for(lambda: len(cluster.runtime.running) == 1, "scaled down to one", limit=10)
    await wait_for(lambda: len(pool.endpoints) == 1, "one endpoint")
    assert len(await revision_pods(cluster)) == 1


async def test_a_process_that_dies_makes_the_revision_unhealthy(cluster):
    await cluster.api.create(SERVICE, ksvc(), namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    failure = RuntimeFailure("ExitCode3", "Container failed with: boom")
    await cluster.controller.on_runtime_exit("default/hello-00001", failure)
    revision = await cluster.wait_ready(REVISION, "hello-00001", status="False")
    assert (condition(revision, "ContainerHealthy")["reason"], condition(revision, "Ready")["message"]) == (
        "ExitCode3",
        "Container failed with: boom",
    )
    # The revision still exists: the Configuration reports it failed, not deleted.
    configuration = await cluster.wait_ready(CONFIGURATION, "hello", status="False")
    assert (condition(configuration, "Ready")["reason"], condition(configuration, "Ready")["message"]) == (
        "RevisionFailed",
        'Revision "hello-00001" failed with message: Container failed with: boom.',
    )


async def _pod_waiting_reason(cluster, revision: str) -> str:
    pods, _ = await cluster.api.list(
        POD, namespace="default", label_selector=f"serving.knative.dev/revision={revision}"
    )
    states = [s.get("state", {}) for p in pods for s in (p.get("status") or {}).get("containerStatuses") or []]
    return next((state["waiting"].get("reason", "") for state in states if "waiting" in state), "")


async def test_a_failed_pull_of_a_digest_is_retried_like_kubelet_until_the_registry_has_it(cluster):
    # A digest is not resolved by Knative but pulled by kubelet, which backs off and tries again:
    # e.g. the hub's own revision is still starting after a restart.
    image = "hub.default.svc.cluster.local/hello@sha256:" + "a" * 64
    cluster.runtime.missing.add(image)
    await cluster.api.create(SERVICE, ksvc(image=image), namespace="default")
    async with asyncio.timeout(WAIT):
        while await _pod_waiting_reason(cluster, "hello-00001") != "ImagePullBackOff":
            await asyncio.sleep(0.01)
    revision = await cluster.get(REVISION, "hello-00001")
    assert condition(revision, "Ready")["status"] == "Unknown"
    assert condition(revision, "ResourcesAvailable")["reason"] == "Deploying"

    cluster.runtime.missing.discard(image)
    await cluster.wait_ready(SERVICE, "hello")
    assert "default/hello-00001" in cluster.runtime.running


async def test_a_digest_that_never_arrives_fails_at_the_progress_deadline(cluster):
    image = "hub.default.svc.cluster.local/hello@sha256:" + "b" * 64
    cluster.runtime.missing.add(image)
    body = ksvc(image=image)
    body["spec"]["template"]["metadata"] = {"annotations": {"serving.knative.dev/progress-deadline": "1s"}}
    await cluster.api.create(SERVICE, body, namespace="default")
    revision = await cluster.wait_ready(REVISION, "hello-00001", status="False")
    available = condition(revision, "ResourcesAvailable")
    # Knative copies the pod's waiting state: kubelet's ErrImagePull, then ImagePullBackOff that
    # carries the pull's error.
    assert available["status"] == "False"
    assert available["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert f'failed to pull and unpack image "{image}": ' in available["message"]
    assert available["message"].endswith(f"{image}: not found")  # containerd's words for a 404
    configuration = await cluster.wait_ready(CONFIGURATION, "hello", status="False")
    assert condition(configuration, "Ready")["reason"] == "RevisionFailed"


async def test_webhook_runs_on_api_writes_and_reads_feature_flags_at_admission(cluster):
    body = ksvc()
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/var/lib/registry"}
    ]
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "hub"}}]
    with pytest.raises(ApiStatusError) as refused:
        await cluster.api.create(SERVICE, body, namespace="default")
    assert refused.value.code == 400
    assert refused.value.message.startswith(
        'admission webhook "validation.webhook.serving.knative.dev" denied the request: validation failed: '
        "Persistent volume claim support is disabled, but found persistent volume claim hub: "
    )
    features = await cluster.api.get(CONFIGMAP, "config-features", namespace="knative-serving")
    features["data"]["kubernetes.podspec-persistent-volume-claim"] = "enabled"
    features["data"]["kubernetes.podspec-persistent-volume-write"] = "enabled"
    await cluster.api.update(CONFIGMAP, features)
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "hub"}, "spec": {}}
    await cluster.api.create(PVC, pvc, namespace="default")
    created = await cluster.api.create(SERVICE, body, namespace="default")
    assert created["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0].get("readOnly") is None
    await cluster.wait_ready(SERVICE, "hello")


async def test_missing_claim_leaves_the_revision_unschedulable(cluster):
    features = await cluster.api.get(CONFIGMAP, "config-features", namespace="knative-serving")
    features["data"]["kubernetes.podspec-persistent-volume-claim"] = "enabled"
    features["data"]["kubernetes.podspec-persistent-volume-write"] = "enabled"
    await cluster.api.update(CONFIGMAP, features)
    body = ksvc(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "nope"}}])
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    await cluster.api.create(SERVICE, body, namespace="default")
    revision = await cluster.wait_ready(REVISION, "hello-00001", status="False")
    available = condition(revision, "ResourcesAvailable")
    assert (available["status"], available["reason"]) == ("False", "Unschedulable")
    assert 'persistentvolumeclaim "nope" not found' in available["message"]


async def test_config_map_volume_and_env_are_materialised_for_the_runtime(cluster):
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"greeting": "hi"}}
    await cluster.api.create(CONFIGMAP, configmap, namespace="default")
    body = ksvc(volumes=[{"name": "cfg", "configMap": {"name": "app"}}])
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/app"}]
    container["env"] = [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}}]
    await cluster.api.create(SERVICE, body, namespace="default")
    await cluster.wait_ready(SERVICE, "hello")
    run = cluster.runtime.running["default/hello-00001"]
    assert run["env"]["GREETING"] == "hi"
    assert (run["volumes"]["cfg"] / "greeting").read_text() == "hi"


async def test_a_missing_config_map_keeps_the_revision_deploying_until_the_progress_deadline(cluster):
    # kubelet shows CreateContainerConfigError and retries; Knative reports the waiting reason on
    # ResourcesAvailable only once the Deployment is past its progress deadline.
    body = ksvc(volumes=[{"name": "cfg", "configMap": {"name": "absent"}}])
    body["spec"]["template"]["metadata"] = {"annotations": {"serving.knative.dev/progress-deadline": "2s"}}
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/app"}]
    await cluster.api.create(SERVICE, body, namespace="default")
    async with asyncio.timeout(WAIT):
        while await _pod_waiting_reason(cluster, "hello-00001") != "CreateContainerConfigError":
            await asyncio.sleep(0.01)
    revision = await cluster.wait(
        REVISION, "hello-00001", lambda o: condition(o, "ResourcesAvailable").get("reason") == "Deploying"
    )
    assert condition(revision, "Ready")["status"] == "Unknown"
    assert condition(revision, "ContainerHealthy")["status"] == "Unknown"

    revision = await cluster.wait_ready(REVISION, "hello-00001", status="False")
    available = condition(revision, "ResourcesAvailable")
    assert (available["status"], available["reason"], available["message"]) == (
        "False",
        "CreateContainerConfigError",
        'configmap "absent" not found',
    )
    assert condition(revision, "ContainerHealthy")["status"] == "Unknown"
    assert condition(revision, "Active").get("status") in (None, "Unknown")


async def test_a_config_map_created_before_the_deadline_lets_the_pod_start(cluster):
    body = ksvc(volumes=[{"name": "cfg", "configMap": {"name": "late"}}])
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/app"}]
    await cluster.api.create(SERVICE, body, namespace="default")
    async with asyncio.timeout(WAIT):
        while await _pod_waiting_reason(cluster, "hello-00001") != "CreateContainerConfigError":
            await asyncio.sleep(0.01)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}, "data": {"a": "b"}}
    await cluster.api.create(CONFIGMAP, configmap, namespace="default")
    await cluster.wait_ready(SERVICE, "hello")


async def test_byo_revision_name_is_used(cluster):
    body = ksvc()
    body["spec"]["template"]["metadata"] = {"name": "hello-first"}
    await cluster.api.create(SERVICE, body, namespace="default")
    service = await cluster.wait_ready(SERVICE, "hello")
    assert service["status"]["latestReadyRevisionName"] == "hello-first"


# --- the same, end to end: the real server, kubectl and the real registry as the hub -------------

HUB_MANIFEST = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hub
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/max-scale: "1"
    spec:
      containers:
      - image: docker.io/library/registry:2
        ports:
        - containerPort: 5000
"""


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(stdin.encode() if stdin else None)
    return process.returncode, output.decode()


@pytest.fixture
async def sandbox_server(tmp_path):
    from knlab_sandbox.server import Server

    server = Server(Settings(state_dir=tmp_path / "sandbox", api_port=0, gateway_port=0))
    info = await server.start()
    try:
        yield info
    finally:
        await server.stop()


async def test_kubectl_walk_through_with_the_real_hub(sandbox_server):
    import aiohttp

    kubeconfig = Path(sandbox_server["kubeconfig"])
    code, output = await kubectl(kubeconfig, "apply", "-f", "-", stdin=HUB_MANIFEST)
    assert code == 0, output
    code, output = await kubectl(kubeconfig, "wait", "ksvc/hub", "--for=condition=Ready", "--timeout=60s")
    assert code == 0, output
    code, output = await kubectl(kubeconfig, "get", "ksvc", "hub", "-o", "jsonpath={.status.url}")
    assert output == "http://hub.default.127.0.0.1.sslip.io"

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{sandbox_server['gateway']}/v2/", headers={"Host": "hub.default.svc.cluster.local"}) as answer,
    ):
        assert answer.status == 200
        assert answer.headers["Docker-Distribution-Api-Version"] == "registry/2.0"

    code, pod = await kubectl(kubeconfig, "get", "pods", "-l", "serving.knative.dev/revision=hub-00001", "-o", "name")
    code, logs = await kubectl(kubeconfig, "logs", pod.strip(), "-c", "user-container")
    assert code == 0 and '"GET /v2/ HTTP/1.1" 200' in logs

    refused = (
        HUB_MANIFEST.replace("name: hub\n", "name: hub2\n").replace(
            "ports:", "volumeMounts: [{name: data, mountPath: /var/lib/registry}]\n        ports:"
        )
        + "      volumes: [{name: data, persistentVolumeClaim: {claimName: hub-data}}]\n"
    )
    code, output = await kubectl(kubeconfig, "apply", "-f", "-", stdin=refused)
    assert code != 0
    assert (
        'Error from server (BadRequest): error when creating "STDIN": admission webhook '
        '"validation.webhook.serving.knative.dev" denied the request: validation failed: '
        "Persistent volume claim support is disabled, but found persistent volume claim hub-data: "
    ) in output

    code, output = await kubectl(kubeconfig, "delete", "ksvc", "hub", "--wait=true")
    assert code == 0, output
    code, output = await kubectl(kubeconfig, "get", "revisions,pods", "-o", "name")
    assert output.strip() == ""
