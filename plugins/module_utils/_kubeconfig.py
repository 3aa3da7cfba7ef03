# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the Kubernetes API is and how to authenticate: module auth options -> ``Connection``.

The rules are kubernetes.core's (``k8s/client.py``: ``_create_auth_spec``,
``_create_configuration``, ``_create_headers``) and the ``kubernetes`` library's kubeconfig and
in-cluster loaders, so a play that works with ``kubernetes.core.k8s`` connects the same way here:

- every auth option not given falls back to ``K8S_AUTH_<OPTION>`` (or the library's own name,
  e.g. ``K8S_AUTH_VERIFY_SSL``) in the environment;
- ``host`` with ``api_key``, with ``username`` and ``password``, or with ``client_cert`` and
  ``client_key`` is enough on its own; otherwise ``kubeconfig``/``context`` load a kubeconfig;
  with neither, the in-cluster service account is tried first and then the default kubeconfig
  (``KUBECONFIG``, a list of files merged as kubectl does, or ``~/.kube/config``);
- the options given then override what was loaded.

Kubeconfig users with a token, a token file, a client certificate or a user name and password
are read here, without the ``kubernetes`` library: importing it costs about a second per module
run. A user with an ``exec`` credential plugin or an ``auth-provider`` (OIDC, GCP, Azure), and
``persist_config``, are left to the library's own loader, imported only then, so those keep
exactly the library's behaviour (token refresh included).

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._errors import MissingDependency, ServerlessError

# kubernetes.core's AUTH_ARG_MAP: the library's name of each option -> the module option.
AUTH_ARG_MAP = {
    "kubeconfig": "kubeconfig",
    "context": "context",
    "host": "host",
    "api_key": "api_key",
    "username": "username",
    "password": "password",
    "verify_ssl": "validate_certs",
    "ssl_ca_cert": "ca_cert",
    "cert_file": "client_cert",
    "key_file": "client_key",
    "proxy": "proxy",
    "no_proxy": "no_proxy",
    "proxy_headers": "proxy_headers",
    "persist_config": "persist_config",
}
_BOOL_OPTIONS = ("validate_certs", "persist_config")
_PROXY_HEADER_OPTIONS = ("proxy_basic_auth", "basic_auth", "user_agent")
_IMPERSONATION_HEADERS = {"impersonate_user": "Impersonate-User", "impersonate_groups": "Impersonate-Group"}

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The library re-reads a rotated service account token after a minute; so does this.
_IN_CLUSTER_TOKEN_PERIOD = 60.0


class ConfigError(ServerlessError):
    """The connection cannot be configured (no kubeconfig, a bad one, missing files, ...)."""


class Connection:
    """Everything needed to talk to one API server.

    ``authorization()`` gives the ``Authorization`` header value (or None) for the next request;
    a token that can expire is refreshed there, as the library's ``refresh_api_key_hook`` does.
    """

    def __init__(self) -> None:
        self.host = "http://localhost"
        self.verify_ssl = True
        self.ssl_ca_cert: str | None = None
        self.cert_file: str | None = None
        self.key_file: str | None = None
        self.tls_server_name: str | None = None
        self.proxy: str | None = None
        self.no_proxy: str | None = None
        self.proxy_headers: dict[str, str] | None = None
        self.headers: dict[str, str | list[str]] = {}
        self._token: str | None = None  # the whole header value, "Bearer ..." or "Basic ..."
        self._token_source: Callable[[], str | None] | None = None

    def authorization(self) -> str | None:
        if self._token_source is not None:
            return self._token_source()
        return self._token

    def set_token(self, value: str | None, source: Callable[[], str | None] | None = None) -> None:
        self._token = value
        self._token_source = source


def auth_spec(params: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The auth settings by the library's names: module options, else ``K8S_AUTH_*`` (kubernetes.core's rules)."""
    env = os.environ if environ is None else environ
    auth: dict[str, Any] = {}
    for true_name, option in AUTH_ARG_MAP.items():
        if params.get(option) is not None:
            auth[true_name] = params[option]
        elif option == "proxy_headers":
            headers = {}
            for key in _PROXY_HEADER_OPTIONS:
                value = env.get(f"K8S_AUTH_PROXY_HEADERS_{key.upper()}")
                if value is not None:
                    headers[key] = value
            auth[true_name] = headers
        else:
            value = env.get(f"K8S_AUTH_{option.upper()}") or env.get(f"K8S_AUTH_{true_name.upper()}")
            if value is not None:
                auth[true_name] = value.lower() not in ("0", "false", "no") if option in _BOOL_OPTIONS else value
    return auth


def impersonation_headers(params: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    headers: dict[str, Any] = {}
    for option, header in _IMPERSONATION_HEADERS.items():
        value = params.get(option)
        if value is None:
            value = env.get(f"K8S_AUTH_{option.upper()}")
            if value is not None and option == "impersonate_groups":
                value = [group for group in value.split(",") if group != ""]
        if value:
            headers[header] = value
    return headers


def connection(params: dict[str, Any], environ: dict[str, str] | None = None) -> Connection:
    """Resolve the module's auth options into a ``Connection`` (raises ``ConfigError``)."""
    env = os.environ if environ is None else environ
    auth = auth_spec(params, env)
    if auth.get("host"):
        auth["host"] = auth["host"].rstrip("/")

    def given(*names: str) -> bool:
        return all(auth.get(name) for name in names)

    conn = Connection()
    enough = given("username", "password", "host") or given("api_key", "host") or given("cert_file", "key_file", "host")
    if enough:
        pass  # no kubeconfig, no service account
    elif given("kubeconfig") or given("context") or not _load_in_cluster(conn, env):
        _load_kubeconfig(conn, auth, env)

    # The options given override whatever was loaded.
    if auth.get("host"):
        conn.host = auth["host"]
    if auth.get("api_key") is not None:
        conn.set_token(f"Bearer {auth['api_key']}")
    if auth.get("verify_ssl") is not None:
        conn.verify_ssl = bool(auth["verify_ssl"])
    for name in ("ssl_ca_cert", "cert_file", "key_file", "proxy", "no_proxy"):
        if auth.get(name) is not None:
            setattr(conn, name, auth[name])
    if auth.get("proxy_headers"):
        conn.proxy_headers = _make_headers(auth["proxy_headers"])
    conn.headers = impersonation_headers(params, env)
    return conn


def _make_headers(values: dict[str, Any]) -> dict[str, str]:
    """``urllib3.util.make_headers`` for the three proxy header options."""
    headers = {}
    if values.get("user_agent"):
        headers["user-agent"] = values["user_agent"]
    if values.get("basic_auth"):
        headers["authorization"] = "Basic " + base64.b64encode(values["basic_auth"].encode("latin-1")).decode()
    if values.get("proxy_basic_auth"):
        headers["proxy-authorization"] = (
            "Basic " + base64.b64encode(values["proxy_basic_auth"].encode("latin-1")).decode()
        )
    return headers


# -- in-cluster ---------------------------------------------------------------------------------


def _load_in_cluster(conn: Connection, env: dict[str, str]) -> bool:
    """The pod's service account, as the library's ``load_incluster_config``; False when not in a pod."""
    sa_dir = SERVICE_ACCOUNT_DIR
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token_path, ca_path = os.path.join(sa_dir, "token"), os.path.join(sa_dir, "ca.crt")
    if not host or not port or not os.path.isfile(token_path) or not os.path.isfile(ca_path):
        return False
    if ":" in host:
        host = f"[{host}]"
    state = {"token": _read_token(token_path), "read": time.monotonic()}

    def token() -> str:
        if time.monotonic() - state["read"] > _IN_CLUSTER_TOKEN_PERIOD:
            with contextlib.suppress(OSError, ConfigError):
                state["token"] = _read_token(token_path)
            state["read"] = time.monotonic()
        return f"Bearer {state['token']}"

    conn.host = f"https://{host}:{port}"
    conn.ssl_ca_cert = ca_path
    conn.set_token(token(), token)
    return True


def _read_token(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        token = handle.read()
    if not token:
        raise ConfigError("Token file exists but empty.")
    return token


# -- kubeconfig ---------------------------------------------------------------------------------


def _load_kubeconfig(conn: Connection, auth: dict[str, Any], env: dict[str, str]) -> None:
    kubeconfig = auth.get("kubeconfig")
    if isinstance(kubeconfig, dict):
        merged, base = kubeconfig, None
    else:
        merged, base = _read_kubeconfig_files(kubeconfig or env.get("KUBECONFIG") or "~/.kube/config")
    context_name = auth.get("context") or _lookup(merged, "current-context", "kube-config")
    context = _named(merged, "contexts", context_name)["context"]
    cluster_item = _named(merged, "clusters", _lookup(context, "cluster", f"context/{context_name}"))
    cluster = _lookup(cluster_item, "cluster", "cluster")
    user_item = _named(merged, "users", context.get("user"), required=False) if context.get("user") else None
    user = (user_item or {}).get("user") or None
    if (user and ("auth-provider" in user or "exec" in user)) or auth.get("persist_config"):
        _load_with_library(conn, auth)
        return
    if user:
        user_base = _base_path(user_item, base)
        token = user.get("token")
        if "token" not in user and user.get("tokenFile"):
            with open(_resolve(user_base, user["tokenFile"]), encoding="utf-8") as handle:
                token = handle.read()
        if token:
            conn.set_token(f"Bearer {token}")
        elif "username" in user and "password" in user:
            basic = base64.b64encode(f"{user['username']}:{user['password']}".encode("latin-1")).decode()
            conn.set_token(f"Basic {basic}")
    if "server" in cluster:
        conn.host = cluster["server"].rstrip("/")
        if conn.host.startswith("https"):
            cluster_base = _base_path(cluster_item, base)
            conn.ssl_ca_cert = _file_or_data(cluster, "certificate-authority", cluster_base)
            if user:
                conn.cert_file = _file_or_data(user, "client-certificate", cluster_base)
                conn.key_file = _file_or_data(user, "client-key", cluster_base)
    if "insecure-skip-tls-verify" in cluster:
        conn.verify_ssl = not cluster["insecure-skip-tls-verify"]
    if "tls-server-name" in cluster:
        conn.tls_server_name = cluster["tls-server-name"]
    if "proxy-url" in cluster:
        conn.proxy = cluster["proxy-url"]


def _read_kubeconfig_files(paths: str) -> tuple[dict, str | None]:
    """Merge kubeconfig files as the library's ``KubeConfigMerger`` (first definition of a name wins)."""
    merged: dict[str, Any] | None = None
    for entry in str(paths).split(os.pathsep):
        path = os.path.expanduser(entry)
        if not entry or not os.path.exists(path):
            continue
        config = _parse(path)
        if config is None:
            raise ConfigError(f"Invalid kube-config. {path} file is empty")
        if merged is None:
            merged = {**config, "clusters": [], "contexts": [], "users": []}
        for item in ("clusters", "contexts", "users"):
            known = {named.get("name") for named in merged[item]}
            for named in config.get(item) or []:
                if named.get("name") not in known:
                    merged[item].append({**named, "_path": path})
                    known.add(named.get("name"))
        if "current-context" in config:
            merged["current-context"] = config["current-context"]
    if merged is None:
        raise ConfigError("Invalid kube-config file. No configuration found.")
    return merged, None


def _parse(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        import yaml  # noqa: PLC0415 (only a kubeconfig file needs it)
    except ImportError as err:  # ansible-core requires PyYAML; this only guards an odd install
        raise MissingDependency("PyYAML is needed to read a kubeconfig file") from err
    # libyaml's parser when PyYAML has it (about 5 times faster on a kubeconfig, and every module
    # run reads one); the same safe constructor either way.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader
    except yaml.YAMLError as err:
        raise ConfigError(f"Invalid kube-config file {path}: {' '.join(str(err).split())}") from err


def _lookup(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj or obj[key] is None:
        raise ConfigError(f"Invalid kube-config file. Expected key {key} in {where}")
    return obj[key]


def _named(config: dict, section: str, name: Any, *, required: bool = True) -> dict | None:
    entries = config.get(section) or []
    found = [entry for entry in entries if isinstance(entry, dict) and entry.get("name") == name]
    if len(found) == 1:
        return found[0]
    if not required and not found:
        return None
    how = "Expected only one object with name" if found else "Expected object with name"
    raise ConfigError(f"Invalid kube-config file. {how} {name} in kube-config/{section} list")


def _base_path(entry: dict | None, base: str | None) -> str:
    path = (entry or {}).get("_path")
    if path:
        return os.path.abspath(os.path.dirname(path))
    return base or ""


def _resolve(base: str, path: str) -> str:
    return os.path.normpath(os.path.join(base, path))


_TEMP_FILES: dict[str, str] = {}


def _file_or_data(obj: dict, key: str, base: str) -> str | None:
    """A file name for ``<key>-data`` (base64, written to a temp file) or ``<key>`` (a path), as the library."""
    data = obj.get(f"{key}-data")
    if data:
        return _temp_file(base64.standard_b64decode(data))
    if obj.get(key):
        path = _resolve(base, obj[key])
        if not os.path.isfile(path):
            raise ConfigError(f"File does not exist: {path}")
        return path
    return None


def _temp_file(content: bytes) -> str:
    key = content.hex()
    if key not in _TEMP_FILES:
        if not _TEMP_FILES:
            atexit.register(remove_temp_files)
        handle, name = tempfile.mkstemp()
        with os.fdopen(handle, "wb") as out:
            out.write(content)
        _TEMP_FILES[key] = name
    return _TEMP_FILES[key]


def forget_inherited_temp_files() -> None:
    """In a forked child: the temp files listed so far are the parent's; the child makes and removes its own.

    Used by the controller-side fork (plugin_utils/_fork.py), whose child starts with no exit handlers;
    the ``kubernetes`` library keeps the same kind of list.
    """
    _TEMP_FILES.clear()
    library = sys.modules.get("kubernetes.config.kube_config")
    if library is not None and getattr(library, "_temp_files", None):
        library._temp_files = {}


def remove_temp_files() -> None:
    """Remove the temp files this process wrote, and those the ``kubernetes`` library wrote for it.

    At exit; an Ansible worker, which ends with ``os._exit`` past the exit handlers, calls it when its
    task ends (plugin_utils/_action.py).
    """
    for name in _TEMP_FILES.values():
        with contextlib.suppress(OSError):
            os.remove(name)
    _TEMP_FILES.clear()
    library = sys.modules.get("kubernetes.config.kube_config")
    if library is not None and getattr(library, "_temp_files", None):
        library._cleanup_temp_files()


# -- the library's loader, for credential plugins and auth providers ----------------------------


def _load_with_library(conn: Connection, auth: dict[str, Any]) -> None:
    """``exec``/``auth-provider`` users and ``persist_config``: the ``kubernetes`` library loads them."""
    try:
        # About a second to import: only for these users.
        from kubernetes import client as k8s_client  # noqa: PLC0415
        from kubernetes import config as k8s_config  # noqa: PLC0415
    except ImportError as err:
        raise MissingDependency(
            "The kubeconfig user has an exec credential plugin or an auth-provider (or persist_config is set):"
            " the kubernetes Python library is needed for it (pip install kubernetes)."
        ) from err
    configuration = k8s_client.Configuration()
    options = {"context": auth.get("context"), "persist_config": auth.get("persist_config")}
    try:
        if isinstance(auth.get("kubeconfig"), dict):
            k8s_config.load_kube_config_from_dict(
                config_dict=auth["kubeconfig"], client_configuration=configuration, **options
            )
        else:
            k8s_config.load_kube_config(
                config_file=auth.get("kubeconfig"), client_configuration=configuration, **options
            )
    except k8s_config.ConfigException as err:
        raise ConfigError(str(err)) from err
    for name in ("host", "verify_ssl", "ssl_ca_cert", "cert_file", "key_file", "tls_server_name", "proxy"):
        setattr(conn, name, getattr(configuration, name, None))
    conn.set_token(None, lambda: configuration.get_api_key_with_prefix("BearerToken", alias="authorization"))
