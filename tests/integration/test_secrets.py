"""Secrets never show (issue 11 item 3), on a real sandbox, searched for where they could leak.

Known, distinctive secret values go in where a user's would:

- the hub's htpasswd Secret (the password, the `user:hash` line, the bcrypt hash, the Secret's
  base64 data) and the build's kubernetes.io/dockerconfigjson Secret (its JSON, the base64 of
  `user:password` inside it, the Secret's base64 data);
- the sandbox's bearer token (written to its state dir before it starts, so the API server accepts
  it and nothing else) in a kubeconfig, in `K8S_AUTH_API_KEY`, in `api_key` and inline in a
  `kubeconfig` dict; and a client key (PEM) in that kubeconfig (`client-key-data`) and as `client_key`;
- the wrong password and the wrong token of the deliberate failures.

A play (written below) runs the registry role with htpasswd auth, the build role pushing with
the dockerconfigjson Secret, the app role pulling with it, kube_objects keeping copies of both
Secrets (by `data` and by `stringData`) and reading them, then the modules with the secret options,
right and wrong, registers every result, prints it (`debug: var=`) and writes it to a file. It runs
at every verbosity from 0 to -vvvv (the first run, which builds, at -vvvv), with --diff, for real
and in check mode, authenticated by kubeconfig and by `K8S_AUTH_*`; a second play builds with a
wrong password and fails. Then every output is searched for every secret, in every encoding
listed: each run's stdout and stderr, the results files, every log in the sandbox's state dir
(server, requests, transitions, pod logs: the hub's and the build's steps), the build's and the
hub's logs as the API serves them, and the API's objects other than Secrets (events included).
The test fails naming the place and the secret.

So that it cannot pass by finding nothing: each secret's encodings are first found where the secret
lives (the Secret as the API returns it, the kubeconfig, the key file), every place searched must
exist and hold text, and the secrets must have worked (the hub refuses a request without them and
answers the module that sends them; the API answered the token).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

kubernetes = pytest.importorskip("kubernetes")
bcrypt = pytest.importorskip("bcrypt")
x509 = pytest.importorskip("cryptography.x509")

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SOURCE = ROOT / "playbooks" / "files" / "hello"
NAMESPACE = "default"

USER = "builder"
PASSWORD = "Hub-pa55word-7c41e9d2"
WRONG_PASSWORD = "Wrong-pa55word-3b8f0a61"
TOKEN = "knlab-kube-token-5f2d8e31a9c04b76"
WRONG_TOKEN = "knlab-wrong-token-0e9c7a15d3f2"

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry")),
        reason="the sandbox's hub needs docker-registry (apt-get install docker-registry)",
    ),
    pytest.mark.timeout(1500),
]


# --- the secrets and what they look like in text -----------------------------------------------


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _key_pair(name: str) -> tuple[bytes, bytes]:
    """A fresh EC key and a self-signed certificate for it (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _windows(text: str, boilerplate: str, size: int = 20, step: int = 6) -> list[str]:
    """Pieces of a long secret that no other secret of its kind shares (PEM headers, DER prefixes,
    bcrypt's `$2b$12$`): a message that cuts a value short (`truncate(80)`) still shows one."""
    if len(text) <= 2 * size:
        return [text]
    starts = sorted({*range(0, len(text) - size + 1, step), len(text) - size})
    return [text[i : i + size] for i in starts if text[i : i + size] not in boilerplate]


@dataclass
class Secret:
    name: str
    needles: list[str]  # any of these in an output is a leak


@dataclass
class Secrets:
    entry: str = ""  # the htpasswd line
    docker_config: str = ""
    wrong_docker_config: str = ""
    key_pem: bytes = b""
    cert_pem: bytes = b""
    other_key_pem: bytes = b""
    other_cert_pem: bytes = b""
    all: list[Secret] = field(default_factory=list)

    @classmethod
    def make(cls) -> Secrets:
        s = cls()
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()
        other_hash = bcrypt.hashpw(WRONG_PASSWORD.encode(), bcrypt.gensalt()).decode()
        s.entry = f"{USER}:{hashed}"
        basic, wrong_basic = _b64(f"{USER}:{PASSWORD}"), _b64(f"{USER}:{WRONG_PASSWORD}")
        s.docker_config = json.dumps({"auths": {"hub.default.svc.cluster.local": {"auth": basic}}})
        s.wrong_docker_config = json.dumps({"auths": {"hub.default.svc.cluster.local": {"auth": wrong_basic}}})
        s.key_pem, s.cert_pem = _key_pair("knlab-secrets-test")
        s.other_key_pem, s.other_cert_pem = _key_pair("knlab-secrets-other")
        key_body = "".join(s.key_pem.decode().splitlines()[1:-1])
        other_body = "".join(s.other_key_pem.decode().splitlines()[1:-1])
        # What the encodings of another key of the same kind share is not the key.
        key_boilerplate = other_body + " " + _b64(s.other_key_pem)
        s.all = [
            Secret("the registry password", [PASSWORD]),
            Secret("the wrong registry password", [WRONG_PASSWORD]),
            Secret("user:password in base64 (Basic auth, docker config auth)", [basic, wrong_basic]),
            Secret("the htpasswd line's bcrypt hash", _windows(hashed, other_hash)),
            Secret(
                "the htpasswd Secret's data (base64)", _windows(_b64(s.entry + "\n"), _b64(f"{USER}:{other_hash}\n"))
            ),
            Secret(
                "the dockerconfigjson Secret's data (base64)",
                [_b64(s.docker_config)[40:], _b64(s.wrong_docker_config)[40:]],
            ),
            Secret("the kube token", [TOKEN]),
            Secret("the wrong kube token", [WRONG_TOKEN]),
            Secret("the client key (PEM body)", _windows(key_body, key_boilerplate)),
            Secret("the client key (base64 of the PEM, client-key-data)", _windows(_b64(s.key_pem), key_boilerplate)),
            Secret("the other client key (PEM body)", _windows(other_body, key_body + " " + _b64(s.key_pem))),
        ]
        return s

    def leaks(self, text: str) -> list[str]:
        return [secret.name for secret in self.all if any(needle in text for needle in secret.needles)]


# --- the sandbox ---------------------------------------------------------------------------------


def _cli(*args: str) -> None:
    argv = [str(BIN / "knlab-sandbox"), *args]
    done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@dataclass
class Output:
    place: str
    text: str


@dataclass
class Sandbox:
    state_dir: Path
    work: Path
    secrets: Secrets
    info: dict = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    api: object = None

    def up(self) -> None:
        self.state_dir.mkdir(parents=True)
        # The API server takes the token it finds in its state dir (server.ensure_token).
        (self.state_dir / "token").write_text(TOKEN + "\n")
        _cli("up", "--state-dir", str(self.state_dir), "--api-port", "0", "--gateway-port", "0")
        self.info = json.loads((self.state_dir / "server.json").read_text())
        self.api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def down(self) -> None:
        if self.api is not None:
            self.api.close()
        _cli("down", "--state-dir", str(self.state_dir))

    @property
    def kubeconfig(self) -> Path:
        """The sandbox's kubeconfig, its user given the client certificate and key as well."""
        path = self.work / "kubeconfig"
        if not path.exists():
            config = json.loads(json.dumps(__import__("yaml").safe_load(Path(self.info["kubeconfig"]).read_text())))
            user = config["users"][0]["user"]
            assert user == {"token": TOKEN}, "the sandbox did not take the token from its state dir"
            user["client-certificate-data"] = _b64(self.secrets.cert_pem)
            user["client-key-data"] = _b64(self.secrets.key_pem)
            path.write_text(json.dumps(config))
        return path

    def env(self, auth: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "K8S_AUTH_"))}
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        )
        if auth == "kubeconfig":
            env["K8S_AUTH_KUBECONFIG"] = str(self.kubeconfig)
        else:  # the token and the host from the environment, no kubeconfig at all
            env.update(
                K8S_AUTH_HOST=self.info["api"],
                K8S_AUTH_API_KEY=TOKEN,
                K8S_AUTH_SSL_CA_CERT=self.info["ca"],
                KUBECONFIG=str(self.work / "no-such-kubeconfig"),
            )
        return env

    def playbook(self, label: str, playbook: Path, *args: str, auth: str = "kubeconfig", rc: int = 0) -> str:
        argv = [str(BIN / "ansible-playbook"), str(playbook), *args]
        done = subprocess.run(
            argv,
            check=False,
            env=self.env(auth),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=420,
        )
        self.outputs.append(Output(f"{label}: stdout", done.stdout))
        self.outputs.append(Output(f"{label}: stderr", done.stderr))
        output = done.stdout + done.stderr
        assert done.returncode == rc, f"{label}: exit code {done.returncode}, not {rc}:\n{output[-5000:]}"
        return output


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    work = tmp_path / "work"
    work.mkdir()
    sandbox = Sandbox(tmp_path / "sandbox", work, Secrets.make())
    sandbox.up()
    try:
        yield sandbox
    finally:
        sandbox.down()


# --- the plays -----------------------------------------------------------------------------------

# Every task's result is registered; the roles' own registrations too. All of them are printed and
# written to a file (results_file), which the test searches like any other output.
REGISTERED = [
    "_registry_live",
    "_registry_service",
    "_build_docker_config",
    "_build_listed",
    "_build_run",
    "_build_image_check",
    "_build_rerun",
    "_build_waited",
    "_app_service",
    "_app_smoke",
    "secrets_kept",
    "secrets_read",
    "secrets_refused_secret",
    "secrets_image_info",
    "secrets_wrong_password",
    "secrets_bad_password",
    "secrets_anonymous",
    "secrets_read_with_token",
    "secrets_wrong_token",
    "secrets_bad_token",
    "secrets_service_inline_kubeconfig",
    "secrets_wait_with_client_key",
    "secrets_mismatched_key",
]

PLAY = """
- name: The demo's roles with every secret option, and the modules with them, right and wrong
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    registered: {registered}
  tasks:
    - name: Run the hub with htpasswd auth
      ansible.builtin.import_role:
        name: knlab.serverless.registry
      vars:
        registry_auth_secret: hub-auth

    - name: Build, pushing with the dockerconfigjson Secret
      ansible.builtin.import_role:
        name: knlab.serverless.build
      vars:
        build_name: hello
        build_source_dir: {source}
        build_docker_config_secret: hub-push
        build_registry_url: "{{{{ gateway }}}}"
        build_registry_host_header: "{{{{ registry_url | ansible.builtin.urlsplit('netloc') }}}}"

    - name: Run the app, pulling with the dockerconfigjson Secret
      ansible.builtin.import_role:
        name: knlab.serverless.app
      vars:
        app_name: hello
        app_image: "{{{{ build_image }}}}"
        app_image_pull_secrets: [hub-push]
        app_ingress_address: "{{{{ gateway }}}}"

    - name: Keep copies of the roles' Secrets, by base64 data and by stringData
      knlab.serverless.kube_objects:
        present:
          - apiVersion: v1
            kind: Secret
            metadata: {{name: hub-auth-copy}}
            data:
              htpasswd: "{{{{ htpasswd_b64 }}}}"
          - apiVersion: v1
            kind: Secret
            metadata: {{name: hub-push-copy}}
            type: kubernetes.io/dockerconfigjson
            stringData:
              .dockerconfigjson: "{{{{ docker_config | string }}}}"
      register: secrets_kept

    - name: Read the Secrets the roles use
      knlab.serverless.kube_objects:
        read:
          - {{api_version: v1, kind: Secret, name: hub-auth}}
          - {{api_version: v1, kind: Secret, name: hub-push}}
      register: secrets_read

    - name: Keep a Secret the API refuses (a key with a slash), the password in it
      knlab.serverless.kube_objects:
        present:
          - apiVersion: v1
            kind: Secret
            metadata: {{name: hub-refused}}
            stringData:
              bad/key: "{{{{ hub_password }}}}"
      register: secrets_refused_secret
      ignore_errors: true

    - name: Ask the hub for the image, with the password
      knlab.serverless.registry_image_info: &hub
        registry_url: "{{{{ gateway }}}}"
        host_header: "{{{{ registry_url | ansible.builtin.urlsplit('netloc') }}}}"
        repository: hello
        tag: latest
        username: {user}
        password: "{{{{ hub_password }}}}"
      register: secrets_image_info

    - name: Ask the hub with a wrong password
      knlab.serverless.registry_image_info:
        <<: *hub
        password: "{{{{ wrong_password }}}}"
      register: secrets_wrong_password
      ignore_errors: true

    - name: Ask the hub with a password that is bad input (a newline in it)
      knlab.serverless.registry_image_info:
        <<: *hub
        password: "{{{{ hub_password }}}}\\n"
      register: secrets_bad_password
      ignore_errors: true

    - name: Ask the hub with a user but no password
      knlab.serverless.registry_image_info:
        <<: *hub
        password: "{{{{ omit }}}}"
      register: secrets_anonymous
      ignore_errors: true

    - name: Read the app with the token in api_key
      knlab.serverless.kube_objects:
        host: "{{{{ api }}}}"
        api_key: "{{{{ kube_token }}}}"
        ca_cert: "{{{{ ca }}}}"
        read:
          - {{api_version: serving.knative.dev/v1, kind: Service, name: hello}}
      register: secrets_read_with_token

    - name: Read the app with a wrong token
      knlab.serverless.kube_objects:
        host: "{{{{ api }}}}"
        api_key: "{{{{ wrong_token }}}}"
        ca_cert: "{{{{ ca }}}}"
        read:
          - {{api_version: serving.knative.dev/v1, kind: Service, name: hello}}
      register: secrets_wrong_token
      ignore_errors: true

    - name: Read the app with a token that is bad input (a newline in it)
      knlab.serverless.kube_objects:
        host: "{{{{ api }}}}"
        api_key: "{{{{ kube_token }}}}\\nX-Injected: 1"
        ca_cert: "{{{{ ca }}}}"
        read:
          - {{api_version: serving.knative.dev/v1, kind: Service, name: hello}}
      register: secrets_bad_token
      ignore_errors: true

    - name: Keep the app, with an inline kubeconfig holding the token and the client key
      knlab.serverless.knative_service:
        kubeconfig: "{{{{ lookup('ansible.builtin.file', kubeconfig_path) | from_json }}}}"
        name: hello
        image: "{{{{ build_image }}}}"
      register: secrets_service_inline_kubeconfig

    - name: Wait for the build with the token and a client certificate and key
      knlab.serverless.tekton_taskrun_wait:
        host: "{{{{ api }}}}"
        api_key: "{{{{ kube_token }}}}"
        ca_cert: "{{{{ ca }}}}"
        client_cert: "{{{{ cert_path }}}}"
        client_key: "{{{{ key_path }}}}"
        name: "{{{{ build_taskrun_name }}}}"
      register: secrets_wait_with_client_key
      when: build_taskrun_name | length > 0

    - name: Read with a client key that does not belong to the certificate
      knlab.serverless.kube_objects:
        host: "{{{{ api }}}}"
        api_key: "{{{{ kube_token }}}}"
        ca_cert: "{{{{ ca }}}}"
        client_cert: "{{{{ cert_path }}}}"
        client_key: "{{{{ other_key_path }}}}"
        read:
          - {{api_version: serving.knative.dev/v1, kind: Service, name: hello}}
      register: secrets_mismatched_key
      ignore_errors: true

    - name: Print every registered result
      ansible.builtin.debug:
        var: secrets_results
      vars: &results
        secrets_results: >-
          {{{{ dict(registered | zip(query('ansible.builtin.vars', *registered, default='(not registered)'))) }}}}

    - name: Write every registered result to a file
      ansible.builtin.copy:
        content: "{{{{ secrets_results | to_nice_json }}}}\\n"
        dest: "{{{{ results_file }}}}"
        mode: "0600"
      vars: *results
      check_mode: false
"""

FAILING_PLAY = """
- name: A build that pushes with a wrong password
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Build, pushing with the wrong password
      ansible.builtin.import_role:
        name: knlab.serverless.build
      vars:
        build_name: wrong
        build_image_repository: wrong
        build_source_dir: {source}
        build_docker_config_secret: hub-push-wrong
        build_push_host: hub.default.svc.cluster.local
        build_verify_image: false
"""

NO_CONFIG_PLAY = """
- name: The build role given Secrets without a docker config
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Build with a Secret that does not exist
      block:
        - name: The build role
          ansible.builtin.include_role:
            name: knlab.serverless.build
          vars:
            build_name: missing
            build_source_dir: {source}
            build_docker_config_secret: no-such-secret
            build_push_host: hub.default.svc.cluster.local
      rescue:
        - name: Say why it failed
          ansible.builtin.debug:
            var: ansible_failed_result

    - name: Build with the hub's htpasswd Secret, which holds no docker config
      block:
        - name: The build role
          ansible.builtin.include_role:
            name: knlab.serverless.build
          vars:
            build_name: htpasswd
            build_source_dir: {source}
            build_docker_config_secret: hub-auth
            build_push_host: hub.default.svc.cluster.local
      rescue:
        - name: Say why it failed
          ansible.builtin.debug:
            var: ansible_failed_result
"""


def _write_files(sandbox: Sandbox) -> tuple[Path, Path, dict]:
    work, s = sandbox.work, sandbox.secrets
    (work / "client.crt").write_bytes(s.cert_pem)
    (work / "client.key").write_bytes(s.key_pem)
    (work / "other.key").write_bytes(s.other_key_pem)
    play, failing = work / "secrets.yml", work / "wrong-push.yml"
    play.write_text(PLAY.format(registered=json.dumps(REGISTERED), source=SOURCE, user=USER))
    failing.write_text(FAILING_PLAY.format(source=SOURCE))
    (work / "no-config.yml").write_text(NO_CONFIG_PLAY.format(source=SOURCE))
    variables = {
        "hub_password": PASSWORD,
        "wrong_password": WRONG_PASSWORD,
        "kube_token": TOKEN,
        "wrong_token": WRONG_TOKEN,
        "htpasswd_b64": _b64(s.entry + "\n"),
        "docker_config": s.docker_config,
        "api": sandbox.info["api"],
        "ca": sandbox.info["ca"],
        "gateway": sandbox.info["gateway"],
        "kubeconfig_path": str(sandbox.kubeconfig),
        "cert_path": str(work / "client.crt"),
        "key_path": str(work / "client.key"),
        "other_key_path": str(work / "other.key"),
    }
    return play, failing, variables


def _create_secrets(sandbox: Sandbox) -> None:
    s = sandbox.secrets
    core = kubernetes.client.CoreV1Api(sandbox.api)
    core.create_namespaced_secret(
        NAMESPACE, {"metadata": {"name": "hub-auth"}, "stringData": {"htpasswd": s.entry + "\n"}}
    )
    for name, config in (("hub-push", s.docker_config), ("hub-push-wrong", s.wrong_docker_config)):
        core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": name},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config},
            },
        )


def _self_check(sandbox: Sandbox) -> None:
    """Every secret is found where it lives: the search works on these encodings."""
    s = sandbox.secrets
    core = kubernetes.client.CoreV1Api(sandbox.api)
    homes = {
        "the Secrets as the API serves them": json.dumps(
            [core.read_namespaced_secret(n, NAMESPACE).data for n in ("hub-auth", "hub-push", "hub-push-wrong")]
        ),
        "the Secrets' plain values": s.entry + s.docker_config + s.wrong_docker_config,
        "the kubeconfig": sandbox.kubeconfig.read_text(),
        "the key files": (s.key_pem + s.other_key_pem).decode(),
        "the plays' variables": json.dumps([PASSWORD, WRONG_PASSWORD, TOKEN, WRONG_TOKEN]),
    }
    found = {name for text in homes.values() for name in s.leaks(text)}
    assert found == {secret.name for secret in s.all}, (
        f"not found where they live: {sorted({x.name for x in s.all} - found)}"
    )


def _hub_status(sandbox: Sandbox, host: str, authorization: str | None) -> int:
    request = urllib.request.Request(sandbox.info["gateway"] + "/v2/", headers={"Host": host})
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _api_outputs(sandbox: Sandbox) -> list[Output]:
    """The logs the API serves (build steps, the hub, the app) and every object but Secrets."""
    core = kubernetes.client.CoreV1Api(sandbox.api)
    outputs = []
    for pod in core.list_namespaced_pod(NAMESPACE).items:
        for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
            log = core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, container=container.name)
            outputs.append(Output(f"kubectl logs {pod.metadata.name} -c {container.name}", log))
    kinds = "pods,configmaps,events,persistentvolumeclaims,taskruns,tasks,ksvc,revisions,configurations,routes"
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(sandbox.info["kubeconfig"]), "get", kinds, "-A", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    outputs.append(Output(f"kubectl get {kinds} -A -o json", done.stdout))
    return outputs


# The secrets' own homes in the state dir: the store (Secrets), the token, the kubeconfig, the PKI,
# and the pods' mounted volumes and scratch space (a Secret volume holds the secret, as on a node).
NOT_LOGS = {"state.db", "state.db-wal", "state.db-shm", "token", "kubeconfig", "pki", "run", "volumes"}


def _state_dir_logs(sandbox: Sandbox) -> list[Output]:
    outputs = []
    for path in sorted(sandbox.state_dir.rglob("*")):
        if path.is_file() and path.relative_to(sandbox.state_dir).parts[0] not in NOT_LOGS:
            outputs.append(Output(f"sandbox {path.relative_to(sandbox.state_dir)}", path.read_text(errors="replace")))
    return outputs


@pytest.mark.skipif(not shutil.which("kubectl"), reason="reads the objects with kubectl")
def test_no_secret_shows_in_any_output(sandbox: Sandbox) -> None:
    s = sandbox.secrets
    _create_secrets(sandbox)
    _self_check(sandbox)
    play, failing, variables = _write_files(sandbox)
    extra = sandbox.work / "extra-vars.json"
    sandbox.playbook("sandbox-prepare.yml", ROOT / "playbooks" / "sandbox-prepare.yml")

    runs = [
        # label, ansible-playbook arguments, authentication
        ("run 1 -vvvv --diff (builds)", ["-vvvv", "--diff"], "kubeconfig"),
        ("run 2 --diff --check", ["--diff", "--check"], "kubeconfig"),
        ("run 3 -v --diff", ["-v", "--diff"], "environment"),
        ("run 4 -vv --diff --check", ["-vv", "--diff", "--check"], "environment"),
        ("run 5 -vvv --diff", ["-vvv", "--diff"], "kubeconfig"),
        ("run 6 -vvvv --diff --check", ["-vvvv", "--diff", "--check"], "environment"),
        ("run 7 (no flags)", [], "kubeconfig"),
    ]
    results = []
    for number, (label, args, auth) in enumerate(runs, 1):
        results_file = sandbox.work / f"results-{number}.json"
        extra.write_text(json.dumps(variables | {"results_file": str(results_file)}))
        output = sandbox.playbook(label, play, "-e", f"@{extra}", *args, auth=auth)
        assert "PLAY RECAP" in output
        results.append(json.loads(results_file.read_text()))
        sandbox.outputs.append(Output(f"{label}: registered results ({results_file.name})", results_file.read_text()))

    # The secrets did their work: the hub wants them, the module that sent them got the image, the
    # wrong ones were refused, the build pushed with the docker config and the app pulled with it.
    hub_host = results[0]["_registry_service"]["url"].split("://", 1)[1]
    assert _hub_status(sandbox, hub_host, None) == 401
    assert _hub_status(sandbox, hub_host, "Basic " + _b64(f"{USER}:{PASSWORD}")) == 200
    for result in results:
        assert result["secrets_image_info"]["exists"] is True
        assert result["secrets_wrong_password"]["failed"] is True
        assert result["secrets_bad_password"]["failed"] is True
        assert result["secrets_anonymous"]["failed"] is True
        assert result["secrets_wrong_token"]["failed"] is True
        assert result["secrets_bad_token"]["failed"] is True
        assert result["secrets_mismatched_key"]["failed"] is True
        assert result["secrets_read_with_token"]["read"][0][0]["metadata"]["name"] == "hello"
        assert result["secrets_refused_secret"]["failed"] is True
        # kube_objects reads and keeps Secrets, and shows their keys but not their values.
        assert [sorted(found[0]["data"]) for found in result["secrets_read"]["read"]] == [
            ["htpasswd"],
            [".dockerconfigjson"],
        ]
        assert [obj["metadata"]["name"] for obj in result["secrets_kept"]["objects"]] == [
            "hub-auth-copy",
            "hub-push-copy",
        ]
    assert results[0]["secrets_kept"]["changed"] is True
    core = kubernetes.client.CoreV1Api(sandbox.api)
    assert core.read_namespaced_secret("hub-auth-copy", NAMESPACE).data == {"htpasswd": _b64(s.entry + "\n")}
    assert core.read_namespaced_secret("hub-push-copy", NAMESPACE).data == {".dockerconfigjson": _b64(s.docker_config)}
    assert results[0]["_build_waited"]["succeeded"] is True
    assert results[0]["secrets_wait_with_client_key"]["succeeded"] is True

    # A build that pushes with the wrong password fails, and says why.
    extra.write_text(json.dumps(variables))
    wrong = sandbox.playbook("wrong push -vvv --diff", failing, "-e", f"@{extra}", "-vvv", "--diff", rc=2)
    assert "UNAUTHORIZED" in wrong
    # And Secrets without a docker config stop the build role, naming them.
    no_config = sandbox.playbook("no docker config -vvv --diff", sandbox.work / "no-config.yml", "-vvv", "--diff")
    assert "build_docker_config_secret default/no-such-secret does not exist" in no_config
    assert "default/hub-auth has neither a config.json key nor a .dockerconfigjson key" in no_config

    outputs = [*sandbox.outputs, *_state_dir_logs(sandbox), *_api_outputs(sandbox)]
    places = {output.place for output in outputs}
    for must in ("sandbox server.log", "sandbox requests.log"):
        assert must in places, f"{must} is missing: the sandbox's logs moved, update this test"
    step_logs = [o for o in outputs if o.place.startswith("kubectl logs hello-build-") and "-c step-" in o.place]
    assert step_logs and all(o.text.strip() for o in step_logs), "no build step log to search"
    assert any(o.place.startswith("sandbox logs/") for o in outputs), "no pod log in the state dir"

    leaks = [f"{secret} in {o.place}" for o in outputs for secret in s.leaks(o.text)]
    needles = sum(len(secret.needles) for secret in s.all)
    print(
        f"\nsecrets: {len(s.all)} ({needles} strings) searched in {len(outputs)} outputs,"
        f" {sum(len(o.text) for o in outputs)} characters: {len(sandbox.outputs)} from {len(runs) + 3} plays"
        f" (stdout, stderr, registered results), {len(_state_dir_logs(sandbox))} sandbox logs,"
        f" {len(outputs) - len(sandbox.outputs) - len(_state_dir_logs(sandbox))} from the API; {len(leaks)} leaks"
    )
    assert leaks == [], "secrets shown:\n" + "\n".join(leaks)
