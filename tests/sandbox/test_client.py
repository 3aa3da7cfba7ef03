"""The kubernetes Python client and kubernetes.core (through ansible-playbook) against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Sandbox
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[2]


def configmap(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_crud_and_409_on_stale_update(sandbox: Sandbox, namespace: str) -> None:
    core = client.CoreV1Api(sandbox.api_client())
    created = core.create_namespaced_config_map(namespace, configmap("c", a="1"))
    assert created.metadata.uid and created.metadata.resource_version
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(namespace, configmap("c"))
    assert exists.value.status == 409 and '"reason":"AlreadyExists"' in exists.value.body.replace(" ", "")
    fresh = core.read_namespaced_config_map("c", namespace)
    fresh.data = {"a": "2"}
    core.replace_namespaced_config_map("c", namespace, fresh)
    created.data = {"a": "3"}  # still carries the first resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("c", namespace, created)
    assert stale.value.status == 409 and "the object has been modified" in stale.value.body
    assert core.read_namespaced_config_map("c", namespace).data == {"a": "2"}
    core.delete_namespaced_config_map("c", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("c", namespace)
    assert missing.value.status == 404


def test_watch_resumes_from_the_last_resource_version(sandbox: Sandbox, namespace: str) -> None:
    core = client.CoreV1Api(sandbox.api_client())
    listing = core.list_namespaced_config_map(namespace)
    start = listing.metadata.resource_version
    for i in range(3):
        core.create_namespaced_config_map(namespace, configmap(f"w{i}"))
    seen: list[str] = []
    rv = start
    # Two short watches, each resuming where the last ended: together they see every change once.
    for _ in range(2):
        stream = watch.Watch()
        for event in stream.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=1):
            seen.append(f"{event['type']} {event['object'].metadata.name}")
            rv = event["object"].metadata.resource_version
            if len(seen) == 2:
                stream.stop()
    assert seen == ["ADDED w0", "ADDED w1", "ADDED w2"]


def test_watch_410_after_compaction(start_sandbox) -> None:
    sb = start_sandbox("--fault-history-limit", "2")
    core = client.CoreV1Api(sb.api_client())
    old = core.create_namespaced_config_map("default", configmap("x")).metadata.resource_version
    for i in range(5):
        core.patch_namespaced_config_map("x", "default", {"data": {"i": str(i)}})
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=2
        ):
            pass
    assert gone.value.status == 410
    # The way out: list again and watch from the new version.
    fresh = core.list_namespaced_config_map("default").metadata.resource_version
    core.patch_namespaced_config_map("x", "default", {"data": {"i": "last"}})
    events = list(
        watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=fresh, timeout_seconds=1)
    )
    assert [e["object"].data["i"] for e in events] == ["last"]


def test_custom_objects(sandbox: Sandbox, namespace: str) -> None:
    custom = client.CustomObjectsApi(sandbox.api_client())
    task = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": {"name": "t"},
        "spec": {"steps": [{"name": "s", "image": "alpine", "script": "echo hi"}]},
    }
    created = custom.create_namespaced_custom_object("tekton.dev", "v1", namespace, "tasks", task)
    assert created["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(
        "tekton.dev", "v1", namespace, "tasks", "t", {"spec": {"description": "d"}}
    )
    assert patched["metadata"]["generation"] == 2 and patched["spec"]["description"] == "d"
    listed = custom.list_namespaced_custom_object("tekton.dev", "v1", namespace, "tasks")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["t"]


def test_kubernetes_core_modules_through_ansible_playbook(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(f"""\
- hosts: localhost
  gather_facts: false
  connection: local
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    cm:
      apiVersion: v1
      kind: ConfigMap
      metadata: {{name: from-ansible, namespace: {namespace}}}
      data: {{greeting: hello}}
  module_defaults:
    group/kubernetes.core.k8s:
      kubeconfig: {sandbox.kubeconfig}
  tasks:
    - kubernetes.core.k8s: {{state: present, definition: "{{{{ cm }}}}"}}
      register: first
    - kubernetes.core.k8s: {{state: present, definition: "{{{{ cm }}}}"}}
      register: second
    - kubernetes.core.k8s_info: {{kind: ConfigMap, namespace: {namespace}, name: from-ansible}}
      register: info
    - kubernetes.core.k8s:
        state: present
        apply: true
        definition: {{apiVersion: v1, kind: ConfigMap, metadata: {{name: applied, namespace: {namespace}}},
                     data: {{a: "1"}}}}
    - kubernetes.core.k8s: {{state: absent, kind: ConfigMap, namespace: {namespace}, name: from-ansible, wait: true}}
      register: removed
    - ansible.builtin.assert:
        that:
          - first is changed
          - second is not changed
          - info.resources[0].data.greeting == "hello"
          - removed is changed
""")
    site_packages = Path(client.__file__).resolve().parents[2]
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": f"{ROOT / '.build' / 'collections'}:{site_packages}",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    result = subprocess.run(
        [str(ansible_playbook), str(playbook)], capture_output=True, text=True, env=env, timeout=240, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "failed=0" in result.stdout
    names = sandbox.kubectl("get", "cm", "-n", namespace, "-o", "name").stdout.split()
    assert "configmap/applied" in names and "configmap/from-ansible" not in names
