#!/usr/bin/python
# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tekton_taskrun
short_description: Start a Tekton TaskRun once per piece of work, or cancel one
version_added: 0.1.0
description:
  - Creates a Tekton C(TaskRun) (C(tekton.dev/v1)) for a Task named in O(task_ref) or embedded in
    O(task_spec), with parameters, workspaces, a service account, a timeout and labels.
  - With O(idempotency_key) (for example the digest of the source a build uses), an earlier
    TaskRun for the same key in O(namespace) that succeeded or is still running is returned instead
    of creating another one. A run for that key that failed, timed out or was cancelled is never
    reused, so running the task again after a failure starts a new run.
  - With O(name) and no O(idempotency_key), a TaskRun of that name that already exists is returned
    as it is, whatever its state, because a TaskRun cannot be changed once it runs.
  - With O(state=cancelled), asks Tekton to cancel the run O(name) by setting C(spec.status) to
    C(TaskRunCancelled). A run that has already finished, is already being cancelled or does not
    exist is left alone.
  - The module does not wait for the run; use M(knlab.serverless.tekton_taskrun_wait) for that.
  - Every option is validated before any request is sent to the cluster.
author:
  - knlab serverless developers (@knlab)
options:
  name:
    description:
      - Name of the TaskRun.
      - A DNS-1123 subdomain of at most 63 characters (lowercase letters, digits, C(-) and C(.),
        starting and ending with a letter or digit), Tekton's rule for TaskRun names.
      - Exactly one of O(name) and O(generate_name) is required with O(state=present).
        O(state=cancelled) needs O(name).
    type: str
  generate_name:
    description:
      - Prefix of a name the API server completes with five random characters, for example
        V(build-hello-). The usual choice with O(idempotency_key).
      - At most 58 lowercase letters, digits, C(-) and C(.), starting with a letter or digit, so that
        the completed name follows the rule of O(name).
    type: str
  namespace:
    description:
      - Namespace of the TaskRun.
    type: str
    default: default
  state:
    description:
      - V(present) creates the TaskRun, or finds the one that already does this work.
      - V(cancelled) cancels the running TaskRun O(name). Only O(name) and O(namespace) are used.
    type: str
    choices: [present, cancelled]
    default: present
  task_ref:
    description:
      - The Task to run, by reference (C(spec.taskRef)). Exactly one of O(task_ref) and O(task_spec)
        is required with O(state=present).
    type: dict
    suboptions:
      name:
        description:
          - Name of a Task in O(namespace). Required unless O(task_ref.resolver) is set.
        type: str
      kind:
        description:
          - Kind of the referenced task. Tekton assumes V(Task) when it is not set.
        type: str
      resolver:
        description:
          - A remote resolver (for example V(git), V(bundles), V(hub), V(cluster)) that fetches the
            Task; mutually exclusive with O(task_ref.name).
        type: str
      params:
        description:
          - Parameters of the resolver, name to value, for example C(url) and C(pathInRepo) for
            the V(git) resolver.
        type: dict
  task_spec:
    description:
      - A whole Task spec embedded in the run (C(spec.taskSpec)), with at least one step, as in the
        C(spec) of a C(tekton.dev/v1) Task.
    type: dict
  params:
    description:
      - Parameter values, name to value. A value is a string, a list of strings (an C(array)
        parameter) or a dict of strings (an C(object) parameter).
      - Numbers are sent as their text and booleans as V(true) or V(false).
    type: dict
  workspaces:
    description:
      - Workspace bindings as Tekton's C(WorkspaceBinding), each with C(name) (and optional
        C(subPath)) plus exactly one of C(emptyDir), C(persistentVolumeClaim),
        C(volumeClaimTemplate), C(configMap), C(secret), C(projected) or C(csi), written as in the
        TaskRun spec.
    type: list
    elements: dict
  service_account:
    description:
      - Service account the run's pod uses (C(spec.serviceAccountName)). Tekton uses its configured
        default account (normally V(default)) when it is not set.
      - A DNS-1123 subdomain (a ServiceAccount name).
    type: str
  timeout:
    description:
      - How long the run may take, as a Go duration such as V(90s), V(10m) or V(1h30m).
        V(0) means no timeout. Negative durations are refused.
      - Tekton's default (normally one hour) applies when it is not set.
    type: str
  labels:
    description:
      - Labels of the TaskRun, name to value. Keys and values are checked against the Kubernetes
        label rules before anything is sent.
      - The key C(serverless.knlab.io/idempotency-key) is reserved for O(idempotency_key).
    type: dict
  idempotency_key:
    description:
      - Identifies the work this run does, for example the digest of the source it builds. Include
        everything that should cause a new run, such as the image it pushes.
      - The key is stored in the label C(serverless.knlab.io/idempotency-key), which the lookup
        selects on, and, unchanged, in the annotation of the same name.
      - A key that is a valid label value (at most 63 letters, digits, C(-), C(_) or C(.), starting
        and ending with a letter or digit) is used as the label value as it is. Any other key, such
        as V(sha256:...) with its colon and 71 characters, is stored in the label as C(sha256-)
        followed by the first 56 hex digits of the key's SHA-256; the annotation keeps the full key.
      - An earlier run for this key that succeeded is reused first; otherwise the newest one still
        running (or pending) is reused; failed and cancelled runs are ignored.
    type: str
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - knlab.serverless._attributes
  - knlab.serverless._attributes.actiongroup_serverless
attributes:
  check_mode:
    support: full
    details:
      - Nothing is created or patched. When a run would be created, the module sends it to the API
        server as a dry run (C(dryRun=All)), so Tekton's admission webhook validates it, and returns
        RV(created=true). With O(generate_name), RV(name) is then null because the server only picks
        the name when it really creates the run.
  diff_mode:
    support: full
    details:
      - A created run shows the TaskRun that was sent; a cancel shows the change of C(spec.status).
  idempotent:
    support: partial
    details:
      - Idempotent with O(name) or with O(idempotency_key). With O(generate_name) and no
        O(idempotency_key), every run creates a new TaskRun.
requirements:
  - python >= 3.9
  - urllib3 and PyYAML
  - the kubernetes.core collection (its connection options)
  - the kubernetes library (>= 24.2.0), only for kubeconfig users with C(exec) or C(auth-provider) credentials
notes:
  - Tekton deletes the pod of a cancelled run, and with it the step logs, unless its feature flag
    C(keep-pod-on-cancel) is V("true").
seealso:
  - module: knlab.serverless.tekton_taskrun_wait
  - name: Tekton TaskRuns
    description: The TaskRun resource, its fields and its status.
    link: https://tekton.dev/docs/pipelines/taskruns/
"""

EXAMPLES = r"""
- name: Build the app once per source digest
  knlab.serverless.tekton_taskrun:
    generate_name: build-hello-
    namespace: default
    task_ref:
      name: kaniko
    params:
      IMAGE: hub.default.svc.cluster.local/demo/hello:latest
      EXTRA_ARGS:
        - --insecure
    workspaces:
      - name: source
        configMap:
          name: hello-src-3f2b8c
    timeout: 15m
    labels:
      app.kubernetes.io/name: hello
    idempotency_key: "{{ hello_source_digest }}"
  register: build

- name: Wait for it (instant when the run was reused and has succeeded)
  knlab.serverless.tekton_taskrun_wait:
    name: "{{ build.name }}"
    namespace: default
  register: built

- name: Run an embedded task with an array parameter
  knlab.serverless.tekton_taskrun:
    name: say-hello
    task_spec:
      params:
        - name: words
          type: array
      steps:
        - name: say
          image: docker.io/library/busybox:1.36
          args: ["$(params.words[*])"]
          command: [echo]
    params:
      words: [hello, world]

- name: Cancel a run
  knlab.serverless.tekton_taskrun:
    name: "{{ build.name }}"
    namespace: default
    state: cancelled
"""

RETURN = r"""
name:
  description:
    - Name of the TaskRun that was created, reused or cancelled.
    - Null in check mode when a run would be created from O(generate_name).
  returned: always
  type: str
  sample: build-hello-x7k2p
namespace:
  description: Namespace of the TaskRun.
  returned: always
  type: str
  sample: default
created:
  description: Whether a new TaskRun was created (or would be, in check mode).
  returned: always
  type: bool
  sample: true
reused:
  description: Whether an existing TaskRun was returned instead of creating one.
  returned: always
  type: bool
  sample: false
status:
  description:
    - Where the TaskRun was when the module saw it, from its C(Succeeded) condition and C(spec.status).
    - V(new) (no condition yet), V(pending), V(running), V(cancelling), V(succeeded), V(failed) (any
      C(Succeeded=False) except a cancel, including timeouts), V(cancelled); V(absent) when
      O(state=cancelled) found no such run.
  returned: always
  type: str
  sample: running
taskrun:
  description:
    - The TaskRun as the API server returned it (empty when it does not exist).
  returned: always
  type: dict
  sample:
    apiVersion: tekton.dev/v1
    kind: TaskRun
    metadata:
      name: build-hello-x7k2p
      namespace: default
    spec:
      taskRef:
        kind: Task
        name: kaniko
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.knlab.serverless.plugins.module_utils._client import get_client
from ansible_collections.knlab.serverless.plugins.module_utils._module import ServerlessModule, argument_spec, run
from ansible_collections.knlab.serverless.plugins.module_utils._tekton import (
    TaskRunRequest,
    cancel_taskrun,
    ensure_taskrun,
    validate_name,
    validate_namespace,
)

OPTIONS = {
    "name": {"type": "str"},
    "generate_name": {"type": "str"},
    "namespace": {"type": "str", "default": "default"},
    "state": {"type": "str", "choices": ["present", "cancelled"], "default": "present"},
    "task_ref": {
        "type": "dict",
        "options": {
            "name": {"type": "str"},
            "kind": {"type": "str"},
            "resolver": {"type": "str"},
            "params": {"type": "dict"},
        },
    },
    "task_spec": {"type": "dict"},
    "params": {"type": "dict"},
    "workspaces": {"type": "list", "elements": "dict"},
    "service_account": {"type": "str"},
    "timeout": {"type": "str"},
    "labels": {"type": "dict"},
    # A digest or similar identifier, stored in plain sight as a label: not a secret.
    "idempotency_key": {"type": "str", "no_log": False},
}


def execute(module: AnsibleModule) -> dict:
    params = module.params
    if params["state"] == "cancelled":
        namespace, name = validate_namespace(params["namespace"]), validate_name(params["name"])
        return cancel_taskrun(get_client(module), namespace, name, check_mode=module.check_mode)
    request = TaskRunRequest.from_params(params)
    result = ensure_taskrun(get_client(module), request, check_mode=module.check_mode, warn=module.warn)
    if not module._diff:
        result.pop("diff", None)
    return result


def main() -> None:
    module = ServerlessModule(
        argument_spec=argument_spec(**OPTIONS),
        mutually_exclusive=[("name", "generate_name"), ("task_ref", "task_spec")],
        required_if=[
            ("state", "present", ("name", "generate_name"), True),
            ("state", "present", ("task_ref", "task_spec"), True),
            ("state", "cancelled", ("name",)),
        ],
        supports_check_mode=True,
    )
    run(module, execute)


if __name__ == "__main__":
    main()
