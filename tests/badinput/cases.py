"""Invalid calls generated from the argument specs of every module and role entry point.

Each target (a module, or a role entry point) has a valid baseline and its options come from its
own argument spec: the module's ``OPTIONS`` dict, the role's ``meta/argument_specs.yml``. For each
option the generator makes invalid values of two families:

- by type, for every option: wrong types, lists and dicts for strings, booleans for numbers,
  YAML surprises (``no``, ``1e3``, ``0o10``) for numbers, unknown choices, out-of-range numbers;
- by meaning, where this file says what the option holds (a ``KINDS`` entry): malformed names,
  empty and huge strings, control and non-ASCII control characters, bad quantities, ports, URLs.

Hand-written cases add what one option cannot show: options that conflict with each other.

A case changes exactly one thing in the baseline, so the reason a call fails is known: the
message must name that option. ``generate(seed, count)`` draws a fixed sample (the same for a
seed, whatever the machine); ``count=None`` is every case.
"""

from __future__ import annotations

import copy
import importlib
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# The modules' argument specs are read by importing them as Ansible does (``make setup`` links this
# checkout into .build/collections).
if str(ROOT / ".build" / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / ".build" / "collections"))
DEMO_SOURCE = str(ROOT / "playbooks" / "files" / "hello")


@dataclass
class Case:
    target: str  # a module FQCN, or "role:<name>" / "role:<name>:<entry point>"
    option: str  # what is wrong, as a path into the arguments ("volumes[0].mount_path")
    names: tuple[str, ...]  # the message must contain one of these
    args: dict[str, Any]
    family: str
    value: Any = None
    ident: str = field(default="")

    @property
    def is_role(self) -> bool:
        return self.target.startswith("role:")


# -- what makes a value invalid, by meaning ----------------------------------------------------------

HUGE = "x" * 100_000
CONTROL = ["bad\nline", "nul\x00here", "c1\x85char", "tab\there"]
NAME_BAD = ["", "Bad_Name", "-lead", "trail-", "a" * 64, "with space", "dot..dot", HUGE, *CONTROL]

INVALID_BY_KIND: dict[str, list[Any]] = {
    "dns1123": [*NAME_BAD, "a.b"],
    "dns1035": [*NAME_BAD, "1svc", "a.b"],
    "subdomain": ["", "Bad_Name", "-lead", "a" * 254, "with space", HUGE, *CONTROL],
    "subdomain63": ["", "Bad_Name", "-lead", "a" * 64, "with space", HUGE, *CONTROL],
    "optional_subdomain": ["Bad_Name", "-lead", "a" * 254, "with space", HUGE, *CONTROL],
    "image": ["", "with space", "hub/Hello", "img:", "img\n", "img@sha256:xyz", "/lead", HUGE, *CONTROL],
    "repository": ["", "Bad", "with space", "img:tag", "/lead", "a" * 256, *CONTROL],
    "tag": ["", "-lead", "a" * 129, "with space", *CONTROL],
    "duration": ["abc", "-1s", "10", "1x", "", "15m\n"],
    "port": [0, -1, 70000, 2**63],
    "node_port": [-1, 80, 70000, 2**63],  # 0 is "no node port"
    "positive_int": [0, -1, 2**63, 10**20],
    "count": [-1, 2**63, 10**20],
    "scale": [-1, 2**31, 2**63],
    "http_status": [0, 99, 999],
    "url": ["not a url", "ftp://host", "http://", "http://bad host", *CONTROL],
    "optional_url": ["not a url", "ftp://host", "http://", *CONTROL],
    "url_path": ["no-slash", "/x\n", "/nul\x00", HUGE],
    "abs_path": ["relative/path", "", "nul\x00"],
    "quantity": ["12XYZ", "-1Gi", "", "1 Gi"],
    "host_port": ["bad host!", "h:99999", "h:0", "a" * 300, "h:port", *CONTROL],
    "optional_host_port": ["bad host!", "h:99999", "a" * 300, *CONTROL],
    "domain": ["bad domain!", "-x.example", "a" * 254, *CONTROL],  # "" keeps Knative's default
    "secret_key": ["../etc/passwd", "", "a/b", "..", *CONTROL],
    # An S3 bucket name; "" is "no bucket", refused only with registry_storage s3 (an extra case).
    "bucket": ["Bad_Name", "-lead", "ab", "a" * 64, "with space", "dot..dot", "trail.", HUGE, *CONTROL],
    # A key prefix in a bucket ("" is the bucket's root).
    "key_prefix": ["no-slash", "/a/../b", "/x\n", "/nul\x00", "/with space", HUGE],
    "version": ["", "v1 2", "latest\n", HUGE],
    "labels": [{"bad key!": "v"}, {"k": "bad value!"}, {"k": ["x"]}, {"k": "v" * 64}],
    "annotations": [{"bad key!": "v"}, {"k": {"x": 1}}, {"": "v"}],
    "env": [{"1BAD": "x"}, {"A=B": "x"}, {"": "x"}, {"BAD NAME": "x"}, {"NUL\x00": "x"}],
    "text": CONTROL[:2],
    "checksum": ["md5:abc", "sha256:xyz", "sha256:" + "0" * 63],
    "arg_list": [["ok", "nul\x00"]],
    "seconds": [0, -1, float("inf"), float("nan"), 1e20],
}

# -- invalid by type --------------------------------------------------------------------------------

INVALID_BY_TYPE: dict[str, list[Any]] = {
    "str": [["list-item-one", "list-item-two"], {"dict-key": "dict-value"}, True, False],
    "path": [["list-item-one"], {"dict-key": "dict-value"}, True],
    "int": ["abc", True, "1e3", "0o10", ["1"], {"n": 1}, "", 1.5],
    "float": ["abc", True, "inf", "nan", ["1"]],
    "bool": ["maybe", 2, ["yes"], {"b": True}, "yes please"],
    "dict": ["abc", ["x"], 5, True],
    "list": [{"a": 1}, 5, True],
}
ELEMENTS_INVALID = {"str": [[["nested"]], [{"a": 1}], [True]], "dict": [["abc"], [5]]}

# -- the targets ------------------------------------------------------------------------------------

MODULES: dict[str, dict[str, Any]] = {
    "knative_service": {
        "spec": "OPTIONS",
        "base": {"name": "hello", "namespace": "default", "image": "registry.example/hello:v1", "port": 8080},
        "kinds": {
            "name": "dns1035",
            "namespace": "dns1123",
            "image": "image",
            "command": "arg_list",
            "args": "arg_list",
            "env": "env",
            "port": "port",
            "min_scale": "scale",
            "max_scale": "scale",
            "concurrency": "scale",
            "timeout_seconds": "positive_int",
            "annotations": "annotations",
            "labels": "labels",
            "service_account": "optional_subdomain",
            "image_pull_secrets[0]": "subdomain",
            "wait_timeout": "positive_int",
            "wait_window": "count",
            "volumes[0].name": "dns1123",
            "volumes[0].mount_path": "abs_path",
            "volumes[0].empty_dir.size_limit": "quantity",
            "resources.requests.cpu": "quantity",
        },
        "suboption_bases": {
            "volumes": [{"name": "data", "mount_path": "/data", "empty_dir": {}}],
            "image_pull_secrets": ["pull-secret"],
            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}},
        },
        "extra": [
            ("min_scale", {"min_scale": 3, "max_scale": 2}),
            ("max_scale", {"max_scale": 1, "annotations": {"autoscaling.knative.dev/max-scale": "2"}}),
            ("mount_path", {"volumes": [{"name": "a", "mount_path": "/dev/../", "empty_dir": {}}]}),
            ("mount_path", {"volumes": [{"name": "a", "mount_path": "/dev//log", "empty_dir": {}}]}),
            ("volumes", {"volumes": [{"name": "a", "mount_path": "/a", "config_map": "c", "secret": "s"}]}),
            ("read_only", {"volumes": [{"name": "a", "mount_path": "/a", "config_map": "c", "read_only": False}]}),
            ("resources", {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}),
            ("resources", {"resources": {"requests": {"": "1"}}}),
            ("env", {"env": [{"name": "A", "valueFrom": "not-a-dict"}]}),
            ("env", {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]}),
            ("env", {"env": {"PORT": "1"}}),
            ("port", {"port": 8012}),
            ("labels", {"labels": {"networking.knative.dev/visibility": "cluster-local"}}),
        ],
    },
    "tekton_taskrun": {
        "spec": "OPTIONS",
        "base": {"name": "build-1", "namespace": "default", "task_ref": {"name": "kaniko"}},
        "kinds": {
            "name": "subdomain63",
            "namespace": "dns1123",
            "service_account": "subdomain",
            "timeout": "duration",
            "labels": "labels",
            "idempotency_key": "text",
            "task_ref.name": "subdomain63",
        },
        "extra": [
            ("generate_name", {"generate_name": "build-"}),
            ("task_spec", {"task_spec": {"steps": [{"image": "busybox"}]}}),
            ("generate_name", {"name": None, "generate_name": "Bad_"}),
            ("generate_name", {"name": None, "generate_name": "build-\n"}),
            ("namespace", {"namespace": ""}),
            ("task_spec", {"task_ref": None, "task_spec": {"steps": ["not a dict"]}}),
            ("task_spec", {"task_ref": None, "task_spec": {"steps": [{"name": "x"}]}}),
            ("task_spec", {"task_ref": None, "task_spec": {"steps": [{"name": "Bad Name", "image": "busybox"}]}}),
            ("task_spec", {"task_ref": None, "task_spec": {"steps": [{"image": "Bad Image"}]}}),
            ("task_spec", {"task_ref": None, "task_spec": {"steps": []}}),
            ("workspaces", {"workspaces": [{"name": "src", "emptyDir": "x"}]}),
            ("workspaces", {"workspaces": [{"name": "src", "persistentVolumeClaim": {"claimName": ""}}]}),
            ("workspaces", {"workspaces": [{"name": "src"}]}),
            ("workspaces", {"workspaces": ["src"]}),
            ("workspaces", {"workspaces": [{"name": "src", "emptyDir": {}}, {"name": "src", "emptyDir": {}}]}),
            ("kind", {"task_ref": {"name": "kaniko", "kind": ["Task"]}}),
            ("resolver", {"task_ref": {"resolver": {"git": 1}}}),
            ("task_ref", {"task_ref": {"name": "kaniko", "resolver": "git"}}),
            ("params", {"task_ref": {"name": "kaniko", "params": {"a": "b"}}}),
            ("idempotency_key", {"idempotency_key": ["k"]}),
            ("idempotency_key", {"idempotency_key": {"k": 1}}),
            ("idempotency_key", {"idempotency_key": ""}),
            ("labels", {"labels": {"serverless.knlab.io/idempotency-key": "x"}}),
            ("params", {"params": {"bad name!": "x"}}),
            ("params", {"params": {"a": None}}),
            ("state", {"state": "cancelled", "name": None, "generate_name": "x-"}),
        ],
    },
    "tekton_taskrun_wait": {
        "spec": "OPTIONS",
        "base": {"name": "build-1", "namespace": "default"},
        "kinds": {"name": "subdomain63", "namespace": "dns1123", "timeout": "positive_int", "log_lines": "count"},
        "extra": [],
    },
    "kube_objects": {
        "spec": "OPTIONS",
        "base": {"namespace": "default", "read": [{"api_version": "v1", "kind": "ConfigMap", "name": "a"}]},
        "kinds": {"namespace": "dns1123", "wait_timeout": "positive_int"},
        "extra": [
            ("present", {"present": [{"kind": "ConfigMap", "metadata": {"name": "x"}}]}),
            ("present", {"present": [{"apiVersion": "v1", "kind": "ConfigMap"}]}),
            ("present", {"present": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}]}),
            ("present", {"present": ["not a dict"]}),
            ("absent", {"absent": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x\n"}}]}),
            ("absent", {"absent": [{"apiVersion": "v1", "kind": "", "metadata": {"name": "x"}}]}),
            ("read", {"read": [{"api_version": "v1", "kind": "ConfigMap"}]}),
            ("read", {"read": [{"api_version": "v1", "kind": "ConfigMap", "label_selectors": "a=b"}]}),
            ("read", {"read": [{"api_version": "v1", "kind": "ConfigMap", "name": "a", "namespace": "Bad"}]}),
        ],
    },
    "registry_image_info": {
        "spec": "ARGUMENT_SPEC",
        "base": {"registry_url": "REGISTRY", "repository": "hello", "tag": "latest"},
        "kinds": {
            "registry_url": "url",
            "repository": "repository",
            "tag": "tag",
            "host_header": "host_port",
            "timeout": "seconds",
            "ca_path": "abs_path",
        },
        "extra": [
            ("username", {"username": "us:er", "password": "secret"}),
            ("username", {"username": ["u"], "password": "secret"}),
            ("password", {"username": "user", "password": ["secret"]}),
            ("password", {"username": "user", "password": "line\nbreak"}),
            ("username", {"username": "user"}),
            ("registry_url", {"registry_url": "http://user:pw@127.0.0.1:1"}),
            ("registry_url", {"registry_url": "http://127.0.0.1:99999"}),
            ("registry_url", {"registry_url": "http://127.0.0.1:1/v2/"}),
            ("tag", {"tag": "sha256:abc"}),
            ("ca_path", {"ca_path": "/nonexistent/ca.pem"}),
        ],
    },
    "http_check": {
        "spec": "ARGUMENT_SPEC",
        "base": {"url": "REGISTRY", "status_code": 200},
        "kinds": {"url": "url", "status_code": "http_status", "attempts": "positive_int", "timeout": "seconds"},
        "extra": [
            ("url", {"url": "http://user:pw@127.0.0.1:1/"}),
            ("url", {"url": "http://127.0.0.1:99999/"}),
            ("url", {"url": "http://127.0.0.1:1/#fragment"}),
            ("url", {"url": "http://127.0.0.1:1/" + "a" * 3000}),
            ("headers", {"headers": {"Bad Name": "x"}}),
            ("headers", {"headers": {"Host": "a\r\nX-Injected: y"}}),
            ("headers", {"headers": {"Host": ["a"]}}),
            ("contains", {"contains": "nul\x00here"}),
            ("delay", {"delay": -1}),
            ("delay", {"delay": 1e9}),
            ("ca_path", {"ca_path": "/nonexistent/ca.pem"}),
            ("ca_path", {"ca_path": ""}),
        ],
    },
}

ROLES: dict[str, dict[str, Any]] = {
    "build": {
        "base": {
            "build_source_dir": DEMO_SOURCE,
            "build_push_host": "registry.example:5000",
            "build_pull_host": "registry.example:5000",
        },
        "kinds": {
            "build_name": "dns1123",
            "build_namespace": "dns1123",
            "build_source_dir": "abs_path",
            "build_dockerfile": "text",
            "build_push_host": "host_port",
            "build_pull_host": "optional_host_port",
            "build_image_repository": "repository",
            "build_image_tag": "tag",
            "build_docker_config_secret": "optional_subdomain",
            "build_task_name": "subdomain63",
            "build_builder_image": "image",
            "build_extra_args": "arg_list",
            "build_service_account": "optional_subdomain",
            "build_timeout": "duration",
            "build_wait_timeout": "positive_int",
            "build_log_lines": "count",
            "build_labels": "labels",
            "build_keep_sources": "positive_int",
        },
    },
    "app": {
        "base": {"app_image": "registry.example/hello:v1", "app_ingress_address": "http://127.0.0.1:1"},
        "kinds": {
            "app_name": "dns1035",
            "app_namespace": "dns1123",
            "app_image": "image",
            "app_env": "env",
            "app_port": "port",
            "app_min_scale": "scale",
            "app_max_scale": "scale",
            "app_annotations": "annotations",
            "app_labels": "labels",
            "app_service_account": "optional_subdomain",
            "app_image_pull_secrets[0]": "subdomain",
            "app_wait_timeout": "positive_int",
            "app_smoke_path": "url_path",
            "app_smoke_status": "http_status",
            "app_ingress_address": "optional_url",
            "app_smoke_retries": "count",
            "app_smoke_delay": "count",
            "app_smoke_timeout": "positive_int",
        },
        "suboption_bases": {"app_image_pull_secrets": ["pull-secret"]},
    },
    "registry": {
        "base": {},
        "kinds": {
            "registry_name": "dns1035",
            "registry_namespace": "dns1123",
            "registry_image": "image",
            "registry_port": "port",
            "registry_env": "env",
            "registry_annotations": "annotations",
            "registry_labels": "labels",
            "registry_wait_timeout": "positive_int",
            "registry_pvc_name": "subdomain",
            "registry_pvc_size": "quantity",
            "registry_pvc_storage_class": "optional_subdomain",
            "registry_knative_namespace": "dns1123",
            "registry_auth_secret": "optional_subdomain",
            "registry_auth_secret_key": "secret_key",
            "registry_auth_realm": "text",
            "registry_push_host_override": "optional_host_port",
            "registry_pull_host_override": "optional_host_port",
            "registry_s3_endpoint": "optional_url",
            "registry_s3_bucket": "bucket",
            "registry_s3_region": "text",
            "registry_s3_credentials_secret": "optional_subdomain",
            "registry_s3_access_key_item": "secret_key",
            "registry_s3_secret_key_item": "secret_key",
            "registry_s3_root_directory": "key_prefix",
            "registry_http_secret": "subdomain",
            "registry_min_scale": "scale",
            "registry_max_scale": "scale",
            "registry_autoscaling_target": "count",
            "registry_notifications_secret": "optional_subdomain",
        },
        "extra": [
            ("registry_pvc_access_modes", {"registry_persistence": True, "registry_pvc_access_modes": ["Sometimes"]}),
            ("registry_pvc_size", {"registry_persistence": True, "registry_pvc_size": "12XYZ"}),
            ("registry_s3_bucket", {"registry_storage": "s3"}),
            (
                "registry_persistence",
                {"registry_storage": "s3", "registry_s3_bucket": "hub", "registry_persistence": True},
            ),
            ("registry_max_scale", {"registry_max_scale": 2}),
            ("registry_max_scale", {"registry_persistence": True, "registry_max_scale": 0}),
            ("registry_min_scale", {"registry_min_scale": 0}),
            (
                "registry_min_scale",
                {
                    "registry_storage": "s3",
                    "registry_s3_bucket": "hub",
                    "registry_min_scale": 5,
                    "registry_max_scale": 4,
                },
            ),
            (
                "registry_env",
                {"registry_storage": "s3", "registry_s3_bucket": "hub", "registry_env": {"REGISTRY_HTTP_SECRET": "x"}},
            ),
            (
                "registry_annotations",
                {"registry_autoscaling_target": 5, "registry_annotations": {"autoscaling.knative.dev/target": "9"}},
            ),
        ],
    },
    "knative_stack": {
        "base": {"knative_stack_manifest_dir": "/nonexistent-badinput-manifests"},
        "kinds": {
            "knative_stack_serving_version": "version",
            "knative_stack_tekton_version": "version",
            "knative_stack_field_manager": "text",
            "knative_stack_wait_timeout": "positive_int",
            "knative_stack_domain": "domain",
            "knative_stack_ingress_node_port": "node_port",
            "knative_stack_hub_name": "dns1035",
            "knative_stack_hub_namespace": "dns1123",
            "knative_stack_hub_port": "port",
            "knative_stack_hub_node_port": "node_port",
            "knative_stack_hub_pull_host": "host_port",
            "knative_stack_serving_release_url": "url",
            "knative_stack_tekton_release_url": "url",
        },
    },
    "app:absent": {
        "base": {},
        "kinds": {"app_name": "dns1035", "app_namespace": "dns1123", "app_wait_timeout": "positive_int"},
    },
    "build:absent": {
        "base": {},
        "kinds": {"build_name": "dns1123", "build_namespace": "dns1123", "build_wait_timeout": "positive_int"},
    },
    "registry:absent": {
        "base": {},
        "kinds": {"registry_name": "dns1035", "registry_namespace": "dns1123", "registry_wait_timeout": "positive_int"},
    },
    "autodeploy": {
        "base": {"autodeploy_bindings": [{"repository": "hello", "service": "hello"}]},
        "kinds": {
            "autodeploy_name": "dns1035",
            "autodeploy_namespace": "dns1123",
            "autodeploy_hub_name": "dns1035",
            "autodeploy_hub_namespace": "dns1123",
            "autodeploy_bindings[0].repository": "repository",
            "autodeploy_bindings[0].tag": "tag",
            "autodeploy_bindings[0].service": "dns1035",
            "autodeploy_token_secret": "subdomain",
            "autodeploy_endpoints_secret": "subdomain",
            "autodeploy_hub_auth_secret": "optional_subdomain",
            "autodeploy_resync_seconds": "positive_int",
            "autodeploy_endpoint_timeout": "duration",
            "autodeploy_endpoint_threshold": "positive_int",
            "autodeploy_endpoint_backoff": "duration",
            "autodeploy_pull_host": "host_port",
            "autodeploy_hub_url": "url",
            "autodeploy_wait_timeout": "positive_int",
        },
        "suboption_bases": {"autodeploy_bindings": [{"repository": "hello", "tag": "latest", "service": "hello"}]},
        "extra": [
            (
                "autodeploy_bindings",
                {"autodeploy_bindings": [{"repository": "a", "service": "s"}, {"repository": "b", "service": "s"}]},
            ),
            ("autodeploy_endpoints_secret", {"autodeploy_endpoints_secret": "autodeploy-token"}),
        ],
    },
    "autodeploy:secrets": {
        "base": {"autodeploy_bindings": [{"repository": "hello", "service": "hello"}]},
        "kinds": {"autodeploy_name": "dns1035", "autodeploy_endpoint_timeout": "duration"},
    },
    "autodeploy:absent": {
        "base": {},
        "kinds": {
            "autodeploy_name": "dns1035",
            "autodeploy_namespace": "dns1123",
            "autodeploy_wait_timeout": "positive_int",
        },
    },
    "knative_stack:configure": {
        "base": {},
        "kinds": {
            "knative_stack_domain": "domain",
            "knative_stack_hub_pull_host": "host_port",
            "knative_stack_field_manager": "text",
        },
    },
}


# -- generation ---------------------------------------------------------------------------------------


def _module_spec(name: str, attribute: str) -> dict[str, Any]:
    module = importlib.import_module(f"ansible_collections.knlab.serverless.plugins.modules.{name}")
    return getattr(module, attribute)


def _role_spec(target: str) -> dict[str, Any]:
    role, _, entry = target.partition(":")
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"][entry or "main"].get("options", {})


def _set_path(args: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b[0].c`` in ``args``; every step but the last must already exist."""
    steps: list[Any] = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        steps.append(name)
        if index:
            steps.append(int(index.rstrip("]")))
    target: Any = args
    for step in steps[:-1]:
        target = target[step]
    target[steps[-1]] = value


def _leaf(path: str) -> str:
    return path.rsplit(".", maxsplit=1)[-1].split("[", maxsplit=1)[0]


def _option_cases(target: str, options: dict[str, Any], base: dict[str, Any], info: dict[str, Any]) -> list[Case]:
    cases: list[Case] = []
    bases = info.get("suboption_bases", {})
    for option, rules in options.items():
        kind = rules.get("type", "str")
        values = list(INVALID_BY_TYPE.get(kind, []))
        if rules.get("choices"):
            values.append("not-a-choice")
        elements = rules.get("elements")
        if kind == "list" and elements in ELEMENTS_INVALID:
            values.extend(ELEMENTS_INVALID[elements])
        for value in values:
            cases.append(Case(target, option, (option,), _with(base, option, value), "type", value))
    for path, kind in info.get("kinds", {}).items():
        top = path.split(".")[0].split("[")[0]
        for value in INVALID_BY_KIND[kind]:
            args = copy.deepcopy(base)
            if top in bases and top not in args:
                args[top] = copy.deepcopy(bases[top])
            _set_path(args, path, value)
            names = (_leaf(path), top)
            cases.append(Case(target, path, names, args, f"kind:{kind}", value))
    for option, overrides in info.get("extra", []):
        args = copy.deepcopy(base)
        for key, value in overrides.items():
            if value is None:
                args.pop(key, None)
            else:
                args[key] = value
        top_names = tuple(key for key in overrides if overrides[key] is not None)
        cases.append(Case(target, option, (option, *top_names), args, "conflict", overrides))
    return cases


def _with(base: dict[str, Any], option: str, value: Any) -> dict[str, Any]:
    args = copy.deepcopy(base)
    args[option] = value
    return args


def all_cases(registry_url: str = "http://127.0.0.1:9") -> list[Case]:
    cases: list[Case] = []
    for name, info in MODULES.items():
        spec = _module_spec(name, info["spec"])
        base = {key: (registry_url if value == "REGISTRY" else value) for key, value in info["base"].items()}
        cases.extend(_option_cases(f"knlab.serverless.{name}", spec, base, info))
    for target, info in ROLES.items():
        options = _role_spec(target)
        cases.extend(_option_cases(f"role:{target}", options, dict(info["base"]), info))
    for index, case in enumerate(cases):
        case.ident = f"{index:04d}"
    return cases


def generate(seed: int, count: int | None, registry_url: str = "http://127.0.0.1:9") -> list[Case]:
    """``count`` cases drawn with ``seed`` (every target keeps its share), or all of them."""
    cases = all_cases(registry_url)
    if count is None or count >= len(cases):
        return cases
    return sorted(random.Random(seed).sample(cases, count), key=lambda case: case.ident)
