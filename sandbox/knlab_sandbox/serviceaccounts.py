"""What a pod gets from its ServiceAccount, as the ServiceAccount admission plug-in and kubelet give it.

- The pod's ServiceAccount (``serviceAccountName``, default ``default``) must exist, or the pod is
  not created: ``pods "<generateName>" is forbidden: error looking up service account <ns>/<name>:
  serviceaccount "<name>" not found`` (the ReplicaSet's ``FailedCreate``; Knative copies it into the
  Revision's ``ResourcesAvailable``) until the account exists; the ReplicaSet keeps trying.
- Unless ``automountServiceAccountToken`` is false (the pod's setting wins over the ServiceAccount's),
  the pod gets a projected volume ``kube-api-access-<5 chars>`` mounted read-only at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` in every container, holding ``token``,
  ``ca.crt`` and ``namespace``. The volume appears in the Pod object as the plug-in writes it.
- Every container gets ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` (and the other
  ``KUBERNETES_*`` service-link variables kubelet always sets for the ``kubernetes`` Service),
  here the sandbox API's loopback address.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
TOKEN_EXPIRATION_SECONDS = 3607  # what the admission plug-in writes into the projected source
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def account_name(pod_spec: Mapping[str, Any]) -> str:
    return str(pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default")


def automount(pod_spec: Mapping[str, Any], account: Mapping[str, Any]) -> bool:
    if pod_spec.get("automountServiceAccountToken") is not None:
        return bool(pod_spec["automountServiceAccountToken"])
    if account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def missing_account_message(pod_name_prefix: str, namespace: str, account: str) -> str:
    return (
        f'pods "{pod_name_prefix}" is forbidden: error looking up service account {namespace}/{account}: '
        f'serviceaccount "{account}" not found'
    )


def new_volume_name() -> str:
    return VOLUME_PREFIX + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


def token_volume(name: str) -> dict:
    """The projected volume as the ServiceAccount admission plug-in adds it to a pod."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def token_volume_name(pod_spec: Mapping[str, Any]) -> str | None:
    for volume in pod_spec.get("volumes") or []:
        if str(volume.get("name", "")).startswith(VOLUME_PREFIX) and "projected" in volume:
            return str(volume["name"])
    return None


def add_token_volume(pod_spec: dict, name: str) -> None:
    """Add the volume and its mount (in each container that mounts nothing at that path yet)."""
    if token_volume_name(pod_spec) is None:
        pod_spec.setdefault("volumes", []).append(token_volume(name))
    else:
        name = token_volume_name(pod_spec) or name
    for container in pod_spec.get("containers") or []:
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == MOUNT_PATH for m in mounts):
            mounts.append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})


def kubernetes_service_env(host: str, port: int) -> dict[str, str]:
    """kubelet's variables for the ``kubernetes`` Service, set in every container."""
    prefix = f"KUBERNETES_PORT_{port}_TCP"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        prefix: f"tcp://{host}:{port}",
        f"{prefix}_PROTO": "tcp",
        f"{prefix}_PORT": str(port),
        f"{prefix}_ADDR": host,
    }


def write_token_files(directory: Path, token: str, ca_pem: bytes, namespace: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (("token", token.encode()), ("ca.crt", ca_pem), ("namespace", namespace.encode())):
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name == "token" else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
