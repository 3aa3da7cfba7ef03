#!/usr/bin/python
# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: registry_image_info
short_description: Ask a container registry for a repository's tags and an image's digest
version_added: 0.1.0
description:
  - Queries a registry through the Docker registry HTTP API v2 (CNCF distribution, the C(registry:2)
    and C(registry:3) images, and registries that follow the OCI distribution spec).
  - Lists the tags of O(repository), following C(Link) paging, and, when O(tag) is given, returns
    the digest and media type of that tag or digest.
  - A repository or tag the registry does not know is reported as RV(exists=false), not as a failure.
  - Read-only; the module never changes anything and runs normally in check mode.
  - Uses Ansible's own HTTP helpers, so it needs no Python library beyond ansible-core and no
    connection to Kubernetes.
author:
  - knlab serverless developers (@knlab)
extends_documentation_fragment:
  - knlab.serverless._attributes
  - knlab.serverless._attributes.info_module
options:
  registry_url:
    description:
      - Base URL of the registry, C(http://) or C(https://) followed by the host and an optional port,
        for example V(http://127.0.0.1:5000) or V(https://hub.example.com).
      - Only scheme, host and port; the API is always at C(/v2/) on that host.
    type: str
    required: true
  repository:
    description:
      - The repository path inside the registry, without the registry host and without a tag,
        for example V(demo/hello) or V(library/registry).
      - Path components are lowercase letters and digits separated by C(.), C(_), C(__) or C(-),
        joined by C(/). Invalid names fail before any request is sent.
    type: str
    required: true
  tag:
    description:
      - A tag (for example V(v1)) or a digest (for example V(sha256:3f2b...), 64 hex digits) to look up.
      - When omitted, only the repository's tags are listed and RV(exists) says whether the
        repository is known.
    type: str
  username:
    description:
      - User for basic authentication (htpasswd), also used to get a token from registries that
        answer with a C(Bearer) challenge.
      - Credentials come only from O(username) and O(password), never from C(~/.netrc).
    type: str
  password:
    description:
      - Password for O(username).
    type: str
  validate_certs:
    description:
      - Whether to verify the registry's TLS certificate for C(https://) URLs.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificates that signed the registry's certificate, for a registry
        with a private or self-signed CA.
    type: path
  host_header:
    description:
      - Send this C(Host) header instead of the one from O(registry_url).
      - Reaches a registry behind an ingress or gateway that routes by host name, by pointing
        O(registry_url) at the gateway's address; useful for clusters without DNS for their
        service domain. Credentials and this header are not sent along a redirect.
      - With C(https://), the certificate is still checked against the host of O(registry_url).
    type: str
  timeout:
    description:
      - Seconds to wait for each HTTP answer, more than V(0) and at most V(86400).
    type: float
    default: 10
notes:
  - Tags are requested from C(/v2/<repository>/tags/list) and digests with a C(HEAD) request on
    C(/v2/<repository>/manifests/<tag>) that accepts Docker schema 2 manifests and manifest lists and
    OCI manifests and indexes, so multi-platform images report their index digest.
  - A repository whose last tag was deleted still exists for the registry; it is returned with an
    empty RV(tags) list.
seealso:
  - name: Docker registry HTTP API v2
    description: The API this module uses.
    link: https://distribution.github.io/distribution/spec/api/
"""

EXAMPLES = r"""
- name: List the tags of an image in a local registry
  knlab.serverless.registry_image_info:
    registry_url: http://127.0.0.1:5000
    repository: demo/hello
  register: hello

- name: Resolve a tag to its digest, with basic authentication
  knlab.serverless.registry_image_info:
    registry_url: https://hub.example.com
    repository: demo/hello
    tag: v1
    username: builder
    password: "{{ hub_password }}"
  register: hello_v1

- name: Deploy exactly that image
  ansible.builtin.debug:
    msg: "hub.example.com/demo/hello@{{ hello_v1.digest }}"
  when: hello_v1.exists

- name: Ask a hub that runs as a Knative Service, through the ingress address (no DNS needed)
  knlab.serverless.registry_image_info:
    registry_url: http://192.168.49.2:31080
    host_header: hub.default.example.com
    repository: demo/hello
    tag: sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270
"""

RETURN = r"""
exists:
  description:
    - Without O(tag), whether the registry knows the repository.
    - With O(tag), whether the repository has a manifest for that tag or digest.
  returned: always
  type: bool
  sample: true
tags:
  description:
    - All tags of the repository, sorted; empty when the repository is unknown or has no tags left.
  returned: always
  type: list
  elements: str
  sample: [latest, v1, v2]
digest:
  description:
    - Digest of the manifest that O(tag) names (the C(Docker-Content-Digest) the registry sent);
      for a multi-platform image, the digest of its index.
    - V(null) when O(tag) is not given or does not exist.
  returned: always
  type: str
  sample: sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270
media_type:
  description:
    - Media type of that manifest, for example C(application/vnd.docker.distribution.manifest.v2+json),
      C(application/vnd.oci.image.manifest.v1+json) or C(application/vnd.oci.image.index.v1+json).
    - V(null) when O(tag) is not given or does not exist.
  returned: always
  type: str
  sample: application/vnd.oci.image.manifest.v1+json
repository:
  description: The repository that was asked for.
  returned: always
  type: str
  sample: demo/hello
tag:
  description: The tag or digest that was asked for, V(null) when none was given.
  returned: always
  type: str
  sample: v1
"""

import traceback

from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError
from ansible_collections.knlab.serverless.plugins.module_utils._module import ServerlessModule
from ansible_collections.knlab.serverless.plugins.module_utils._registry import (
    RegistryClient,
    image_info,
    normalize_registry_url,
    validate_credentials,
    validate_host_header,
    validate_reference,
    validate_repository,
)
from ansible_collections.knlab.serverless.plugins.module_utils._validation import check_wait_seconds

ARGUMENT_SPEC = {
    "registry_url": {"type": "str", "required": True},
    "repository": {"type": "str", "required": True},
    "tag": {"type": "str"},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "host_header": {"type": "str"},
    "timeout": {"type": "float", "default": 10},
}


def look_up(params: dict) -> dict:
    # Everything is validated before the first request, so bad input never reaches the registry.
    repository = validate_repository(params["repository"])
    reference = validate_reference(params["tag"]) if params["tag"] is not None else None
    check_wait_seconds("timeout", params["timeout"])
    if params["ca_path"] is not None and not params["ca_path"]:
        raise ServerlessError("ca_path must not be empty: leave it out to use the system's CA certificates")
    validate_credentials(params["username"], params["password"])
    normalize_registry_url(params["registry_url"])
    if params["host_header"] is not None:
        validate_host_header(params["host_header"])
    client = RegistryClient(
        params["registry_url"],
        username=params["username"],
        password=params["password"],
        validate_certs=params["validate_certs"],
        ca_path=params["ca_path"],
        host_header=params["host_header"],
        timeout=params["timeout"],
    )
    return image_info(client, repository, reference)


def main() -> None:
    module = ServerlessModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_together=[("username", "password")],
    )
    try:
        result = look_up(module.params)
    except ServerlessError as err:
        module.fail_json(msg=" ".join(err.msg.split()), **err.result)
    except Exception as err:
        # A bug, not a registry answer: still one line for the user, the traceback with -vvv.
        module.fail_json(
            msg=" ".join(f"Unexpected {type(err).__name__}: {err}".split()), exception=traceback.format_exc()
        )
    else:
        module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
