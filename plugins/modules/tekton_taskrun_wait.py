#!/usr/bin/python
# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tekton_taskrun_wait
short_description: Wait for a Tekton TaskRun to finish and return its results
version_added: 0.1.0
description:
  - Waits until the C(Succeeded) condition of the Tekton C(TaskRun) O(name) is V(True) or V(False).
  - Watches the TaskRun from the version it just read, so the module returns as soon as the run
    ends; it resumes a dropped watch, starts over when the API server has compacted the history,
    and polls only when the watch is refused.
  - Any C(Succeeded=False) ends the wait as a failure, whatever the reason (C(Failed), C(StepFailed),
    C(TaskRunTimeout), C(TaskRunCancelled), C(TaskRunImagePullFailed), ...). The failure message
    carries the TaskRun's reason and message, the failing step and its exit code, and the last
    O(log_lines) lines of that step's container log.
  - C(Succeeded=Unknown) keeps the wait going, including C(TaskRunCancelled) while a cancel is
    still in progress and C(PullImageFailed) while Kubernetes retries a pull.
  - On success, returns the run's results, its steps, its pod and how long it took.
author:
  - knlab serverless developers (@knlab)
options:
  name:
    description:
      - Name of the TaskRun, for example RV(knlab.serverless.tekton_taskrun#module:name) of the
        run M(knlab.serverless.tekton_taskrun) started.
    type: str
    required: true
  namespace:
    description:
      - Namespace of the TaskRun.
    type: str
    default: default
  timeout:
    description:
      - Seconds to wait for the run to finish, more than V(0) and at most V(86400) (a day).
      - This is how long the module waits, not the run's own C(spec.timeout); when it passes, the
        module fails with the last condition it saw and the run goes on.
    type: int
    default: 600
  log_lines:
    description:
      - How many of the last lines of the failing step's log the failure reports, at most V(10000).
        V(0) reads no log.
      - When the log cannot be read, for example because Tekton deleted the pod of a cancelled run,
        the failure says so in RV(log_error) instead.
    type: int
    default: 20
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - knlab.serverless._attributes
  - knlab.serverless._attributes.actiongroup_serverless
  - knlab.serverless._attributes.info_module
requirements:
  - python >= 3.9
  - urllib3 and PyYAML
  - the kubernetes.core collection (its connection options)
  - the kubernetes library (>= 24.2.0), only for kubeconfig users with C(exec) or C(auth-provider) credentials
notes:
  - The module only reads, so check mode runs it normally and C(changed) is always false. A run
    that a check-mode M(knlab.serverless.tekton_taskrun) would have created does not exist, so
    waiting for it in the same check-mode play fails with "not found".
  - The failing step is the first step that terminated with a non-zero exit code (steps C(Skipped)
    after an earlier failure and steps that failed with C(onError=continue) do not count), or that
    Tekton's controller stopped when it failed the run (termination reason C(TaskRunTimeout),
    C(TaskRunCancelled), C(TaskRunImagePullFailed) or C(CreateContainerConfigError)), or that is
    stuck waiting (for example on C(ImagePullBackOff)). Its log is the container C(step-<name>) of
    the run's pod.
  - When Tekton's controller fails a run, it marks the steps still running or waiting as terminated
    with exit code 1 and the run's reason, and deletes the pod. That exit code is not the step's, so
    RV(exit_code) is then null, the message says which of these stopped the step, and RV(log_error)
    says why there is no log. The run's message may end with the condition before it, after the
    words C(Previous status) (for example C(PullImageFailed)).
  - The TaskRun's results come back as RV(task_results), not C(results). Ansible reserves a
    module's top-level C(results) key for the results of a loop; a mapping returned under it is
    renamed to C(ansible_module_results), with a warning. So C(results) cannot be used here.
  - A failure returns, besides C(msg), what a success returns (RV(reason), RV(message), RV(steps),
    RV(pod_name), ...) and RV(failed_step), RV(exit_code), RV(log_tail) and RV(log_error).
seealso:
  - module: knlab.serverless.tekton_taskrun
  - name: TaskRun status
    description: The Succeeded condition and its reasons.
    link: https://tekton.dev/docs/pipelines/taskruns/#monitoring-execution-status
"""

EXAMPLES = r"""
- name: Start a build
  knlab.serverless.tekton_taskrun:
    generate_name: build-hello-
    task_ref:
      name: kaniko
    params:
      IMAGE: hub.default.svc.cluster.local/demo/hello:latest
    workspaces:
      - name: source
        configMap:
          name: hello-src-3f2b8c
    idempotency_key: "{{ hello_source_digest }}"
  register: build

- name: Wait up to 15 minutes for it, with 40 log lines if it fails
  knlab.serverless.tekton_taskrun_wait:
    name: "{{ build.name }}"
    timeout: 900
    log_lines: 40
  register: built

- name: Use the digest kaniko pushed
  ansible.builtin.set_fact:
    hello_image: "hub.default.svc.cluster.local/demo/hello@{{ built.task_results.IMAGE_DIGEST }}"
"""

RETURN = r"""
name:
  description: Name of the TaskRun.
  returned: always
  type: str
  sample: build-hello-x7k2p
namespace:
  description: Namespace of the TaskRun.
  returned: always
  type: str
  sample: default
succeeded:
  description: Whether the run succeeded (always true when the module does not fail).
  returned: always
  type: bool
  sample: true
reason:
  description: Reason of the C(Succeeded) condition.
  returned: always
  type: str
  sample: Succeeded
message:
  description: Message of the C(Succeeded) condition.
  returned: always
  type: str
  sample: All Steps have completed executing
task_results:
  description:
    - The run's results (C(status.results)), name to value.
    - Named C(task_results), not C(results) - Ansible reserves a module's top-level C(results)
      key for loop results and would rename it to C(ansible_module_results). Read them as, for
      example, C(built.task_results.IMAGE_DIGEST).
    - String results are strings (kaniko's C(IMAGE_DIGEST) is
      C(sha256:<hex>)), array results lists and object results dicts.
  returned: always
  type: dict
  sample:
    IMAGE_DIGEST: sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270
    IMAGE_URL: hub.example/demo/hello@sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270
steps:
  description: The run's steps in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the step.
      type: str
      sample: build-and-push
    container:
      description: Name of the step's container in the pod.
      type: str
      sample: step-build-and-push
    state:
      description: V(terminated), V(running), V(waiting) or V(unknown).
      type: str
      sample: terminated
    exit_code:
      description: Exit code of a terminated step, else null.
      type: int
      sample: 0
    reason:
      description: Reason of the container state (for example V(Completed), V(Error), V(ImagePullBackOff)).
      type: str
      sample: Completed
    termination_reason:
      description:
        - Tekton's termination reason. V(Completed), V(Continued) (failed under
          C(onError=continue)), V(Skipped), or the run's reason when the controller stopped the step
          (V(TaskRunTimeout), V(TaskRunCancelled), V(TaskRunImagePullFailed),
          V(CreateContainerConfigError)); then RV(steps[].exit_code) is Tekton's 1, not the step's own.
      type: str
      sample: Completed
    started_at:
      description: When the step's container started.
      type: str
      sample: "2026-08-01T10:00:05Z"
    finished_at:
      description: When the step's container finished.
      type: str
      sample: "2026-08-01T10:00:41Z"
pod_name:
  description: Name of the run's pod (C(status.podName)).
  returned: always
  type: str
  sample: build-hello-x7k2p-pod
start_time:
  description: When the run started (C(status.startTime)).
  returned: always
  type: str
  sample: "2026-08-01T10:00:00Z"
completion_time:
  description: When the run finished (C(status.completionTime)).
  returned: always
  type: str
  sample: "2026-08-01T10:00:42Z"
duration:
  description: Seconds from RV(start_time) to RV(completion_time), or null when either is missing.
  returned: always
  type: float
  sample: 42.0
failed_step:
  description: Name of the step that made the run fail, or null when no step is to blame (for example a missing Task).
  returned: on failure
  type: str
  sample: build-and-push
exit_code:
  description:
    - Exit code of RV(failed_step), or null when it did not terminate by itself (a failed image pull, or a
      step Tekton's controller stopped on a timeout, a cancel or a failed pull).
  returned: on failure
  type: int
  sample: 1
log_tail:
  description: The last O(log_lines) lines of the log of RV(failed_step)'s container.
  returned: on failure
  type: list
  elements: str
  sample: ["error building image: RUN is not supported"]
log_error:
  description: Why the log of RV(failed_step) could not be read, or null when it was read.
  returned: on failure
  type: str
  sample: "log of step-build-and-push unavailable: pod build-hello-x7k2p-pod is gone"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.knlab.serverless.plugins.module_utils._client import get_client
from ansible_collections.knlab.serverless.plugins.module_utils._module import ServerlessModule, argument_spec, run
from ansible_collections.knlab.serverless.plugins.module_utils._tekton import (
    validate_wait_options,
    wait_taskrun,
)

OPTIONS = {
    "name": {"type": "str", "required": True},
    "namespace": {"type": "str", "default": "default"},
    "timeout": {"type": "int", "default": 600},
    "log_lines": {"type": "int", "default": 20},
}


def execute(module: AnsibleModule) -> dict:
    params = module.params
    namespace, name, timeout, log_lines = (params[key] for key in ("namespace", "name", "timeout", "log_lines"))
    # Bad options fail before a client exists, so they never reach the cluster.
    validate_wait_options(namespace, name, timeout, log_lines)
    return wait_taskrun(get_client(module), namespace, name, timeout, log_lines)


def main() -> None:
    module = ServerlessModule(argument_spec=argument_spec(**OPTIONS), supports_check_mode=True)
    run(module, execute)


if __name__ == "__main__":
    main()
