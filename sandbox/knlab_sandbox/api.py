"""The Kubernetes API over HTTPS (aiohttp): auth, discovery, CRUD, watch, patch, apply, logs, Table, OpenAPI.

Handlers translate HTTP into `ResourceAPI` calls and `ApiStatusError` into `Status` objects; they
hold no object logic of their own, so the controllers (which call `ResourceAPI` directly) see the
same behaviour as kubectl.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from . import __version__, kinds, protobuf, rbac
from .auth import ADMIN, TokenAuthority, UserInfo, service_account_user
from .errors import ApiStatusError, bad_request, internal_error, method_not_allowed, unauthorized
from .faults import Faults
from .kinds import ResourceType
from .resources import ResourceAPI
from .settings import Settings

log = logging.getLogger(__name__)

KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0+knlab.sandbox"}
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
OPEN_PATHS = ("/healthz", "/readyz", "/livez")
JSON = "application/json"


USER = web.RequestKey("user", UserInfo)


def requester(request: web.Request) -> UserInfo:
    """The authenticated user (set by the auth middleware; the admin for requests made in-process)."""
    return request.get(USER) or ADMIN


def acting_user(request: web.Request) -> str:
    """Who the request acts as: the token's user, or whom it impersonates (resolved by the auth middleware)."""
    return requester(request).name


def status_response(error: ApiStatusError) -> web.Response:
    response = web.json_response(error.to_status(), status=error.code)
    for key, value in error.headers.items():
        response.headers[key] = value
    return response


def _json(data: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(body=json.dumps(data, separators=(",", ":")).encode(), status=status, content_type=JSON)
    for warning in warnings or []:
        response.headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
    return response


# --- discovery ---------------------------------------------------------------------------------


def resource_list(group: str, version: str) -> dict:
    resources = []
    for rt in kinds.ALL:
        if rt.group != group or rt.version != version:
            continue
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        entry["storageVersionHash"] = hashlib.sha256(rt.kind_key.encode()).hexdigest()[:11]
        resources.append(entry)
        for sub in rt.subresources:
            verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
            resources.append(
                {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": verbs,
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def api_group(group: str) -> dict:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in kinds.groups()[group]]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


# --- Table ---------------------------------------------------------------------------------------


def wants_table(request: web.Request) -> bool:
    return any("as=Table" in part for part in request.headers.get("Accept", "").split(","))


def _column_definitions(rt: ResourceType) -> list[dict]:
    columns = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        }
    ]
    printer = rt.printer_columns or (kinds.AGE,)
    for column in printer:
        columns.append(
            {
                "name": column.name,
                "type": "string" if column.type == "date" else column.type,
                "format": column.format,
                "description": column.description or column.name,
                "priority": column.priority,
            }
        )
    return columns


def table(rt: ResourceType, objects: list[dict], include: str, resource_version: str) -> dict:
    printer = rt.printer_columns or (kinds.AGE,)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"], *(kinds.cell(rt, obj, c) for c in printer)]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": _column_definitions(rt),
        "rows": rows,
    }


# --- OpenAPI ---------------------------------------------------------------------------------------


def _definition_name(rt: ResourceType) -> str:
    if not rt.group:
        return f"io.k8s.api.core.v1.{rt.kind}"
    return ".".join(reversed(rt.group.split("."))) + f".{rt.version}.{rt.kind}"


def _gvk(rt: ResourceType) -> dict:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _path_prefix(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


_WRITE_PARAMS = [
    {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
    for n in ("dryRun", "fieldManager", "fieldValidation")
]


def openapi_v3(group: str, version: str) -> dict:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in kinds.ALL:
        if rt.group != group or rt.version != version:
            continue
        ref = {"$ref": f"#/components/schemas/{_definition_name(rt)}"}
        schemas[_definition_name(rt)] = {
            **kinds.public_schema(rt.schema),
            "x-kubernetes-group-version-kind": [_gvk(rt)],
        }
        base = _path_prefix(group, version) + ("/namespaces/{namespace}" if rt.namespaced else "")
        ok = {"200": {"description": "OK", "content": {JSON: {"schema": ref}}}}
        paths[f"{base}/{rt.plural}"] = {
            "get": {
                "operationId": f"list{rt.kind}",
                "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "responses": {"200": {"description": "OK"}},
            },
            "post": {
                "operationId": f"create{rt.kind}",
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "parameters": _WRITE_PARAMS,
                "requestBody": {"content": {"*/*": {"schema": ref}}, "required": True},
                "responses": ok,
            },
        }
        item = {
            "get": {
                "operationId": f"read{rt.kind}",
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "responses": ok,
            },
            "put": {
                "operationId": f"replace{rt.kind}",
                "x-kubernetes-action": "put",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "parameters": _WRITE_PARAMS,
                "requestBody": {"content": {"*/*": {"schema": ref}}, "required": True},
                "responses": ok,
            },
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "parameters": [*_WRITE_PARAMS, {"name": "force", "in": "query", "schema": {"type": "boolean"}}],
                "requestBody": {
                    "content": {
                        t: {"schema": {"type": "object"}}
                        for t in PATCH_TYPES
                        if not (t.startswith("application/strategic") and rt.is_custom)
                    },
                    "required": True,
                },
                "responses": ok,
            },
            "delete": {
                "operationId": f"delete{rt.kind}",
                "x-kubernetes-action": "delete",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "responses": {"200": {"description": "OK"}},
            },
        }
        paths[f"{base}/{rt.plural}/{{name}}"] = item
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (knlab-sandbox)", "version": KUBE_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_v3_root() -> dict:
    paths = {}
    for group, versions in kinds.groups().items():
        for version in versions:
            key = _path_prefix(group, version).lstrip("/")
            digest = hashlib.sha256(json.dumps(openapi_v3(group, version), sort_keys=True).encode()).hexdigest()
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest[:32].upper()}"}
    return {"paths": paths}


def openapi_v2() -> dict:
    definitions = {}
    paths: dict[str, Any] = {}
    for rt in kinds.ALL:
        definitions[_definition_name(rt)] = {
            **_v2_schema(kinds.public_schema(rt.schema)),
            "x-kubernetes-group-version-kind": [_gvk(rt)],
        }
        base = _path_prefix(rt.group, rt.version) + ("/namespaces/{namespace}" if rt.namespaced else "")
        paths[f"{base}/{rt.plural}/{{name}}"] = {
            "patch": {
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": _gvk(rt),
                "parameters": [
                    {"name": n, "in": "query", "type": "string"} for n in ("dryRun", "fieldManager", "fieldValidation")
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (knlab-sandbox)", "version": KUBE_VERSION["gitVersion"]},
        "paths": paths,
        "definitions": definitions,
    }


def _v2_schema(schema: Any) -> Any:
    """Swagger 2.0 has no `nullable`; the rest of our schema subset carries over."""
    if isinstance(schema, dict):
        return {k: _v2_schema(v) for k, v in schema.items() if k != "nullable"}
    if isinstance(schema, list):
        return [_v2_schema(v) for v in schema]
    return schema


# --- the application ------------------------------------------------------------------------------


# How often an idle watch checks that its client is still connected.
CLIENT_CHECK_INTERVAL = 0.5


async def _client_gone(request: web.Request) -> None:
    """Return once the client's connection is closed (aiohttp does not tell the handler itself)."""
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(CLIENT_CHECK_INTERVAL)


class ApiServer:
    def __init__(
        self, api: ResourceAPI, settings: Settings, token: str, faults: Faults, tokens: TokenAuthority | None = None
    ):
        self.api = api
        self.settings = settings
        self.token = token
        self.tokens = tokens
        self._rt_service_account = kinds.lookup("v1", "ServiceAccount")
        self.authorizer = rbac.Authorizer(api.store)
        self.faults = faults
        self._openapi_v3_cache: dict[str, bytes] = {}
        self._watches: set[asyncio.Task] = set()

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self.faults.middleware(status_response), self._auth_middleware, self._error_middleware],
            client_max_size=8 * 1024 * 1024,
        )
        r = app.router
        r.add_get("/healthz", self._ok)
        r.add_get("/readyz", self._ok)
        r.add_get("/livez", self._ok)
        r.add_get("/version", self._version)
        r.add_get("/api", self._api_versions)
        r.add_get("/api/{version}", self._core_resources)
        r.add_route("*", "/api/{version}/{tail:.+}", self._resource)
        r.add_get("/apis", self._api_groups)
        r.add_get("/apis/{group}", self._api_group)
        r.add_get("/apis/{group}/{version}", self._group_resources)
        r.add_route("*", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self._access_review)
        r.add_route("*", "/apis/{group}/{version}/{tail:.+}", self._resource)
        r.add_get("/openapi/v2", self._openapi_v2)
        r.add_get("/openapi/v3", self._openapi_v3_root)
        r.add_get("/openapi/v3/{tail:.+}", self._openapi_v3)
        return app

    # --- middlewares ---
    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in OPEN_PATHS:
            user = self.authenticate(request.headers.get("Authorization", ""))
            if user is None:
                return status_response(unauthorized())
            try:
                request[USER] = self._impersonated(request, user)
                self._authorize_path(request)
            except ApiStatusError as error:
                return status_response(error)
        return await handler(request)

    def _impersonated(self, request: web.Request, user: UserInfo) -> UserInfo:
        """The user the request acts as: kube-apiserver's impersonation filter.

        ``Impersonate-User`` (with any ``Impersonate-Group``) replaces the requester when it may
        impersonate: the admin always, anyone else with RBAC's ``impersonate`` verb on ``users`` (or
        on the ``serviceaccounts`` of a ServiceAccount's name) and on ``groups``. Groups or extras
        without a user are refused (500, as that filter answers).
        """
        others = [h for h in request.headers if h.lower().startswith("impersonate-")]
        if not others:
            return user
        name = request.headers.get("Impersonate-User", "")
        if not name:
            raise internal_error(f"requested {sorted(set(others))} without impersonating a user")
        groups = request.headers.getall("Impersonate-Group", [])
        account = UserInfo(name).service_account
        if not user.is_admin:
            checks = [
                rbac.Attributes("impersonate", account[0], "", "serviceaccounts", name=account[1])
                if account
                else rbac.Attributes("impersonate", resource="users", name=name)
            ]
            checks += [rbac.Attributes("impersonate", resource="groups", name=group) for group in groups]
            for attrs in checks:
                allowed, reason = self.authorizer.authorize(user, attrs)
                if not allowed:
                    raise rbac.forbidden(user, attrs, reason)
        if account:
            groups = [*groups, "system:serviceaccounts", f"system:serviceaccounts:{account[0]}"]
        if name != "system:anonymous":
            groups = [*groups, "system:authenticated"]
        return UserInfo(name, tuple(dict.fromkeys(groups)))

    def _authorize_path(self, request: web.Request) -> None:
        """RBAC for what is not a resource (discovery, /version, /openapi); resources: `_authorize`."""
        user = requester(request)
        parts = [p for p in request.path.split("/") if p]
        is_resource = (parts[:1] == ["api"] and len(parts) >= 3) or (parts[:1] == ["apis"] and len(parts) >= 4)
        if user.is_admin or is_resource:
            return
        attrs = rbac.Attributes(request.method.lower(), path=request.path)
        allowed, reason = self.authorizer.authorize(user, attrs)
        if not allowed:
            raise rbac.forbidden(user, attrs, reason)

    def _authorize(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str | None, sub: str | None
    ) -> None:
        user = requester(request)
        if user.is_admin:
            return
        method = request.method
        if method == "GET":
            verb = "get" if name else ("watch" if _truthy(request.query.get("watch")) else "list")
        elif method == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
        if not name and verb in ("list", "watch"):
            # As RequestInfo: a list or watch of one name (metadata.name=) is for that name.
            selector = request.query.get("fieldSelector", "")
            if selector.startswith("metadata.name=") and "," not in selector:
                name = selector.removeprefix("metadata.name=")
        attrs = rbac.Attributes(verb, namespace or "", rt.group, rt.plural, sub or "", name or "")
        allowed, reason = self.authorizer.authorize(user, attrs)
        if not allowed:
            raise rbac.forbidden(user, attrs, reason)

    def authenticate(self, header: str) -> UserInfo | None:
        """The admin for the kubeconfig's token; a ServiceAccount for a token issued to it while it exists."""
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            return None
        if hmac.compare_digest(presented, self.token):
            return ADMIN
        verified = self.tokens.verify(presented) if self.tokens is not None else None
        if verified is None:
            return None
        namespace, name, uid = verified
        account = self.api.get_nowait(self._rt_service_account, name, namespace=namespace)
        metadata = (account or {}).get("metadata") or {}
        if account is None or metadata.get("uid") != uid or metadata.get("deletionTimestamp"):
            return None  # deleted (or deleted and made again): the token went with it
        return service_account_user(namespace, name, uid)

    @web.middleware
    async def _error_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiStatusError as error:
            return status_response(error)
        except web.HTTPNotFound:
            return status_response(ApiStatusError(404, "NotFound", "the server could not find the requested resource"))
        except web.HTTPMethodNotAllowed:
            return status_response(method_not_allowed())
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # an unexpected bug: answer like a server would, and log it
            log.exception("internal error handling %s %s", request.method, request.path)
            return status_response(internal_error(f"{type(exc).__name__}: {exc}"))

    # --- simple endpoints ---
    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        return _json(
            {
                **KUBE_VERSION,
                "gitCommit": "",
                "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "python",
                "compiler": "cpython",
                "platform": "linux/amd64",
                "sandbox": __version__,
            }
        )

    async def _api_versions(self, request: web.Request) -> web.Response:
        return _json(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}],
            }
        )

    async def _core_resources(self, request: web.Request) -> web.Response:
        if request.match_info["version"] != "v1":
            raise web.HTTPNotFound()
        return _json(resource_list("", "v1"))

    async def _api_groups(self, request: web.Request) -> web.Response:
        groups = [api_group(g) for g in kinds.groups() if g]
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def _api_group(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        if not group or group not in kinds.groups():
            raise web.HTTPNotFound()
        return _json(api_group(group))

    async def _group_resources(self, request: web.Request) -> web.Response:
        group, version = request.match_info["group"], request.match_info["version"]
        if version not in kinds.groups().get(group, []) or not group:
            raise web.HTTPNotFound()
        return _json(resource_list(group, version))

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        return _json(openapi_v2())

    async def _openapi_v3_root(self, request: web.Request) -> web.Response:
        return _json(openapi_v3_root())

    async def _openapi_v3(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        parts = tail.split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            raise web.HTTPNotFound()
        if version not in kinds.groups().get(group, []):
            raise web.HTTPNotFound()
        body = self._openapi_v3_cache.get(tail)
        if body is None:
            body = json.dumps(openapi_v3(group, version)).encode()
            self._openapi_v3_cache[tail] = body
        response = web.Response(body=body, content_type=JSON)
        response.headers["Cache-Control"] = "public, immutable" if "hash" in request.query else "no-cache"
        return response

    # --- resources ---
    def _route(self, request: web.Request) -> tuple[ResourceType, str | None, str | None, str | None]:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        segments = request.match_info["tail"].split("/")
        namespace = None
        if segments[0] == "namespaces" and len(segments) >= 3 and segments[2] not in ("status", "finalize"):
            namespace, segments = segments[1], segments[2:]
        if len(segments) > 3 or not all(segments):
            raise web.HTTPNotFound()
        rt = kinds.by_plural(group, version, segments[0])
        if rt is None:
            raise web.HTTPNotFound()
        name = segments[1] if len(segments) > 1 else None
        sub = segments[2] if len(segments) > 2 else None
        if (namespace is not None and not rt.namespaced) or (rt.namespaced and name and namespace is None):
            raise web.HTTPNotFound()
        if sub is not None and sub not in rt.subresources:
            raise web.HTTPNotFound()
        return rt, namespace, name, sub

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        rt, namespace, name, sub = self._route(request)
        self._authorize(request, rt, namespace, name, sub)
        method = request.method
        if name is None:
            if method == "GET":
                if _truthy(request.query.get("watch")):
                    return await self._watch(request, rt, namespace)
                return await self._list(request, rt, namespace)
            if method == "POST":
                return await self._create(request, rt, namespace)
            if method == "DELETE":
                return await self._delete_collection(request, rt, namespace)
            raise method_not_allowed()
        if sub == "log":
            if method != "GET":
                raise method_not_allowed()
            return await self._log(request, rt, namespace, name)
        if method == "GET":
            obj = await self.api.get(rt, name, namespace=namespace)
            if wants_table(request):
                return _json(
                    table(rt, [obj], request.query.get("includeObject", "Metadata"), obj["metadata"]["resourceVersion"])
                )
            return _json(obj)
        if method == "PUT":
            return await self._update(request, rt, namespace, name, sub)
        if method == "PATCH":
            return await self._patch(request, rt, namespace, name, sub)
        if method == "DELETE" and sub is None:
            return await self._delete(request, rt, namespace, name)
        raise method_not_allowed()

    async def _access_review(self, request: web.Request) -> web.Response:
        """``kubectl auth can-i``: what RBAC answers for the requester (the admin too); nothing is stored."""
        if request.method != "POST":
            raise method_not_allowed()
        review = rbac.access_review(self.authorizer, requester(request), await self._body(request))
        return _json(review, 201)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        content_type = request.content_type
        if content_type == protobuf.CONTENT_TYPE:
            return protobuf.decode(raw)
        try:
            if content_type in ("application/yaml", "application/apply-patch+yaml"):
                return yaml.safe_load(raw.decode() or "null")
            return json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _write_options(self, request: web.Request) -> dict[str, Any]:
        query = request.query
        dry_run = query.getall("dryRun", [])
        for value in dry_run:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        validation = query.get("fieldValidation", "Warn") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(
                f'fieldValidation: Unsupported value: {validation!r}: supported values: "Ignore", "Warn", "Strict"'
            )
        manager = query.get("fieldManager") or _manager_from_agent(request.headers.get("User-Agent", ""))
        if len(manager) > 128:
            raise bad_request("fieldManager: Too long: must have at most 128 bytes")
        return {
            "dry_run": bool(dry_run),
            "field_validation": validation,
            "field_manager": manager,
            "user": acting_user(request),
        }

    async def _list(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.Response:
        items, rv = await self.api.list(
            rt,
            namespace=namespace,
            label_selector=request.query.get("labelSelector"),
            field_selector=request.query.get("fieldSelector"),
        )
        if wants_table(request):
            return _json(table(rt, items, request.query.get("includeObject", "Metadata"), rv))
        return _json(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": rv}, "items": items}
        )

    async def _create(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.Response:
        if rt.namespaced and namespace is None:
            raise method_not_allowed()
        body = await self._body(request)
        options = self._write_options(request)
        warnings: list[str] = []
        obj = await self.api.create(rt, body, namespace=namespace, warnings=warnings, **options)
        # 201 for a dry run too: the API server's create handler answers 201 Created whatever dryRun says.
        return _json(obj, 201, warnings)

    async def _update(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str, sub: str | None
    ) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise bad_request(f"the name of the object ({body_name}) does not match the name on the URL ({name})")
        body.setdefault("metadata", {})["name"] = name
        options = self._write_options(request)
        warnings: list[str] = []
        obj = await self.api.update(rt, body, subresource=sub, namespace=namespace, warnings=warnings, **options)
        return _json(obj, 200, warnings)

    async def _patch(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str, sub: str | None
    ) -> web.Response:
        patch_type = PATCH_TYPES.get(request.content_type)
        if patch_type is None:
            raise ApiStatusError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: {', '.join(PATCH_TYPES)}",
            )
        body = await self._body(request)
        options = self._write_options(request)
        if patch_type == "apply" and not request.query.get("fieldManager"):
            raise bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        if patch_type != "apply" and "force" in request.query:
            raise bad_request("force: Forbidden: may not be specified for non-apply patch")
        warnings: list[str] = []
        existed = self.api.get_nowait(rt, name, namespace=namespace) is not None
        obj = await self.api.patch(
            rt,
            name,
            body,
            patch_type,
            namespace=namespace,
            subresource=sub,
            force=_truthy(request.query.get("force")),
            warnings=warnings,
            **options,
        )
        return _json(obj, 200 if existed else 201, warnings)  # an apply that creates: 201, dry run or not

    def _delete_options(self, request: web.Request, body: Any) -> tuple[str, dict, bool]:
        body = body if isinstance(body, dict) else {}
        propagation = request.query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = request.query.get("orphanDependents", body.get("orphanDependents"))
        if not propagation:
            propagation = "Orphan" if _truthy(orphan) else "Background"
        dry_run = bool(request.query.getall("dryRun", [])) or bool(body.get("dryRun"))
        return propagation, body.get("preconditions") or {}, dry_run

    async def _delete(self, request: web.Request, rt: ResourceType, namespace: str | None, name: str) -> web.Response:
        body = await self._body(request) if request.can_read_body else None
        propagation, preconditions, dry_run = self._delete_options(request, body)
        obj = await self.api.delete(
            rt, name, namespace=namespace, propagation=propagation, dry_run=dry_run, preconditions=preconditions
        )
        # 202 while finalizers hold the object, 200 once it is gone.
        return _json(
            obj, 202 if obj["metadata"].get("deletionTimestamp") and obj["metadata"].get("finalizers") else 200
        )

    async def _delete_collection(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.Response:
        if "deletecollection" not in rt.verbs:
            raise method_not_allowed()
        body = await self._body(request) if request.can_read_body else None
        propagation, _, dry_run = self._delete_options(request, body)
        items, rv = await self.api.list(
            rt,
            namespace=namespace,
            label_selector=request.query.get("labelSelector"),
            field_selector=request.query.get("fieldSelector"),
        )
        deleted = []
        for item in items:
            with contextlib.suppress(ApiStatusError):
                deleted.append(
                    await self.api.delete(
                        rt,
                        item["metadata"]["name"],
                        namespace=item["metadata"].get("namespace"),
                        propagation=propagation,
                        dry_run=dry_run,
                    )
                )
        return _json(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": rv}, "items": deleted}
        )

    # --- watch ---
    async def _watch(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.StreamResponse:
        query = request.query
        timeout = _float(query.get("timeoutSeconds"))
        if timeout is None:
            timeout = random.uniform(1800, 3600)  # what a real server picks (30-60 min)
        lifetime = self.faults.watch_lifetime
        as_table = wants_table(request)
        include = query.get("includeObject", "Metadata")
        events = self.api.watch(
            rt,
            namespace=namespace,
            resource_version=query.get("resourceVersion"),
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            bookmarks=_truthy(query.get("allowWatchBookmarks")),
        )
        # Parse problems (bad selector, bad resourceVersion) are plain HTTP errors, before the stream starts.
        first = await self._first_event(events)
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        dropped = False
        try:
            await response.prepare(request)
            async with asyncio.timeout(min(timeout, lifetime) if lifetime else timeout) as deadline:
                stream = asyncio.ensure_future(
                    self._stream_events(response, rt, _chain(first, events), as_table, include)
                )
                gone = asyncio.ensure_future(_client_gone(request))
                try:
                    await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (stream, gone):
                        task.cancel()
                    await asyncio.gather(stream, gone, return_exceptions=True)
                if not stream.cancelled() and stream.exception() is not None:
                    raise stream.exception()
                if gone.done() and not gone.cancelled() and not stream.done():
                    # aiohttp does not cancel a handler whose client left; a real server ends the watch at once.
                    log.debug("watch %s %s ended: the client disconnected", request.path, request.query_string)
                    return response
            dropped = deadline.expired() and bool(lifetime) and lifetime < timeout
        except TimeoutError:
            dropped = bool(lifetime) and lifetime < timeout
        except ConnectionError:
            # The client went away (it stopped watching, or its connection broke): a watch's normal end.
            log.debug("watch %s %s ended: the client disconnected", request.path, request.query_string)
            return response
        finally:
            await events.aclose()
        if dropped and request.transport is not None:
            request.transport.abort()  # fault injection: the connection breaks mid-stream
            return response
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _stream_events(
        self, response: web.StreamResponse, rt: ResourceType, events: AsyncIterator[dict], as_table: bool, include: str
    ) -> None:
        try:
            async for event in events:
                await response.write(self._encode_event(rt, event, as_table, include))
        except ApiStatusError as error:  # 410 Expired on resume: an ERROR event, as etcd watches do
            await response.write(json.dumps({"type": "ERROR", "object": error.to_status()}).encode() + b"\n")

    @staticmethod
    async def _first_event(events: AsyncIterator[dict]) -> list[Any]:
        """Start the watch generator so argument errors surface before the 200 is sent."""
        task = asyncio.ensure_future(events.__anext__())
        done, _ = await asyncio.wait({task}, timeout=0.05)
        if task in done:
            try:
                return [("event", task.result())]
            except StopAsyncIteration:
                return []
            except ApiStatusError as error:
                if error.code == 410:
                    return [("error", error)]
                raise
        return [("pending", task)]

    def _encode_event(self, rt: ResourceType, event: dict, as_table: bool, include: str) -> bytes:
        if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            obj = event["object"]
            event = {"type": event["type"], "object": table(rt, [obj], include, obj["metadata"]["resourceVersion"])}
        return json.dumps(event, separators=(",", ":")).encode() + b"\n"

    # --- logs ---
    async def _log(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str
    ) -> web.StreamResponse:
        pod = await self.api.get(rt, name, namespace=namespace)
        containers = [c["name"] for c in pod.get("spec", {}).get("containers") or []]
        init_containers = [c["name"] for c in pod.get("spec", {}).get("initContainers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]"
                    + (f" or one of the init containers: [{' '.join(init_containers)}]" if init_containers else "")
                )
            container = containers[0]
        elif container not in containers + init_containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        path = self.settings.log_path(namespace or "default", name, container)
        follow = _truthy(request.query.get("follow"))
        tail = _int(request.query.get("tailLines"))
        limit = _int(request.query.get("limitBytes"))
        if not path.exists():
            if not follow:
                raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
            while not path.exists():
                if not await self._pod_alive(rt, namespace, name):
                    raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
                await asyncio.sleep(0.2)
        data = path.read_bytes()
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
            offset = path.stat().st_size
        else:
            offset = len(data)
        if limit is not None:
            data = data[:limit]
        if not follow:
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size > offset:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(size - offset)
                offset = size
                await response.write(chunk)
                continue
            if not await self._pod_alive(rt, namespace, name, container):
                break
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    async def _pod_alive(
        self, rt: ResourceType, namespace: str | None, name: str, container: str | None = None
    ) -> bool:
        """False once the pod is gone or finished (or this container terminated): follow ends then."""
        pod = self.api.get_nowait(rt, name, namespace=namespace)
        if pod is None or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return False
        for status in pod.get("status", {}).get("containerStatuses") or []:
            if status.get("name") == container and (status.get("state") or {}).get("terminated"):
                return False
        return True


async def _chain(first: list[Any], rest: AsyncIterator[dict]) -> AsyncIterator[dict]:
    for kind, value in first:
        if kind == "event":
            yield value
        elif kind == "error":
            raise value
        else:  # a pending first step: its result is the first event
            try:
                yield await value
            except StopAsyncIteration:
                return
    async for event in rest:
        yield event


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes") if value is not None else False


def _int(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid integer {value!r}") from None


def _float(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise bad_request(f"invalid number {value!r}") from None


def _manager_from_agent(user_agent: str) -> str:
    """The default field manager, as the API server derives it: the user agent up to the first '/'."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]
