"""The cluster's certificates and kubeconfigs: one CA, a client certificate per component.

Made once, on the first `up`, and kept in <state>/pki (ECDSA P-256, ten years): a second `up`
reuses them, so kubeconfigs handed out earlier stay valid.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .settings import API_PORT, CLUSTER_DOMAIN, KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME

VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class Client:
    name: str  # file stem
    common_name: str
    organization: str = ""


# Who talks to the API server, with the identity RBAC's bootstrap policy expects of each.
CLIENTS = (
    Client("admin", "kubernetes-admin", "system:masters"),
    Client("controller-manager", "system:kube-controller-manager"),
    Client("scheduler", "system:kube-scheduler"),
    Client("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
    Client("kube-proxy", "system:kube-proxy"),
    Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str = "") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _certificate(subject, key, issuer, issuer_key, *, ca=False, usages=(), dns=(), ips=()):
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if dns or ips:
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(pki: Path) -> None:
    if (pki / ".done").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("knlab-cluster-ca")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    _write_key(pki / "ca.key", ca_key)
    _write_cert(pki / "ca.crt", ca)

    def issue(stem, subject, usages, dns=(), ips=()):
        key = _key()
        _write_key(pki / f"{stem}.key", key)
        _write_cert(pki / f"{stem}.crt", _certificate(subject, key, ca_name, ca_key, usages=usages, dns=dns, ips=ips))

    server = (ExtendedKeyUsageOID.SERVER_AUTH,)
    client = (ExtendedKeyUsageOID.CLIENT_AUTH,)
    issue(
        "apiserver",
        _name("kube-apiserver"),
        server,
        dns=(
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "localhost",
        ),
        ips=("127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP),
    )
    issue("kubelet-serving", _name(NODE_NAME), server, dns=(NODE_NAME, "localhost"), ips=(NODE_IP, "127.0.0.1"))
    for c in CLIENTS:
        issue(c.name, _name(c.common_name, c.organization), client)
    # Service account tokens are signed with this key and checked with its public half.
    sa_key = _key()
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (pki / ".done").write_text("ok\n")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(pki: Path, client: str, server: str = f"https://127.0.0.1:{API_PORT}") -> str:
    """A kubeconfig for one of CLIENTS, certificates embedded."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "knlab", "cluster": {"server": server, "certificate-authority-data": _b64(pki / "ca.crt")}}
            ],
            "users": [
                {
                    "name": client,
                    "user": {
                        "client-certificate-data": _b64(pki / f"{client}.crt"),
                        "client-key-data": _b64(pki / f"{client}.key"),
                    },
                }
            ],
            "contexts": [{"name": "knlab", "context": {"cluster": "knlab", "user": client}}],
            "current-context": "knlab",
        },
        sort_keys=False,
    )
