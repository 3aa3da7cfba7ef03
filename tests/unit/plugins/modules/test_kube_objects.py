"""kube_objects run as Ansible runs it (arguments in, JSON out) against the scripted fake client."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.knlab.serverless.plugins.modules import kube_objects
from fakes import FakeKubeClient


@pytest.fixture
def cluster(monkeypatch):
    client = FakeKubeClient()

    def get_client(module):
        client.dry_run = module.check_mode
        return client

    monkeypatch.setattr(kube_objects, "get_client", get_client)
    return client


def run_module(capsys, *, check_mode: bool = False, diff: bool = False, **args) -> dict:
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        kube_objects.main()
    return json.loads(capsys.readouterr().out)


def claim(size: str = "1Gi") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "hub-data", "labels": {"app": "hub"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def test_present_creates_then_changes_nothing_and_server_fields_do_not_count(cluster, capsys):
    first = run_module(capsys, present=[claim()])
    assert first["changed"] is True
    assert cluster.methods() == ["get", "create"]
    # What a server adds (binding, defaults, status) is not the user's: no change, no write.
    stored = cluster.stored("v1", "PersistentVolumeClaim", "hub-data", "default")
    stored["spec"].update(volumeName="pv-1", storageClassName="standard", volumeMode="Filesystem")
    stored["status"] = {"phase": "Bound"}
    cluster.put(stored)
    cluster.requests.clear()
    again = run_module(capsys, present=[claim()])
    assert again["changed"] is False
    assert cluster.writes == []
    assert again["objects"][0]["status"] == {"phase": "Bound"}


def test_a_difference_is_a_merge_patch_of_the_fields_given_and_check_mode_is_a_dry_run(cluster, capsys):
    cluster.put({**claim(), "metadata": {"name": "hub-data", "namespace": "default", "labels": {"app": "hub"}}})
    checked = run_module(capsys, check_mode=True, diff=True, present=[claim("2Gi")])
    assert checked["changed"] is True
    assert cluster.stored("v1", "PersistentVolumeClaim", "hub-data", "default")["spec"]["resources"] == {
        "requests": {"storage": "1Gi"}
    }
    assert checked["diff"][0]["before"]["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert checked["diff"][0]["after"]["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    real = run_module(capsys, present=[claim("2Gi")])
    assert real["changed"] is True
    patch = [details for method, details in cluster.writes if method == "patch"][-1]  # the first was the dry run
    assert patch["patch"]["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    assert "status" not in patch["patch"]
    assert run_module(capsys, present=[claim("2Gi")])["changed"] is False


def test_reads_come_first_by_name_or_by_labels(cluster, capsys):
    labelled = {"name": "a", "namespace": "x", "labels": {"k": "v"}}
    cluster.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": labelled})
    cluster.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "x"}})
    result = run_module(
        capsys,
        namespace="x",
        read=[
            {"api_version": "v1", "kind": "ConfigMap", "name": "b"},
            {"api_version": "v1", "kind": "ConfigMap", "name": "missing"},
            {"api_version": "v1", "kind": "ConfigMap", "label_selectors": ["k=v"]},
        ],
        present=[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1"}}],
    )
    assert [[item["metadata"]["name"] for item in answer] for answer in result["read"]] == [["b"], [], ["a"]]
    assert cluster.methods()[:3] == ["get", "get", "list"]
    assert result["changed"] is True


def test_absent_deletes_what_exists_and_a_second_run_changes_nothing(cluster, capsys):
    cluster.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": "default"}})
    gone = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old"}}]
    checked = run_module(capsys, check_mode=True, absent=gone)
    assert checked["changed"] is True
    assert cluster.stored("v1", "ConfigMap", "old", "default") is not None
    result = run_module(capsys, absent=gone, wait=False)
    assert result == {**result, "changed": True, "deleted": ["ConfigMap default/old"]}
    assert run_module(capsys, absent=gone, wait=False)["changed"] is False


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"present": [{"kind": "ConfigMap", "metadata": {"name": "x"}}]}, "present[0].apiVersion"),
        ({"present": [{"apiVersion": "v1", "kind": "ConfigMap"}]}, "present[0].metadata"),
        ({"absent": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}]}, "absent[0].name"),
        ({"read": [{"api_version": "v1", "kind": "ConfigMap"}]}, "read[0] needs either name or label_selectors"),
        ({"read": [{"api_version": "v1", "kind": "ConfigMap", "label_selectors": "a=b"}]}, "read[0].label_selectors"),
        ({"read": [{"api_version": "v1", "kind": "ConfigMap", "name": "x", "nmae": "y"}]}, "read[0] has unknown keys"),
        ({"namespace": "Bad"}, "namespace"),
        ({"wait_timeout": 0}, "wait_timeout"),
    ],
)
def test_bad_input_fails_naming_it_before_any_request(cluster, capsys, args, named):
    result = run_module(capsys, **args)
    assert result["failed"] is True
    assert named in result["msg"]
    assert cluster.requests == []


def test_a_value_the_server_stores_in_another_spelling_is_no_change(cluster, capsys):
    cluster.put({**claim(), "metadata": {"name": "hub-data", "namespace": "default", "labels": {"app": "hub"}}})

    def canonical(obj, old):  # as kube-apiserver stores quantities
        requests = obj["spec"]["resources"]["requests"]
        if requests.get("storage") == "1024Mi":
            requests["storage"] = "1Gi"

    cluster.admit = canonical
    result = run_module(capsys, present=[claim("1024Mi")])
    assert result["changed"] is False


def test_a_secrets_values_never_show_in_the_result_the_diff_or_the_invocation(cluster, capsys):
    # Issue 11 item 3: data (base64) and stringData alike, their other encoding, and their lines.
    import base64

    htpasswd = "builder:$2b$12$abcdefghijklmnopqrstuvSecretHashValueXYZ0123456789abc\n"
    encoded = base64.b64encode(htpasswd.encode()).decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hub-auth"},
        "data": {"htpasswd": encoded},
        "stringData": {"token": "s3cret-string-data"},
    }
    created = run_module(capsys, diff=True, present=[secret])
    assert created["changed"] is True
    read = run_module(capsys, read=[{"api_version": "v1", "kind": "Secret", "name": "hub-auth"}])
    assert sorted(read["read"][0][0]["data"]) == ["htpasswd"]  # the keys show
    for result in (created, read):
        text = json.dumps(result)
        for value in (encoded, htpasswd.strip(), "SecretHashValueXYZ", "s3cret-string-data"):
            assert value not in text
    assert "htpasswd" in json.dumps(created["invocation"])
