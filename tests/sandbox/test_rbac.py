"""RBAC: ServiceAccount tokens (and impersonated users) are authorised by Roles and bindings; the admin is not.

A real sandbox server in the test's loop (in_cluster.py). Most checks send a ServiceAccount token
signed with the server's own key; one runs the probe app as a pod that patches Knative Services
with its mounted token, as the autodeploy receiver does.
"""

from __future__ import annotations

import asyncio

import pytest
from in_cluster import Running, probe_service, start
from knlab_sandbox.auth import SIGNING_KEY, TokenAuthority

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SERVICES = "/apis/serving.knative.dev/v1/namespaces/default/services"
ACCOUNTS = "/api/v1/namespaces/default/serviceaccounts"
MERGE = "application/merge-patch+json"


@pytest.fixture
async def cluster(tmp_path):
    running = await start(tmp_path / "sandbox")
    try:
        yield running
    finally:
        await running.close()


async def _account_token(cluster: Running, name: str, namespace: str = "default") -> str:
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    account = await cluster.create(path, {"metadata": {"name": name}})
    tokens = TokenAuthority(cluster.server.settings.pki_dir / SIGNING_KEY)
    return tokens.issue(namespace, name, account["metadata"]["uid"])


def _role(name: str, rules: list[dict], kind: str = "Role") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "rules": rules}


def _binding(name: str, role: str, subjects: list[dict], kind: str = "RoleBinding", role_kind: str = "Role") -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name and role},
        "subjects": subjects,
    }


def _ksvc(name: str) -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"image": "127.0.0.1:1/none:v1"}]}}},
    }


async def test_a_role_with_resource_names_lets_a_service_account_patch_those_services_and_nothing_else(cluster):
    token = await _account_token(cluster, "autodeploy")
    for name in ("app", "other"):
        await cluster.create(SERVICES, _ksvc(name))
    rule = {
        "apiGroups": ["serving.knative.dev"],
        "resources": ["services"],
        "verbs": ["get", "patch"],
        "resourceNames": ["app"],
    }
    await cluster.create(f"{RBAC}/namespaces/default/roles", _role("autodeploy", [rule]))
    subject = {"kind": "ServiceAccount", "name": "autodeploy", "namespace": "default"}
    await cluster.create(f"{RBAC}/namespaces/default/rolebindings", _binding("autodeploy", "autodeploy", [subject]))

    patch = {"spec": {"template": {"spec": {"containers": [{"image": "127.0.0.1:1/none@sha256:" + "b" * 64}]}}}}
    status, patched = await cluster.api("PATCH", f"{SERVICES}/app", patch, token=token, content_type=MERGE)
    assert status == 200 and patched["spec"]["template"]["spec"]["containers"][0]["image"].endswith("b" * 64)
    # The webhook sees the ServiceAccount as the one who changed the spec.
    assert (
        patched["metadata"]["annotations"]["serving.knative.dev/lastModifier"]
        == "system:serviceaccount:default:autodeploy"
    )
    assert (await cluster.api("GET", f"{SERVICES}/app", token=token))[0] == 200

    status, denied = await cluster.api("PATCH", f"{SERVICES}/other", patch, token=token, content_type=MERGE)
    assert status == 403
    assert denied["reason"] == "Forbidden" and denied["code"] == 403
    assert denied["message"] == (
        'services.serving.knative.dev "other" is forbidden: User "system:serviceaccount:default:autodeploy" cannot '
        'patch resource "services" in API group "serving.knative.dev" in the namespace "default"'
    )
    assert denied["details"] == {"name": "other", "group": "serving.knative.dev", "kind": "services"}
    status, denied = await cluster.api("GET", SERVICES, token=token)
    assert status == 403 and denied["message"] == (
        'services.serving.knative.dev is forbidden: User "system:serviceaccount:default:autodeploy" cannot list '
        'resource "services" in API group "serving.knative.dev" in the namespace "default"'
    )
    assert (await cluster.api("DELETE", f"{SERVICES}/app", token=token))[0] == 403
    assert (await cluster.api("PATCH", f"{SERVICES}/app/status", {"status": {}}, token=token, content_type=MERGE))[
        0
    ] == 403
    assert (await cluster.api("GET", "/api/v1/namespaces/default/secrets", token=token))[0] == 403
    assert (await cluster.api("GET", f"{RBAC}/namespaces/default/roles", token=token))[0] == 403
    # Discovery is open to every authenticated user (system:discovery), as kubectl needs it.
    for path in ("/api", "/apis", "/apis/serving.knative.dev/v1", "/version", "/openapi/v2"):
        assert (await cluster.api("GET", path, token=token))[0] == 200, path
    # A watch of one name counts as that name; any other list does not.
    status, _ = await cluster.api("GET", f"{SERVICES}?fieldSelector=metadata.name%3Dapp", token=token)
    assert status == 403  # list is not granted, even for the granted name
    # The admin stays unrestricted.
    assert (await cluster.api("DELETE", f"{SERVICES}/other"))[0] == 200

    # The binding goes: so does the right.
    assert (await cluster.api("DELETE", f"{RBAC}/namespaces/default/rolebindings/autodeploy"))[0] == 200
    assert (await cluster.api("PATCH", f"{SERVICES}/app", patch, token=token, content_type=MERGE))[0] == 403


async def test_cluster_roles_wildcards_subresources_groups_and_a_missing_role(cluster):
    token = await _account_token(cluster, "watcher")
    await cluster.create(SERVICES, _ksvc("app"))
    reader = _role(
        "ksvc-status",
        [{"apiGroups": ["*"], "resources": ["services/status", "configmaps"], "verbs": ["get", "list", "watch"]}],
        kind="ClusterRole",
    )
    await cluster.create(f"{RBAC}/clusterroles", reader)
    group = {"kind": "Group", "name": "system:serviceaccounts:default"}
    await cluster.create(
        f"{RBAC}/clusterrolebindings",
        _binding("ksvc-status", "ksvc-status", [group], kind="ClusterRoleBinding", role_kind="ClusterRole"),
    )
    assert (await cluster.api("GET", f"{SERVICES}/app/status", token=token))[0] == 200
    assert (await cluster.api("GET", f"{SERVICES}/app", token=token))[0] == 403
    assert (await cluster.api("GET", "/api/v1/configmaps", token=token))[0] == 200  # cluster-wide
    status, _ = await cluster.api(
        "GET", "/api/v1/namespaces/kube-system/configmaps?watch=1&timeoutSeconds=1", token=token
    )
    assert status == 200

    # A binding to a role that does not exist says so in the denial.
    subject = {"kind": "ServiceAccount", "name": "watcher"}
    await cluster.create(f"{RBAC}/namespaces/default/rolebindings", _binding("ghost", "ghost", [subject]))
    status, denied = await cluster.api("DELETE", f"{SERVICES}/app", token=token)
    assert status == 403
    assert denied["message"].endswith(
        'cannot delete resource "services" in API group "serving.knative.dev" in the namespace "default": '
        'RBAC: role.rbac.authorization.k8s.io "ghost" not found'
    )
    # "*" grants everything in the binding's namespace, and only there.
    await cluster.create(
        f"{RBAC}/namespaces/default/roles", _role("ghost", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    )
    assert (await cluster.api("GET", "/api/v1/namespaces/default/secrets", token=token))[0] == 200
    status, denied = await cluster.api("GET", "/api/v1/namespaces/kube-system/secrets", token=token)
    assert status == 403 and denied["message"].endswith('in API group "" in the namespace "kube-system"')
    status, denied = await cluster.api("GET", "/api/v1/namespaces", token=token)
    assert status == 403 and denied["message"] == (
        'namespaces is forbidden: User "system:serviceaccount:default:watcher" cannot list resource "namespaces" '
        'in API group "" at the cluster scope'
    )


async def test_rbac_objects_are_validated_like_the_api_server_does(cluster):
    status, body = await cluster.api(
        "POST",
        f"{RBAC}/namespaces/default/roles",
        _role("bad", [{"apiGroups": [""], "resources": ["pods"]}, {"nonResourceURLs": ["/x"], "verbs": ["get"]}]),
    )
    assert status == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["rules[0].verbs", "rules[1].nonResourceURLs"]
    assert body["message"].startswith(
        'Role.rbac.authorization.k8s.io "bad" is invalid: [rules[0].verbs: Required value'
    )
    status, body = await cluster.api(
        "POST",
        f"{RBAC}/namespaces/default/rolebindings",
        _binding("bad", "x", [{"kind": "Robot", "name": "r"}], role_kind="Thing"),
    )
    assert status == 422
    assert {c["field"] for c in body["details"]["causes"]} == {"roleRef.kind", "subjects[0].kind"}
    created = await cluster.create(
        f"{RBAC}/namespaces/default/rolebindings", _binding("good", "x", [{"kind": "User", "name": "bob"}])
    )
    assert created["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"  # v1 defaulting
    created["roleRef"]["name"] = "y"
    status, body = await cluster.api("PUT", f"{RBAC}/namespaces/default/rolebindings/good", created)
    assert status == 422 and body["details"]["causes"][0]["field"] == "roleRef"
    status, body = await cluster.api(
        "POST",
        f"{RBAC}/clusterrolebindings",
        _binding(
            "sa", "view", [{"kind": "ServiceAccount", "name": "x"}], kind="ClusterRoleBinding", role_kind="ClusterRole"
        ),
    )
    assert status == 422 and body["details"]["causes"][0]["field"] == "subjects[0].namespace"
    # The seeded roles, as kube-apiserver keeps them.
    _, roles = await cluster.api("GET", f"{RBAC}/clusterroles")
    assert {"cluster-admin", "system:discovery"} <= {r["metadata"]["name"] for r in roles["items"]}


async def kubectl(cluster: Running, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={cluster.info['kubeconfig']}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_kubectl_creates_and_shows_roles_and_bindings_and_impersonates_a_service_account(cluster):
    await cluster.create(ACCOUNTS, {"metadata": {"name": "deployer"}})
    await cluster.create(SERVICES, _ksvc("app"))
    code, output = await kubectl(
        cluster,
        "create",
        "role",
        "deployer",
        "--verb=get,patch",
        "--resource=services.serving.knative.dev",
        "--resource-name=app",
    )
    assert code == 0, output
    code, output = await kubectl(
        cluster, "create", "rolebinding", "deployer", "--role=deployer", "--serviceaccount=default:deployer"
    )
    assert code == 0, output
    code, output = await kubectl(cluster, "get", "rolebinding", "deployer", "-o", "wide")
    assert code == 0 and "Role/deployer" in output and "default/deployer" in output, output
    code, output = await kubectl(cluster, "get", "role", "deployer", "-o", "jsonpath={.rules[0].resourceNames}")
    assert output == '["app"]'
    as_account = "--as=system:serviceaccount:default:deployer"
    code, output = await kubectl(
        cluster, as_account, "patch", "ksvc", "app", "--type=merge", "-p", '{"metadata":{"labels":{"x":"y"}}}'
    )
    assert code == 0, output
    # kubectl auth can-i asks a SelfSubjectAccessReview, answered by the same authorizer.
    code, output = await kubectl(cluster, as_account, "auth", "can-i", "patch", "ksvc/app")
    assert (code, output.strip()) == (0, "yes"), output
    code, output = await kubectl(cluster, as_account, "auth", "can-i", "patch", "ksvc/other")
    assert (code, output.strip()) == (1, "no"), output
    code, output = await kubectl(cluster, "auth", "can-i", "delete", "ksvc/app")
    assert (code, output.strip()) == (0, "yes"), output
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": "default",
                "verb": "patch",
                "group": "serving.knative.dev",
                "resource": "services",
                "name": "app",
            }
        },
    }
    token = TokenAuthority(cluster.server.settings.pki_dir / SIGNING_KEY).issue(
        "default", "deployer", (await cluster.api("GET", f"{ACCOUNTS}/deployer"))[1]["metadata"]["uid"]
    )
    status, answered = await cluster.api(
        "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review, token=token
    )
    assert status == 201
    assert answered["status"] == {
        "allowed": True,
        "reason": 'RBAC: allowed by RoleBinding "deployer/default" of Role "deployer" '
        'to ServiceAccount "deployer/default"',
    }
    code, output = await kubectl(cluster, as_account, "delete", "ksvc", "app")
    assert code != 0
    assert (
        'Error from server (Forbidden): services.serving.knative.dev "app" is forbidden: User '
        '"system:serviceaccount:default:deployer" cannot delete resource "services" in API group '
        '"serving.knative.dev" in the namespace "default"'
    ) in output


async def test_a_pod_patches_only_the_service_its_role_names(cluster):
    await cluster.hub_with_probe()
    await cluster.create(ACCOUNTS, {"metadata": {"name": "autodeploy"}})
    for name in ("app", "other"):
        await cluster.create(SERVICES, _ksvc(name))
    rule = {
        "apiGroups": ["serving.knative.dev"],
        "resources": ["services"],
        "verbs": ["get", "patch"],
        "resourceNames": ["app"],
    }
    await cluster.create(f"{RBAC}/namespaces/default/roles", _role("autodeploy", [rule]))
    subject = {"kind": "ServiceAccount", "name": "autodeploy", "namespace": "default"}
    await cluster.create(f"{RBAC}/namespaces/default/rolebindings", _binding("autodeploy", "autodeploy", [subject]))
    await cluster.create(SERVICES, probe_service("receiver", serviceAccountName="autodeploy"))
    await cluster.wait_ready("receiver")
    host = "receiver.default.svc.cluster.local"
    patch = {"spec": {"template": {"spec": {"containers": [{"image": "127.0.0.1:1/none@sha256:" + "a" * 64}]}}}}
    _, answer = await cluster.through_gateway(host, f"/api?path={SERVICES}/app", "PATCH", patch)
    assert answer["status"] == 200, answer
    assert answer["body"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("a" * 64)
    _, answer = await cluster.through_gateway(host, f"/api?path={SERVICES}/other", "PATCH", patch)
    assert answer["status"] == 403
    assert answer["body"]["message"].startswith(
        'services.serving.knative.dev "other" is forbidden: '
        'User "system:serviceaccount:default:autodeploy" cannot patch'
    )
