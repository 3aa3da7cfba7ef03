#!/usr/bin/python
# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kube_objects
short_description: Read, keep and delete plain Kubernetes objects, several in one task
version_added: 0.1.0
description:
  - The plumbing of the knlab.serverless roles (claims, ConfigMaps, Tekton Tasks, their reads and
    their clean-up) in one task instead of one M(kubernetes.core.k8s) or M(kubernetes.core.k8s_info)
    task each. Works on any kind the API server serves.
  - First answers every O(read) query, then makes every O(present) object match, then deletes every
    O(absent) object, in the order given. A failure stops the module where it happened.
  - An O(present) object that does not exist is created. One that exists is compared on the fields
    given only, so defaults the API server or its webhooks add, and fields other writers own, never
    count as a change; a field given as V(null) must be absent. A difference is written as a JSON
    merge patch of the fields given (a list is replaced whole).
  - An O(absent) object that does not exist is no change. With O(wait), the module returns once
    each deleted object is gone (its finalizers done).
  - The values of a v1 Secret, given in O(present) or read, never show. Each C(data) and
    C(stringData) value, in base64 and decoded, and each of its lines, is masked as Ansible masks a
    C(no_log) option, everywhere in the result (RV(read), RV(objects), RV(diff), the invocation that
    C(-vvv) prints, a failure message); the keys show. As with a C(no_log) option, a very short
    value is masked wherever it occurs in the result. Read a Secret's values with
    M(kubernetes.core.k8s_info).
author:
  - knlab serverless developers (@knlab)
options:
  read:
    description:
      - Queries answered before any write. Each is a dict with C(api_version), C(kind), C(namespace)
        (default O(namespace); V(null) for all namespaces) and either C(name) (one object) or
        C(label_selectors) (a list of selectors, all of which must match).
      - The answers are in RV(read), one list per query, in the same order.
    type: list
    elements: dict
    default: []
  present:
    description:
      - Objects that must exist with the fields given, each a whole object with C(apiVersion), C(kind)
        and C(metadata.name); C(metadata.namespace) defaults to O(namespace) for namespaced kinds.
    type: list
    elements: dict
    default: []
  absent:
    description:
      - Objects to delete, each with C(apiVersion), C(kind) and C(metadata.name) (and
        C(metadata.namespace), default O(namespace)). Deletion is in the background, as
        C(kubectl delete) does it.
    type: list
    elements: dict
    default: []
  namespace:
    description:
      - The namespace of every object and query that does not name one.
    type: str
    default: default
  wait:
    description:
      - Wait until every object O(absent) deleted is gone. Not in check mode.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for each deleted object, from V(1) to V(86400).
    type: int
    default: 120
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - knlab.serverless._attributes
  - knlab.serverless._attributes.actiongroup_serverless
attributes:
  check_mode:
    support: full
    details:
      - Every write is a server-side dry run (C(dryRun=All)), so the API server validates it and its
        admission webhooks see it. A server that cannot dry-run a write gets a warning instead.
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - python >= 3.9
  - urllib3 and PyYAML
  - the kubernetes.core collection (its connection options)
  - the kubernetes library (>= 24.2.0), only for kubeconfig users with C(exec) or C(auth-provider) credentials
notes:
  - Unlike M(kubernetes.core.k8s), it has no templates, no server-side apply and no waiting for
    conditions; use M(knlab.serverless.knative_service) and M(knlab.serverless.tekton_taskrun_wait)
    for Knative Services and TaskRuns.
seealso:
  - module: kubernetes.core.k8s
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Keep a claim and a ConfigMap, after reading Knative's feature flags
  knlab.serverless.kube_objects:
    namespace: default
    read:
      - api_version: v1
        kind: ConfigMap
        namespace: knative-serving
        name: config-features
    present:
      - apiVersion: v1
        kind: PersistentVolumeClaim
        metadata:
          name: hub-data
        spec:
          accessModes: [ReadWriteOnce]
          resources:
            requests:
              storage: 1Gi
      - apiVersion: v1
        kind: ConfigMap
        metadata:
          name: settings
        data:
          level: debug
  register: objects

- name: Show the feature flags read first
  ansible.builtin.debug:
    var: (objects.read[0] | first).data

- name: Delete a TaskRun and wait until it is gone
  knlab.serverless.kube_objects:
    absent:
      - apiVersion: tekton.dev/v1
        kind: TaskRun
        metadata:
          name: hello-build-x7k2p
          namespace: default
"""

RETURN = r"""
read:
  description: The answer to each O(read) query, in order, each a list of objects (empty when none exists).
  returned: always
  type: list
  elements: list
  sample: [[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-features"}}]]
objects:
  description:
    - Each O(present) object as the API server has it after the module, in order. In check mode, what the
      dry run answered (or the object as read, or as given, when the server could not dry-run it).
  returned: always
  type: list
  elements: dict
  sample: [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "hub-data"}}]
deleted:
  description: The O(absent) objects that existed and were deleted, as C(<kind> <namespace>/<name>).
  returned: always
  type: list
  elements: str
  sample: ["TaskRun default/hello-build-x7k2p"]
diff:
  description: Per object changed, the fields given as they were (C(before)) and as they are to be (C(after)).
  returned: always
  type: list
  elements: dict
  sample: [{"before": {}, "after": {"data": {"level": "debug"}}}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.knlab.serverless.plugins.module_utils._client import get_client
from ansible_collections.knlab.serverless.plugins.module_utils._module import ServerlessModule, argument_spec, run
from ansible_collections.knlab.serverless.plugins.module_utils._objects import run_objects, secret_values, validate

OPTIONS = {
    "read": {"type": "list", "elements": "dict", "default": []},
    "present": {"type": "list", "elements": "dict", "default": []},
    "absent": {"type": "list", "elements": "dict", "default": []},
    "namespace": {"type": "str", "default": "default"},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 120},
}


def execute(module: AnsibleModule) -> dict:
    # Every option is checked before a client exists, so bad input never reaches the cluster.
    # A Secret's values never show: not in the result, its diff, the invocation, nor a failure.
    module.no_log_values.update(secret_values(module.params["present"]))
    validate(module.params)
    result = run_objects(get_client(module), module.params, check_mode=module.check_mode, warn=module.warn)
    module.no_log_values.update(secret_values([obj for found in result["read"] for obj in found] + result["objects"]))
    return result


def main() -> None:
    module = ServerlessModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, execute)


if __name__ == "__main__":
    main()
