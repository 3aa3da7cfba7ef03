"""ServiceAccount tokens: mounted where kubelet mounts them, accepted by the API while the account exists.

A real sandbox server with real processes: the probe app (in_cluster.py) reads its mounted
ServiceAccount directory and calls the API the way an in-cluster client does.
"""

from __future__ import annotations

import asyncio

import pytest
from in_cluster import Running, probe_service, start

SERVICES = "/apis/serving.knative.dev/v1/namespaces/default/services"
ACCOUNTS = "/api/v1/namespaces/default/serviceaccounts"


@pytest.fixture
async def cluster(tmp_path):
    running = await start(tmp_path / "sandbox")
    try:
        await running.hub_with_probe()
        yield running
    finally:
        await running.close()


async def _revision_pod(cluster: Running, revision: str) -> dict:
    _, pods = await cluster.api(
        "GET", f"/api/v1/namespaces/default/pods?labelSelector=serving.knative.dev/revision={revision}"
    )
    assert len(pods["items"]) == 1, pods
    return pods["items"][0]


async def test_a_pod_gets_its_token_ca_and_namespace_and_calls_the_api_as_its_service_account(cluster):
    await cluster.create(ACCOUNTS, {"metadata": {"name": "robot"}})
    await cluster.create(SERVICES, probe_service("probe", serviceAccountName="robot"))
    await cluster.wait_ready("probe")
    host = "probe.default.svc.cluster.local"

    status, files = await cluster.through_gateway(host, "/files")
    assert status == 200
    assert files["namespace"] == "default" and files["token"] and files["ca"]
    assert files["env"]["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert files["env"]["KUBERNETES_SERVICE_PORT"] == str(cluster.info["api_port"])

    # The pod shows the volume as the ServiceAccount admission plug-in writes it.
    pod = await _revision_pod(cluster, "probe-00001")
    assert pod["spec"]["serviceAccountName"] == "robot"
    volume = next(v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert {
        "name": volume["name"],
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    } in mounts

    # The token works over HTTPS verified with the mounted ca.crt, as this ServiceAccount.
    _, answer = await cluster.through_gateway(host, "/api?path=/version")
    assert answer["status"] == 200 and answer["body"]["major"] == "1"
    _, answer = await cluster.through_gateway(host, f"/api?path={ACCOUNTS}/robot")
    assert answer["status"] == 403  # authenticated, and authorised by RBAC (test_rbac.py), which grants nothing here
    assert 'User "system:serviceaccount:default:robot" cannot get resource' in answer["body"]["message"]
    _, answer = await cluster.through_gateway(host, f"/api?path={ACCOUNTS}/robot&impersonate=someone")
    assert answer["status"] == 403
    assert 'User "system:serviceaccount:default:robot" cannot impersonate resource "users"' in answer["body"]["message"]

    # The admin's kubeconfig token is unchanged.
    assert (await cluster.api("GET", f"{ACCOUNTS}/robot"))[0] == 200
    # A forged or altered token is refused.
    assert (await cluster.api("GET", "/version", token="x.y.z"))[0] == 401

    # Deleting the ServiceAccount ends its token, also when one of the same name comes back.
    assert (await cluster.api("DELETE", f"{ACCOUNTS}/robot"))[0] == 200
    _, answer = await cluster.through_gateway(host, "/api?path=/version")
    assert answer["status"] == 401 and answer["body"]["reason"] == "Unauthorized"
    await cluster.create(ACCOUNTS, {"metadata": {"name": "robot"}})
    _, answer = await cluster.through_gateway(host, "/api?path=/version")
    assert answer["status"] == 401


async def test_automount_false_mounts_no_token_but_keeps_the_service_variables(cluster):
    await cluster.create(SERVICES, probe_service("quiet", automountServiceAccountToken=False))
    await cluster.wait_ready("quiet")
    _, files = await cluster.through_gateway("quiet.default.svc.cluster.local", "/files")
    assert files["token"] is False and files["namespace"] is None
    assert files["env"]["KUBERNETES_SERVICE_PORT"] == str(cluster.info["api_port"])
    pod = await _revision_pod(cluster, "quiet-00001")
    assert pod["spec"]["serviceAccountName"] == "default"
    assert not any(v["name"].startswith("kube-api-access-") for v in pod["spec"].get("volumes") or [])

    # A ServiceAccount that says no is followed when the pod does not say.
    await cluster.create(ACCOUNTS, {"metadata": {"name": "silent"}, "automountServiceAccountToken": False})
    await cluster.create(SERVICES, probe_service("silent", serviceAccountName="silent"))
    await cluster.wait_ready("silent")
    _, files = await cluster.through_gateway("silent.default.svc.cluster.local", "/files")
    assert files["token"] is False


async def test_a_missing_service_account_fails_the_revision_until_it_exists_as_the_replicaset_reports_it(cluster):
    await cluster.create(SERVICES, probe_service("orphan", serviceAccountName="nobody"))
    await cluster.wait_ready("orphan", status="False")
    _, revision = await cluster.api("GET", "/apis/serving.knative.dev/v1/namespaces/default/revisions/orphan-00001")
    available = next(c for c in revision["status"]["conditions"] if c["type"] == "ResourcesAvailable")
    assert available["status"] == "False" and available["reason"] == "FailedCreate"
    assert available["message"].startswith('pods "orphan-00001-deployment-')
    assert available["message"].endswith(
        '-" is forbidden: error looking up service account default/nobody: serviceaccount "nobody" not found'
    )
    await asyncio.sleep(0.2)
    _, pods = await cluster.api(
        "GET", "/api/v1/namespaces/default/pods?labelSelector=serving.knative.dev/revision=orphan-00001"
    )
    assert pods["items"] == []

    # As the ReplicaSet keeps trying, the Revision comes up once the account exists.
    await cluster.create(ACCOUNTS, {"metadata": {"name": "nobody"}})
    await cluster.wait_ready("orphan")
    _, files = await cluster.through_gateway("orphan.default.svc.cluster.local", "/files")
    assert files["token"] is True
