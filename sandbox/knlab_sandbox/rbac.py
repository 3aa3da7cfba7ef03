"""RBAC: the rbac.authorization.k8s.io/v1 kinds' validation, the seeded roles, and the authorizer.

Who is authorised by RBAC: every requester except the admin (the kubeconfig's token without
impersonation), which stays unrestricted as before. That is ServiceAccount tokens, and whoever the
admin impersonates (``kubectl --as``), as kube-apiserver authorises the impersonated user.

The authorizer follows kube-apiserver's RBAC authorizer:

- request attributes as its RequestInfo makes them: verb ``get``/``list``/``watch`` (``?watch``),
  ``create``, ``update``, ``patch``, ``delete``, ``deletecollection``; resource with subresource
  (``services/status``, ``pods/log``); name (for a list or watch, a ``metadata.name=`` field selector);
  namespace;
- ClusterRoleBindings, then the RoleBindings of the request's namespace; a subject matches by
  ``User`` name, ``Group`` (one of the user's groups) or ``ServiceAccount`` (namespace defaulting to
  the binding's);
- a rule matches on verbs, apiGroups, resources (``*``, ``res/sub``, ``*/sub``, ``res/*``) and
  resourceNames (empty = any; a request without a name never matches a named rule), or for paths that
  are not resources (discovery, ``/version``, ``/openapi/*``) on ``nonResourceURLs`` (``*``, exact, or a
  ``prefix*``);
- a denial is ``403 Forbidden`` worded as kube-apiserver words it; a binding whose role is missing adds
  ``: RBAC: role.rbac.authorization.k8s.io "x" not found``.

Seeded, as kube-apiserver reconciles them at start: ClusterRoles ``cluster-admin``, ``system:discovery``
and ``system:public-info-viewer``, and their ClusterRoleBindings (``system:masters`` and, as kubeadm
adds it, ``kubeadm:cluster-admins``; ``system:authenticated``). `access_review` answers a
SelfSubjectAccessReview (``kubectl auth can-i``) with the same authorizer, and the reason RBAC gives.
Not done: the aggregation controller (``aggregationRule`` is stored, its ``rules`` are not filled),
and the escalation check on writes of roles and bindings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import admission, kinds
from .admission import AdmissionContext
from .auth import UserInfo
from .errors import ApiStatusError, invalid

GROUP = "rbac.authorization.k8s.io"
API_VERSION = f"{GROUP}/v1"
DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                  "/version", "/version/"]  # fmt: skip
PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


@dataclass(frozen=True)
class Attributes:
    """What a request asks for, as kube-apiserver's RequestInfo describes it."""

    verb: str
    namespace: str = ""
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""  # for requests that are not for a resource

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)


# --- matching -----------------------------------------------------------------------------------


def _verb_matches(rule: dict, verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _resource_matches(rule: dict, attrs: Attributes) -> bool:
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    resources = rule.get("resources") or []
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not (
        "*" in resources
        or combined in resources
        or (attrs.subresource and f"*/{attrs.subresource}" in resources)
        or f"{attrs.resource}/*" in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _path_matches(rule: dict, path: str) -> bool:
    urls = rule.get("nonResourceURLs") or []
    return any(url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])) for url in urls)


def rule_allows(rule: dict, attrs: Attributes) -> bool:
    if not _verb_matches(rule, attrs.verb):
        return False
    return _resource_matches(rule, attrs) if attrs.is_resource else _path_matches(rule, attrs.path)


def _subject_matches(subject: dict, user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


class Authorizer:
    """Reads the RBAC objects from the store on each request (no cache to go stale)."""

    def __init__(self, store: Any):
        self.store = store
        self.rt = {
            kind: kinds.lookup(API_VERSION, kind)
            for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
        }

    def _rules(self, ref: dict, namespace: str) -> tuple[list[dict], str]:
        """The rules a roleRef names, or an error text when the role is missing."""
        kind, name = ref.get("kind"), ref.get("name", "")
        if kind == "Role":
            role = self.store.get(self.rt["Role"].storage_key, namespace, name)
            return (
                (role or {}).get("rules") or [],
                "" if role else f'role.rbac.authorization.k8s.io "{name}" not found',
            )
        role = self.store.get(self.rt["ClusterRole"].storage_key, "", name)
        return (
            (role or {}).get("rules") or [],
            "" if role else f'clusterrole.rbac.authorization.k8s.io "{name}" not found',
        )

    def _bindings(self, namespace: str) -> Iterable[tuple[dict, str]]:
        for binding in self.store.list(self.rt["ClusterRoleBinding"].storage_key):
            yield binding, ""
        if namespace:
            for binding in self.store.list(self.rt["RoleBinding"].storage_key, namespace):
                yield binding, namespace

    def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason): which binding allowed it, or the missing roles that bindings of this user name."""
        errors: list[str] = []
        for binding, namespace in self._bindings(attrs.namespace):
            subject = next((s for s in binding.get("subjects") or [] if _subject_matches(s, user, namespace)), None)
            if subject is None:
                continue
            rules, error = self._rules(binding.get("roleRef") or {}, namespace)
            if error:
                errors.append(error)
                continue
            if any(rule_allows(rule, attrs) for rule in rules):
                return True, f"RBAC: allowed by {_describe(binding, subject, namespace)}"
        if not errors:
            return False, ""
        return False, "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")


def _describe(binding: dict, subject: dict, namespace: str) -> str:
    """As kube-apiserver's RBAC describes the binding that allowed a request (SubjectAccessReview reason)."""
    ref = binding.get("roleRef") or {}
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "ServiceAccount":
        who = f'ServiceAccount "{name}/{subject.get("namespace") or namespace}"'
    else:
        who = f'{kind} "{name}"'
    if namespace:
        where = f'RoleBinding "{binding["metadata"]["name"]}/{namespace}"'
    else:
        where = f'ClusterRoleBinding "{binding["metadata"]["name"]}"'
    return f'{where} of {ref.get("kind")} "{ref.get("name")}" to {who}'


def access_review(authorizer: Authorizer, user: UserInfo, review: Any) -> dict:
    """A SelfSubjectAccessReview answered for ``user`` (``kubectl auth can-i``); not stored."""
    if not isinstance(review, dict) or not isinstance(review.get("spec"), dict):
        raise ApiStatusError(400, "BadRequest", "the body of the request must be a SelfSubjectAccessReview")
    spec = review["spec"]
    resource, path = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if bool(resource) == bool(path):
        kind = kinds.lookup("authorization.k8s.io/v1", "SelfSubjectAccessReview")
        message = "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        raise invalid(kind, "", [("spec.resourceAttributes", message, "FieldValueRequired")])
    if resource:
        attrs = Attributes(
            str(resource.get("verb", "")),
            str(resource.get("namespace", "")),
            str(resource.get("group", "")),
            str(resource.get("resource", "")),
            str(resource.get("subresource", "")),
            str(resource.get("name", "")),
        )
    else:
        attrs = Attributes(str(path.get("verb", "")), path=str(path.get("path", "")))
    allowed, reason = authorizer.authorize(user, attrs)
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": status,
    }


def forbidden(user: UserInfo, attrs: Attributes, reason: str = "") -> ApiStatusError:
    """kube-apiserver's words for a denied request (responsewriters.forbiddenMessage + NewForbidden)."""
    if not attrs.is_resource:
        message = f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        message = f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}" {where}'
    if reason:
        message = f"{message}: {reason}"
    if not attrs.is_resource:
        return ApiStatusError(403, "Forbidden", f"forbidden: {message}", {})
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    details: dict[str, Any] = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.group:
        details["group"] = attrs.group
    details["kind"] = attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return ApiStatusError(403, "Forbidden", f"{subject} is forbidden: {message}", details)


# --- validation (kube-apiserver's rbac validation, the basics) ----------------------------------

SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def _default_subjects(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    # v1 defaulting: User and Group subjects get the rbac API group; ServiceAccounts none.
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and subject.get("kind") in ("User", "Group") and not subject.get("apiGroup"):
            subject["apiGroup"] = GROUP


def _rule_causes(rules: Any, namespaced: bool) -> list[tuple[str, ...]]:
    causes: list[tuple[str, ...]] = []
    for index, rule in enumerate(rules or []):
        path = f"rules[{index}]"
        if not rule.get("verbs"):
            causes.append(
                (f"{path}.verbs", "Required value: verbs must contain at least one value", "FieldValueRequired")
            )
        urls = rule.get("nonResourceURLs") or []
        if urls:
            shown = "[]string{" + ", ".join(f'"{u}"' for u in urls) + "}"
            if namespaced:
                causes.append(
                    (
                        f"{path}.nonResourceURLs",
                        f"Invalid value: {shown}: namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                causes.append(
                    (
                        f"{path}.nonResourceURLs",
                        f"Invalid value: {shown}: rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not rule.get("apiGroups"):
            causes.append(
                (
                    f"{path}.apiGroups",
                    "Required value: resource rules must supply at least one api group",
                    "FieldValueRequired",
                )
            )
        if not rule.get("resources"):
            causes.append(
                (
                    f"{path}.resources",
                    "Required value: resource rules must supply at least one resource",
                    "FieldValueRequired",
                )
            )
    return causes


def _validate_role(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    rt = ctx.rt or kinds.lookup(API_VERSION, obj.get("kind", "Role"))
    causes = _rule_causes(obj.get("rules"), rt.namespaced)
    if causes:
        raise invalid(rt, obj["metadata"]["name"], causes)


def _validate_binding(obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    rt = ctx.rt or kinds.lookup(API_VERSION, obj.get("kind", "RoleBinding"))
    causes: list[tuple[str, ...]] = []
    ref = obj.get("roleRef") or {}
    allowed_kinds = ("Role", "ClusterRole") if rt.namespaced else ("ClusterRole",)
    if ref.get("apiGroup") != GROUP:
        causes.append(
            (
                "roleRef.apiGroup",
                f'Unsupported value: "{ref.get("apiGroup", "")}": supported values: "{GROUP}"',
                "FieldValueNotSupported",
            )
        )
    if ref.get("kind") not in allowed_kinds:
        supported = ", ".join(f'"{k}"' for k in allowed_kinds)
        causes.append(
            (
                "roleRef.kind",
                f'Unsupported value: "{ref.get("kind", "")}": supported values: {supported}',
                "FieldValueNotSupported",
            )
        )
    if not ref.get("name"):
        causes.append(("roleRef.name", "Required value", "FieldValueRequired"))
    for index, subject in enumerate(obj.get("subjects") or []):
        path = f"subjects[{index}]"
        if not subject.get("name"):
            causes.append((f"{path}.name", "Required value", "FieldValueRequired"))
        kind = subject.get("kind")
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                causes.append(
                    (
                        f"{path}.apiGroup",
                        f'Unsupported value: "{subject["apiGroup"]}": supported values: ""',
                        "FieldValueNotSupported",
                    )
                )
            if not rt.namespaced and not subject.get("namespace"):
                causes.append((f"{path}.namespace", "Required value", "FieldValueRequired"))
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != GROUP:
                causes.append(
                    (
                        f"{path}.apiGroup",
                        f'Unsupported value: "{subject.get("apiGroup", "")}": supported values: "{GROUP}"',
                        "FieldValueNotSupported",
                    )
                )
        else:
            supported = ", ".join(f'"{k}"' for k in SUBJECT_KINDS)
            causes.append(
                (
                    f"{path}.kind",
                    f'Unsupported value: "{kind or ""}": supported values: {supported}',
                    "FieldValueNotSupported",
                )
            )
    if old is not None and (old.get("roleRef") or {}) != ref:
        causes.append(("roleRef", "Invalid value: cannot change roleRef"))
    if causes:
        raise invalid(rt, obj["metadata"]["name"], causes)


for _kind in ("Role", "ClusterRole"):
    admission.register(f"{API_VERSION}/{_kind}", validate=_validate_role)
for _kind in ("RoleBinding", "ClusterRoleBinding"):
    admission.register(f"{API_VERSION}/{_kind}", default=_default_subjects, validate=_validate_binding)


def _cluster_role(name: str, rules: list[dict]) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules,
    }  # fmt: skip


def _cluster_binding(name: str, groups: list[str]) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": group} for group in groups],
    }  # fmt: skip


SEED_OBJECTS = [
    _cluster_role("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                    {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    _cluster_role("system:discovery", [{"nonResourceURLs": DISCOVERY_URLS, "verbs": ["get"]}]),
    _cluster_role("system:public-info-viewer", [{"nonResourceURLs": PUBLIC_INFO_URLS, "verbs": ["get"]}]),
    _cluster_binding("cluster-admin", ["system:masters"]),
    {**_cluster_binding("kubeadm:cluster-admins", ["kubeadm:cluster-admins"]),
     "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "cluster-admin"}},
    _cluster_binding("system:discovery", ["system:authenticated"]),
    _cluster_binding("system:public-info-viewer", ["system:authenticated", "system:unauthenticated"]),
]  # fmt: skip
