"""The store and ResourceAPI without HTTP: versions, persistence, history, admission, patches, GC."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from knlab_sandbox import admission, kinds
from knlab_sandbox.errors import ApiStatusError
from knlab_sandbox.resources import ResourceAPI
from knlab_sandbox.settings import Settings
from knlab_sandbox.store import Store

CM = kinds.lookup("v1", "ConfigMap")
SECRET = kinds.lookup("v1", "Secret")
POD = kinds.lookup("v1", "Pod")
PVC = kinds.lookup("v1", "PersistentVolumeClaim")
KSVC = kinds.lookup("serving.knative.dev/v1", "Service")
TASK = kinds.lookup("tekton.dev/v1", "Task")


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ResourceAPI:
    # The core alone: no Knative/Tekton webhooks, even when other tests imported their modules.
    monkeypatch.setattr(admission, "_REGISTRY", {})
    settings = Settings(tmp_path)
    resource_api = ResourceAPI(Store(settings.db_path, history_size=50), settings)
    await resource_api.seed_registered()
    return resource_api


def configmap(name: str, **fields: object) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **fields}


async def expect_error(code: int, coro: object) -> ApiStatusError:
    with pytest.raises(ApiStatusError) as info:
        await coro  # type: ignore[misc]
    assert info.value.code == code, info.value.message
    return info.value


async def test_resource_versions_grow_and_survive_reopening(tmp_path: Path) -> None:
    settings = Settings(tmp_path)
    store = Store(settings.db_path)
    api = ResourceAPI(store, settings)
    await api.seed_registered()
    first = await api.create(CM, configmap("a", data={"k": "v"}))
    second = await api.create(CM, configmap("b"))
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    store.close()

    reopened = ResourceAPI(Store(settings.db_path), settings)
    assert (await reopened.get(CM, "a"))["data"] == {"k": "v"}
    third = await reopened.create(CM, configmap("c"))
    assert int(third["metadata"]["resourceVersion"]) > int(second["metadata"]["resourceVersion"])


async def test_server_metadata_and_generation(api: ResourceAPI) -> None:
    svc = await api.create(KSVC, {"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": []}}}})
    meta = svc["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    # A metadata-only change keeps the generation; a spec change bumps it; status never does.
    labelled = await api.patch(KSVC, "web", {"metadata": {"labels": {"a": "b"}}}, "merge")
    assert labelled["metadata"]["generation"] == 1
    changed = await api.patch(KSVC, "web", {"spec": {"traffic": [{"percent": 100, "latestRevision": True}]}}, "merge")
    assert changed["metadata"]["generation"] == 2
    status = await api.update(KSVC, {**changed, "status": {"observedGeneration": 2}}, subresource="status")
    assert status["metadata"]["generation"] == 2 and status["status"] == {"observedGeneration": 2}


async def test_status_subresource_separation(api: ResourceAPI) -> None:
    await api.create(KSVC, {"metadata": {"name": "s"}, "spec": {}, "status": {"url": "ignored-on-create"}})
    obj = await api.get(KSVC, "s")
    assert "status" not in obj
    obj = await api.update(KSVC, {**obj, "status": {"url": "http://x"}}, subresource="status")
    # The main resource ignores status; /status ignores everything else.
    main = await api.update(KSVC, {**obj, "status": {"url": "changed"}, "spec": {"traffic": []}})
    assert main["status"] == {"url": "http://x"}
    via_status = await api.update(
        KSVC,
        {**main, "metadata": {**main["metadata"], "labels": {"x": "y"}}, "status": {"url": "http://y"}},
        subresource="status",
    )
    assert via_status["status"] == {"url": "http://y"} and "labels" not in via_status["metadata"]


async def test_stale_resource_version_conflicts(api: ResourceAPI) -> None:
    obj = await api.create(CM, configmap("c", data={"a": "1"}))
    await api.update(CM, {**obj, "data": {"a": "2"}})
    error = await expect_error(409, api.update(CM, {**obj, "data": {"a": "3"}}))
    assert error.reason == "Conflict"
    assert "the object has been modified" in error.message


async def test_history_and_compaction(api: ResourceAPI) -> None:
    start = await api.create(CM, configmap("h"))
    rv = start["metadata"]["resourceVersion"]
    for i in range(3):
        await api.patch(CM, "h", {"data": {"i": str(i)}}, "merge")
    events = api.watch(CM, namespace="default", resource_version=rv)
    seen = [await anext(events) for _ in range(3)]
    await events.aclose()
    assert [e["type"] for e in seen] == ["MODIFIED"] * 3
    assert [e["object"]["data"]["i"] for e in seen] == ["0", "1", "2"]
    api.store.compact(1)
    error = await expect_error(410, anext(api.watch(CM, namespace="default", resource_version=rv)))
    assert error.reason == "Expired"


async def test_watch_follows_selectors(api: ResourceAPI) -> None:
    events = api.watch(CM, namespace="default", resource_version="0", label_selector="app in (web)")
    task = asyncio.ensure_future(anext(events))
    await api.create(CM, configmap("other", metadata={"name": "other", "labels": {"app": "db"}}))
    await api.create(CM, {"metadata": {"name": "w", "labels": {"app": "web"}}})
    first = await asyncio.wait_for(task, 2)
    assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "w"
    await api.patch(CM, "w", {"metadata": {"labels": {"app": "db"}}}, "merge")
    left = await asyncio.wait_for(anext(events), 2)
    assert left["type"] == "DELETED"  # it stopped matching the selector
    await events.aclose()


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a"]),
        ("tier!=web", ["b", "c"]),
        ("tier in (web,db)", ["a", "b"]),
        ("tier notin (web)", ["b", "c"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c"]),
        ("tier,env=prod", ["a"]),
    ],
)
async def test_label_selectors(api: ResourceAPI, selector: str, expected: list[str]) -> None:
    await api.create(CM, {"metadata": {"name": "a", "labels": {"tier": "web", "env": "prod"}}})
    await api.create(CM, {"metadata": {"name": "b", "labels": {"tier": "db"}}})
    await api.create(CM, {"metadata": {"name": "c"}})
    items, _ = await api.list(CM, namespace="default", label_selector=selector)
    assert [i["metadata"]["name"] for i in items] == expected


async def test_field_selectors(api: ResourceAPI) -> None:
    await api.create(CM, configmap("x"))
    items, _ = await api.list(CM, field_selector="metadata.name=x,metadata.namespace=default")
    assert [i["metadata"]["name"] for i in items] == ["x"]
    error = await expect_error(400, api.list(CM, field_selector="spec.nope=1"))
    assert "field label not supported" in error.message


async def test_configmap_rules(api: ResourceAPI) -> None:
    error = await expect_error(422, api.create(CM, configmap("k", data={"bad key": "v"})))
    assert error.details["causes"][0]["field"] == "data[bad key]"
    error = await expect_error(422, api.create(CM, configmap("big", data={"a": "x" * (1024 * 1024)})))
    assert "Too long: must have at most 1048576 bytes" in error.message
    frozen = await api.create(CM, configmap("frozen", data={"a": "1"}, immutable=True))
    error = await expect_error(422, api.update(CM, {**frozen, "data": {"a": "2"}}))
    assert "field is immutable when `immutable` is set" in error.message
    # Metadata stays editable on an immutable ConfigMap.
    await api.patch(CM, "frozen", {"metadata": {"labels": {"ok": "yes"}}}, "merge")
    assert await api.list(CM, namespace="default", label_selector="ok=yes")


async def test_secret_string_data_is_merged(api: ResourceAPI) -> None:
    secret = await api.create(
        SECRET, {"metadata": {"name": "s"}, "data": {"a": base64.b64encode(b"1").decode()}, "stringData": {"b": "2"}}
    )
    assert "stringData" not in secret and secret["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {"a": "1", "b": "2"}
    await expect_error(400, api.create(SECRET, {"metadata": {"name": "t"}, "data": {"a": "%%%"}}))


async def test_pvc_is_bound_to_a_directory(api: ResourceAPI) -> None:
    pvc = await api.create(
        PVC,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"]
    assert api.settings.volume_dir("default", "data").is_dir()


async def test_deleting_a_pvc_deletes_its_data(api: ResourceAPI) -> None:
    await api.create(PVC, {"metadata": {"name": "data"}, "spec": {}})
    (api.settings.volume_dir("default", "data") / "blob").write_text("kept until the claim goes")
    await api.delete(PVC, "data", dry_run=True)
    assert (api.settings.volume_dir("default", "data") / "blob").is_file()

    await api.delete(PVC, "data")
    assert not api.settings.volume_dir("default", "data").exists()
    await api.create(PVC, {"metadata": {"name": "data"}, "spec": {}})
    assert list(api.settings.volume_dir("default", "data").iterdir()) == [], "a new claim starts empty"


async def test_generate_name_dry_run_and_missing_namespace(api: ResourceAPI) -> None:
    created = await api.create(CM, {"metadata": {"generateName": "gen-"}})
    assert created["metadata"]["name"].startswith("gen-") and len(created["metadata"]["name"]) == 9
    dry = await api.create(CM, configmap("dry"), dry_run=True)
    assert dry["metadata"]["name"] == "dry" and api.get_nowait(CM, "dry") is None
    error = await expect_error(404, api.create(CM, configmap("x"), namespace="nope"))
    assert error.message == 'namespaces "nope" not found'
    await expect_error(409, api.create(CM, {"metadata": {"name": created["metadata"]["name"]}}))


async def test_patch_types(api: ResourceAPI) -> None:
    await api.create(
        POD,
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
                    {"name": "b", "image": "y"},
                ]
            },
        },
    )
    merged = await api.patch(
        POD, "p", {"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}]}}, "strategic"
    )
    containers = merged["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "b"]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    deleted = await api.patch(POD, "p", {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}, "strategic")
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["a"]
    replaced = await api.patch(POD, "p", {"metadata": {"labels": {"x": "1"}}}, "merge")
    assert replaced["metadata"]["labels"] == {"x": "1"}
    patched = await api.patch(POD, "p", [{"op": "replace", "path": "/spec/containers/0/image", "value": "z"}], "json")
    assert patched["spec"]["containers"][0]["image"] == "z"
    await expect_error(422, api.patch(POD, "p", [{"op": "test", "path": "/spec/nodeName", "value": "n"}], "json"))
    await api.create(TASK, {"metadata": {"name": "t"}, "spec": {"steps": []}})
    error = await expect_error(415, api.patch(TASK, "t", {"spec": {}}, "strategic"))
    assert error.reason == "UnsupportedMediaType"


async def test_server_side_apply_conflicts_force_and_removal(api: ResourceAPI) -> None:
    await api.create(CM, configmap("s", data={"a": "1"}), field_manager="kubectl-create")
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"a": "2", "b": "1"}}
    error = await expect_error(409, api.patch(CM, "s", config, "apply", field_manager="tool"))
    assert error.details["causes"][0]["field"] == ".data.a"
    forced = await api.patch(CM, "s", config, "apply", field_manager="tool", force=True)
    assert forced["data"] == {"a": "2", "b": "1"}
    managers = {e["manager"]: e for e in forced["metadata"]["managedFields"]}
    assert managers["tool"]["operation"] == "Apply"
    # Applying again without "b" removes it: the tool was its only manager.
    again = await api.patch(CM, "s", {**config, "data": {"a": "2"}}, "apply", field_manager="tool")
    assert again["data"] == {"a": "2"}


async def test_finalizers_hold_deletion(api: ResourceAPI) -> None:
    await api.create(CM, configmap("f", metadata={"name": "f", "finalizers": ["example.com/hold"]}))
    pending = await api.delete(CM, "f")
    assert pending["metadata"]["deletionTimestamp"]
    assert api.get_nowait(CM, "f") is not None
    await api.patch(CM, "f", {"metadata": {"finalizers": None}}, "merge")
    assert api.get_nowait(CM, "f") is None


@pytest.mark.parametrize(
    ("propagation", "dependent_kept"), [("Background", False), ("Foreground", False), ("Orphan", True)]
)
async def test_garbage_collection(api: ResourceAPI, propagation: str, dependent_kept: bool) -> None:
    owner = await api.create(CM, configmap("owner"))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await api.create(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    await api.create(
        CM,
        {
            "metadata": {
                "name": "grandchild",
                "ownerReferences": [{**ref, "name": "child", "uid": (await api.get(CM, "child"))["metadata"]["uid"]}],
            }
        },
    )
    await api.delete(CM, "owner", propagation=propagation)
    assert api.get_nowait(CM, "owner") is None
    child = api.get_nowait(CM, "child")
    assert (child is not None) == dependent_kept
    if child is not None:
        assert "ownerReferences" not in child["metadata"]
    assert (api.get_nowait(CM, "grandchild") is not None) == dependent_kept


async def test_invalid_names_and_labels(api: ResourceAPI) -> None:
    error = await expect_error(422, api.create(CM, configmap("Bad_Name")))
    assert error.reason == "Invalid" and "RFC 1123 subdomain" in error.message
    await expect_error(422, api.create(CM, {"metadata": {"name": "ok", "labels": {"bad key!": "v"}}}))
    await expect_error(422, api.create(kinds.lookup("v1", "Namespace"), {"metadata": {"name": "a.b"}}))


async def test_unknown_fields(api: ResourceAPI) -> None:
    error = await expect_error(400, api.create(CM, configmap("u", foo=1), field_validation="Strict"))
    assert error.message == 'strict decoding error: unknown field "foo"'
    warnings: list[str] = []
    created = await api.create(CM, configmap("u", foo=1), field_validation="Warn", warnings=warnings)
    assert warnings == ['unknown field "foo"'] and "foo" not in created
