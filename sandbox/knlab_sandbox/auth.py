"""Who a request comes from: the admin's token, or a ServiceAccount token the sandbox issued.

Two kinds of bearer token are accepted, nothing else (401 otherwise):

- the admin token (``<state-dir>/token``, in the kubeconfig): user ``kubernetes-admin``, group
  ``kubeadm:cluster-admins``, as a kubeadm/kind cluster's admin kubeconfig; never restricted;
- a ServiceAccount token, as kubelet mounts one into a pod: a JWT (HS256, signed with a key kept in
  ``<state-dir>/pki/sa-signing.key``) whose claims name the namespace, the ServiceAccount and its
  uid. It authenticates as ``system:serviceaccount:<ns>:<name>`` with the groups
  ``system:serviceaccounts``, ``system:serviceaccounts:<ns>`` and ``system:authenticated``, and only
  while that ServiceAccount (same uid) exists, as a bound token stops working when its ServiceAccount
  is deleted. A real cluster signs with RS256 and also binds the token to its pod; clients treat the
  token as opaque either way.

`TokenAuthority` issues and verifies the tokens; `UserInfo` is what the authorizer (rbac.py) sees.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = ISSUER
# kubelet asks for 3607 s, and the API server extends a pod's token to a year
# (--service-account-extend-token-expiration, on by default).
TOKEN_LIFETIME = 365 * 24 * 3600
ADMIN_USER = "kubernetes-admin"
SIGNING_KEY = "sa-signing.key"  # in the state dir's pki/
ADMIN_GROUPS = ("kubeadm:cluster-admins", "system:authenticated")


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ("system:authenticated",)
    uid: str = ""

    @property
    def is_admin(self) -> bool:
        return self.name == ADMIN_USER and "kubeadm:cluster-admins" in self.groups

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) for a ServiceAccount user, else None."""
        parts = self.name.split(":")
        if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
            return parts[2], parts[3]
        return None


ADMIN = UserInfo(ADMIN_USER, ADMIN_GROUPS)


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    return UserInfo(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        uid,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Signs and checks ServiceAccount tokens with a key made once per state directory."""

    def __init__(self, key_path: Path):
        self.key = self._load_key(key_path)

    @staticmethod
    def _load_key(path: Path) -> bytes:
        if path.exists():
            key = path.read_bytes()
            if len(key) >= 32:
                return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key

    def issue(self, namespace: str, name: str, uid: str, *, pod: tuple[str, str] | None = None) -> str:
        issued = int(time.time())
        claims: dict[str, Any] = {
            "aud": [AUDIENCE],
            "exp": issued + TOKEN_LIFETIME,
            "iat": issued,
            "nbf": issued,
            "iss": ISSUER,
            "jti": secrets.token_hex(16),
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
        }
        if pod is not None:
            claims["kubernetes.io"]["pod"] = {"name": pod[0], "uid": pod[1]}
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self.key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}"

    def verify(self, token: str) -> tuple[str, str, str] | None:
        """(namespace, name, uid) of a token this authority signed and that has not expired; else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64(hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            claims = json.loads(_unb64(parts[1]))
            account = claims["kubernetes.io"]
            namespace, name = account["namespace"], account["serviceaccount"]["name"]
            uid = account["serviceaccount"].get("uid", "")
            expires = int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < time.time():
            return None
        return str(namespace), str(name), str(uid)
