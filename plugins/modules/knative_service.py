#!/usr/bin/python
# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: knative_service
short_description: Run a container image as a Knative Service, idempotently
version_added: 0.1.0
description:
  - Creates, updates or deletes a Knative Serving C(Service) (C(serving.knative.dev/v1)) and, by
    default, waits until it is ready to serve the configuration just written.
  - Only what the options set is compared with the Service in the cluster. The fields Knative's
    defaulting webhook adds (container name, C(containerConcurrency), C(timeoutSeconds),
    readiness probe unless O(readiness_probe) is given, traffic, C(serving.knative.dev/creator) and
    C(lastModifier) annotations, ...) and labels or annotations other tools add never cause a
    change.
  - An option left out is not managed; the Service keeps whatever value it has. To remove a
    scale bound set earlier, set it to V(0) (no bound) rather than leaving it out. Lists given
    (O(env), O(volumes), O(image_pull_secrets), O(command), O(args)) are owned as a whole, and an
    empty one (V([]), or V({}) for O(env)) clears that list on the Service. Kubernetes does not
    store empty lists, so a Service without the list already matches an empty one.
  - When O(min_scale) or O(max_scale) is set, the module writes the current annotation keys
    (C(autoscaling.knative.dev/min-scale), C(max-scale)) and removes the pre-1.1 spellings
    (C(minScale), C(maxScale)) of the same setting, with a warning, so only one value is left.
  - A change is sent as a JSON merge patch carrying the C(resourceVersion) read, so a concurrent
    writer cannot be overwritten; on such a conflict the module reads again and retries once.
  - Every option is validated before any request is sent to the cluster, with the rules Knative
    and Kubernetes apply (the image reference grammar, names, environment variable names, label
    and annotation keys and values, reserved ports and variables, scale bounds, timeouts, mount
    paths as Go's C(path.Clean) leaves them, quantities). A value of the wrong type (a list for a
    string, V(true) for a number, V(1e3) for an integer) is refused, not converted.
  - In check mode the write is sent as a server-side dry run (C(dryRun=All)), so the API server
    and Knative's webhooks validate it without storing anything. The module does not wait in
    check mode.
author:
  - knlab serverless developers (@knlab)
options:
  name:
    description:
      - Name of the Service. The Revisions are named after it (C(<name>-00001), ...).
      - A DNS-1035 label, as Knative requires. At most 63 lowercase letters, digits and C(-),
        starting with a letter and ending with a letter or digit.
    type: str
    required: true
  namespace:
    description:
      - Namespace of the Service.
    type: str
    default: default
  state:
    description:
      - V(present) creates the Service or brings the owned fields in line with the options.
      - V(absent) deletes it (and, with O(wait), waits until it is gone).
    type: str
    choices: [present, absent]
    default: present
  image:
    description:
      - Container image to run. Required with O(state=present).
      - A reference pinned by digest (C(repo@sha256:...)) rolls out exactly that image; Knative
        resolves a tag to a digest itself when it creates a Revision.
    type: str
  command:
    description:
      - Entrypoint of the container (C(command)); the image's entrypoint when not set.
      - V([]) removes a command set earlier, so the image's entrypoint is used again.
    type: list
    elements: str
  args:
    description:
      - Arguments to the entrypoint (C(args)).
      - V([]) removes arguments set earlier.
    type: list
    elements: str
  env:
    description:
      - Environment variables of the container.
      - Either a dict of name to value, or a list of Kubernetes C(EnvVar) dicts with C(name) and
        one of C(value) or C(valueFrom).
      - Values are sent as strings; booleans become V(true) or V(false). An empty value is sent as
        a variable without C(value), which is how Kubernetes stores it.
      - V({}) or V([]) removes every variable set earlier.
      - C(PORT), C(K_SERVICE), C(K_CONFIGURATION) and C(K_REVISION) are set by Knative and cannot
        be given.
    type: raw
  port:
    description:
      - The port the container listens on (Knative allows one). Knative uses V(8080) when not set
        and tells the container through the C(PORT) variable either way.
      - Ports 8012, 8013, 8022, 9090, 9091 (queue-proxy) and 8008 (profiling) are reserved.
    type: int
  min_scale:
    description:
      - Smallest number of replicas (annotation C(autoscaling.knative.dev/min-scale)). V(0) lets
        the Service scale to zero.
    type: int
  max_scale:
    description:
      - Largest number of replicas (annotation C(autoscaling.knative.dev/max-scale)). V(0) means
        no bound. Must not be less than O(min_scale).
    type: int
  concurrency:
    description:
      - Most requests one replica handles at once (C(containerConcurrency)). V(0) means no limit.
    type: int
  timeout_seconds:
    description:
      - Longest time a request may take (C(timeoutSeconds)), in seconds, at least 1. Leave it out
        for Knative's default (C(revision-timeout-seconds), 300 unless configured).
      - The maximum is the cluster's C(max-revision-timeout-seconds) in C(config-defaults) (600
        unless raised); Knative's webhook refuses a larger value, and the module reports its
        message.
    type: int
  annotations:
    description:
      - Annotations of the Revision template (C(spec.template.metadata.annotations)), for example
        C(autoscaling.knative.dev/target) or C(serving.knative.dev/progress-deadline).
      - Only the keys given are managed. Do not set the scale keys here together with
        O(min_scale) or O(max_scale).
    type: dict
  labels:
    description:
      - Labels of the Service. Only the keys given are managed.
      - Use O(cluster_local) rather than the C(networking.knative.dev/visibility) label.
    type: dict
  service_account:
    description:
      - Service account the Revisions run as (C(serviceAccountName)).
      - An empty string removes the setting, so the namespace's C(default) account is used.
      - Otherwise a DNS-1123 subdomain (a ServiceAccount name).
    type: str
  image_pull_secrets:
    description:
      - Names of Secrets used to pull O(image) (C(imagePullSecrets)).
      - V([]) removes the pull secrets set earlier; leave the option out to keep them unmanaged.
    type: list
    elements: str
  volumes:
    description:
      - Volumes, each mounted into the container at its O(volumes[].mount_path).
      - V([]) removes every volume and volume mount set earlier.
      - Knative mounts ConfigMap and Secret volumes read-only. PersistentVolumeClaims need the
        C(kubernetes.podspec-persistent-volume-claim) feature flag (and, to write,
        C(kubernetes.podspec-persistent-volume-write)) in C(config-features).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Name of the volume (a DNS-1123 label).
        type: str
        required: true
      mount_path:
        description:
          - Absolute path inside the container. C(/), C(/dev) and C(/dev/log) are reserved.
        type: str
        required: true
      read_only:
        description:
          - Mount read-only. For a claim, also marks the claim read-only, as Knative requires.
          - Cannot be V(false) for O(volumes[].config_map) and O(volumes[].secret).
        type: bool
      persistent_volume_claim:
        description:
          - Name of a PersistentVolumeClaim to mount.
        type: str
      config_map:
        description:
          - Name of a ConfigMap to mount (one file per key).
        type: str
      secret:
        description:
          - Name of a Secret to mount (one file per key).
        type: str
      empty_dir:
        description:
          - An empty directory that lives as long as the replica. Use V({}) for the defaults.
        type: dict
        suboptions:
          medium:
            description:
              - V(Memory) for a tmpfs; the node's disk when not set.
            type: str
            choices: ['', Memory]
          size_limit:
            description:
              - Largest size, as a Kubernetes quantity (for example V(1Gi)).
            type: str
  resources:
    description:
      - Compute resources of the container.
      - Quantities are compared by value, so V(1000m) and V(1) are the same CPU.
    type: dict
    suboptions:
      requests:
        description:
          - Resource name to quantity, for example C(cpu) V(100m) and C(memory) V(128Mi).
        type: dict
      limits:
        description:
          - Resource name to quantity.
        type: dict
  readiness_probe:
    description:
      - How the kubelet learns that a replica can take requests (the container's
        C(readinessProbe)). Knative runs the check itself, from queue-proxy, against the serving
        port; the kubelet asks queue-proxy.
      - Leave the option out to keep whatever the Service has. Given, the probe is owned whole.
        V({}) is Knative's default, a TCP connect that queue-proxy retries every 50 ms for up to
        10 s each time the kubelet asks.
      - With that default the kubelet asks every 10 s and gives up after 1 s. A container that
        needs more than about a second to listen after it starts is therefore Ready some 10 s
        later. Set O(readiness_probe.period_seconds) to V(1) to have it Ready within a second of
        listening, at the cost of one check a second per replica for its whole life.
    type: dict
    suboptions:
      path:
        description:
          - Check with an HTTP GET of this path (ready on a 2xx or 3xx answer) instead of a TCP
            connect. An absolute path, for example V(/healthz).
        type: str
      initial_delay_seconds:
        description:
          - Seconds after the container starts before the first check.
        type: int
      period_seconds:
        description:
          - Seconds between the kubelet's checks. V(0) (the default) is Knative's own mode
            described above.
        type: int
      timeout_seconds:
        description:
          - Seconds one check may take, at least V(1) (the default). Only with
            O(readiness_probe.period_seconds) above 0 (Knative refuses it otherwise).
        type: int
      failure_threshold:
        description:
          - Failed checks in a row before a ready replica is taken out of service, at least V(1)
            (default V(3)). Only with O(readiness_probe.period_seconds) above 0.
        type: int
      success_threshold:
        description:
          - Successful checks in a row before the replica is ready (default V(1)).
        type: int
  cluster_local:
    description:
      - Make the Service reachable only from inside the cluster (label
        C(networking.knative.dev/visibility=cluster-local)). V(false) removes that label.
    type: bool
    default: false
  wait:
    description:
      - With O(state=present), wait until Knative reports the Service C(Ready) for the
        configuration just written (C(status.observedGeneration) has caught up with
        C(metadata.generation)). A C(Ready=False) that lasts O(wait_window) seconds ends the wait
        with Knative's reason.
      - With O(state=absent), wait until the Service is gone.
      - The wait watches the Service, so it ends as soon as Knative reports.
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds to wait, at most V(86400) (a day).
    type: int
    default: 300
  wait_window:
    description:
      - Seconds a C(Ready=False) must last before the wait believes it, from V(0) (at once) to
        V(600); the equivalent of C(kn --wait-window).
      - Knative reports some failures on the way to C(Ready=True). Right after a template change
        the Service can still show the last revision's failure (C(RevisionMissing)), a claim that
        is still binding shows C(PodScheduled=False), a first crash C(ContainerHealthy=False).
        A C(False) that turns C(Unknown) or C(True) within the window does not end the wait; one
        that lasts ends it with Knative's reason, the window after it appeared.
    type: int
    default: 2
  wait_listen_timeout:
    description:
      - Seconds the app's container may run without the revision's pod becoming ready before the
        wait fails, naming the container, its port and its last log lines. From V(0) (never, leave
        it to Knative's progress deadline) to V(3600).
      - An app that listens on another port than O(port) is caught this way in seconds instead of
        after Knative's C(progress-deadline) (600 s by default). An app that needs longer to start
        needs a larger value.
      - The wait looks at the pods of the revision it rolls out every 2 seconds. Whatever the
        setting, it fails at once on a final pod problem (an image the registry does not have or
        refuses, a container that crashes again after its restart); other problems (an
        unschedulable pod, a claim still Pending, a pull error that may pass) go into the message
        of the failure or timeout that follows. This needs the right to list pods and read their
        logs; without it the wait goes on without looking.
    type: int
    default: 20
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - knlab.serverless._attributes
  - knlab.serverless._attributes.actiongroup_serverless
attributes:
  check_mode:
    support: full
    details:
      - Writes are sent as server-side dry runs; the result reports the same C(changed) and
        C(diff) as a real run.
  diff_mode:
    support: full
    details:
      - The diff shows the owned fields only.
  idempotent:
    support: full
requirements:
  - python >= 3.9
  - urllib3 and PyYAML
  - the kubernetes.core collection (its connection options)
  - the kubernetes library (>= 24.2.0), only for kubeconfig users with C(exec) or C(auth-provider) credentials
seealso:
  - name: Knative Serving API
    description: The Service resource and its fields.
    link: https://knative.dev/docs/serving/reference/serving-api/
  - module: kubernetes.core.k8s
"""

EXAMPLES = r"""
- name: Run the hello app and wait until it serves
  knlab.serverless.knative_service:
    name: hello
    namespace: demo
    image: registry.example.com/hello@sha256:6f3c0c1d0d2c5e7b3f0e5c8a9b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d
    port: 8080
    env:
      TARGET: World
    min_scale: 1
    max_scale: 3
  register: hello

- name: Show where it answers
  ansible.builtin.debug:
    msg: "{{ hello.url }} (revision {{ hello.latest_ready_revision }})"

- name: A registry with its storage on a claim, one replica, reachable inside the cluster only
  knlab.serverless.knative_service:
    name: hub
    namespace: demo
    image: docker.io/library/registry:2
    port: 5000
    min_scale: 1
    max_scale: 1
    cluster_local: true
    volumes:
      - name: storage
        mount_path: /var/lib/registry
        persistent_volume_claim: hub-storage

- name: An app that is Ready within a second of listening (the kubelet checks it every second)
  knlab.serverless.knative_service:
    name: hello
    namespace: demo
    image: registry.example.com/hello@sha256:6f3c0c1d0d2c5e7b3f0e5c8a9b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d
    readiness_probe:
      path: /
      period_seconds: 1

- name: Set the auth options once for every module of the collection
  module_defaults:
    group/knlab.serverless.serverless:
      kubeconfig: ~/.kube/config
      context: kind-knative
  block:
    - name: Remove the hello app
      knlab.serverless.knative_service:
        name: hello
        namespace: demo
        state: absent
"""

RETURN = r"""
url:
  description: The URL the Service answers on (C(status.url)); null until Knative has set it.
  returned: success
  type: str
  sample: http://hello.demo.127.0.0.1.sslip.io
address:
  description: The address inside the cluster (C(status.address.url)).
  returned: success
  type: str
  sample: http://hello.demo.svc.cluster.local
latest_created_revision:
  description: Name of the newest Revision (C(status.latestCreatedRevisionName)).
  returned: success, and when the wait failed
  type: str
  sample: hello-00002
latest_ready_revision:
  description: Name of the newest ready Revision (C(status.latestReadyRevisionName)).
  returned: success, and when the wait failed
  type: str
  sample: hello-00002
diagnosis:
  description:
    - When the wait for C(Ready) failed or timed out, what the pods of the newest revision showed
      (see O(wait_listen_timeout)); null when they showed nothing wrong.
  returned: when the wait failed
  type: dict
  contains:
    pod:
      description: The pod.
      type: str
    container:
      description: The container ("" for a pod-level problem).
      type: str
    image:
      description: The container's image.
      type: str
    reason:
      description:
        - The kubelet's reason (C(ErrImagePull), C(ImagePullBackOff), C(CrashLoopBackOff),
          C(CreateContainerConfigError), ...), the pod's scheduling reason (C(Unschedulable)),
          C(ClaimPending), or C(NotListening).
      type: str
    message:
      description: The finding in a sentence.
      type: str
    detail:
      description: The kubelet's whole message, when the sentence shortens it ("" otherwise).
      type: str
    final:
      description: Whether waiting longer could not help (the wait then ended at once).
      type: bool
    restarts:
      description: The container's restart count.
      type: int
    exit_code:
      description: The exit code of the container's last run, when it ended.
      type: int
    log_tail:
      description: The last lines of the container's log (of the run that crashed, for a crash loop).
      type: list
      elements: str
    log_error:
      description: Why the log could not be read, or null.
      type: str
  sample:
    pod: hello-00002-deployment-5d9c7b8f6-x2x7q
    container: user-container
    image: hub.default.svc.cluster.local/hello@sha256:0f1e...
    reason: CrashLoopBackOff
    message: container user-container (image ...) exited with code 3 and was restarted once (CrashLoopBackOff)
    detail: ""
    final: true
    restarts: 1
    exit_code: 3
    log_tail: ["Traceback (most recent call last):", "SystemExit: 3"]
    log_error: null
conditions:
  description: The Service's status conditions as Knative last reported them.
  returned: always
  type: list
  elements: dict
  sample:
    - type: Ready
      status: "True"
      lastTransitionTime: "2026-08-01T10:00:00Z"
duration:
  description: Seconds the module took, waiting included.
  returned: success
  type: float
  sample: 4.213
service:
  description:
    - The Service as the API server last returned it, without C(metadata.managedFields); null when
      it does not exist.
    - In check mode, the server's dry-run answer.
  returned: success
  type: dict
diff:
  description: The owned fields before and after (the same in check mode).
  returned: success
  type: dict
  contains:
    before:
      description: The owned fields as they were in the cluster (empty when the Service did not exist).
      type: dict
    after:
      description: The owned fields as the options set them (empty after a delete).
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.knlab.serverless.plugins.module_utils._client import get_client
from ansible_collections.knlab.serverless.plugins.module_utils._knative import run_service, validate
from ansible_collections.knlab.serverless.plugins.module_utils._module import ServerlessModule, argument_spec, run

VOLUME_SOURCES = ["persistent_volume_claim", "config_map", "secret", "empty_dir"]

OPTIONS = {
    "name": {"type": "str", "required": True},
    "namespace": {"type": "str", "default": "default"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "image": {"type": "str"},
    "command": {"type": "list", "elements": "str"},
    "args": {"type": "list", "elements": "str"},
    "env": {"type": "raw"},
    "port": {"type": "int"},
    "min_scale": {"type": "int"},
    "max_scale": {"type": "int"},
    "concurrency": {"type": "int"},
    "timeout_seconds": {"type": "int"},
    "annotations": {"type": "dict"},
    "labels": {"type": "dict"},
    "service_account": {"type": "str"},
    "image_pull_secrets": {"type": "list", "elements": "str", "no_log": False},
    "volumes": {
        "type": "list",
        "elements": "dict",
        "options": {
            "name": {"type": "str", "required": True},
            "mount_path": {"type": "str", "required": True},
            "read_only": {"type": "bool"},
            "persistent_volume_claim": {"type": "str"},
            "config_map": {"type": "str"},
            "secret": {"type": "str", "no_log": False},
            "empty_dir": {
                "type": "dict",
                "options": {
                    "medium": {"type": "str", "choices": ["", "Memory"]},
                    "size_limit": {"type": "str"},
                },
            },
        },
        "mutually_exclusive": [VOLUME_SOURCES],
        "required_one_of": [VOLUME_SOURCES],
    },
    "resources": {
        "type": "dict",
        "options": {
            "requests": {"type": "dict"},
            "limits": {"type": "dict"},
        },
    },
    "readiness_probe": {
        "type": "dict",
        "options": {
            "path": {"type": "str"},
            "initial_delay_seconds": {"type": "int"},
            "period_seconds": {"type": "int"},
            "timeout_seconds": {"type": "int"},
            "failure_threshold": {"type": "int"},
            "success_threshold": {"type": "int"},
        },
    },
    "cluster_local": {"type": "bool", "default": False},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 300},
    "wait_window": {"type": "int", "default": 2},
    "wait_listen_timeout": {"type": "int", "default": 20},
}


def execute(module: AnsibleModule) -> dict:
    # Every option is checked before a client exists, so bad input never reaches the cluster.
    validate(module.params)
    client = get_client(module)
    return run_service(client, module.params, check_mode=module.check_mode, warn=module.warn)


def main() -> None:
    module = ServerlessModule(
        argument_spec=argument_spec(**OPTIONS),
        required_if=[("state", "present", ["image"])],
        supports_check_mode=True,
    )
    run(module, execute)


if __name__ == "__main__":
    main()
