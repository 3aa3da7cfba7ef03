"""Kubernetes `Status` errors.

Everything below the HTTP layer raises `ApiStatusError`; api.py turns it into the `Status` object a
real API server sends, so clients (kubectl, client-go, the Python client) react to the reason and
code exactly as they would against a cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .kinds import ResourceType


class ApiStatusError(Exception):
    """An API error that becomes a `Status` object (`kind: Status`, `status: Failure`)."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        # Extra response headers, e.g. Retry-After for 429.
        self.headers: dict[str, str] = {}

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _details(rt: ResourceType | None, name: str | None, *, kind_field: str | None = None) -> dict:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rt is not None:
        if rt.group:
            details["group"] = rt.group
        details["kind"] = kind_field or rt.plural
    return details


def _qualified(rt: ResourceType) -> str:
    # Real servers name the resource as "<plural>" for core and "<plural>.<group>" otherwise.
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def not_found(rt: ResourceType, name: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", f'{_qualified(rt)} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiStatusError:
    return ApiStatusError(409, "AlreadyExists", f'{_qualified(rt)} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str, msg: str | None = None) -> ApiStatusError:
    msg = msg or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiStatusError(
        409, "Conflict", f'Operation cannot be fulfilled on {_qualified(rt)} "{name}": {msg}', _details(rt, name)
    )


def gone(msg: str) -> ApiStatusError:
    """410 for a resourceVersion older than the kept history (watch resume after compaction)."""
    return ApiStatusError(410, "Expired", msg)


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, ...]]) -> ApiStatusError:
    """422 Invalid. Each cause is (field, message) or (field, message, reason).

    As apimachinery's NewInvalid: a cause's message is the error body alone (the field is in
    `field`); the top-level message lists each error as "<field>: <body>".
    """
    cause_dicts = []
    texts = []
    for cause in causes:
        field, message = cause[0], cause[1]
        reason = cause[2] if len(cause) > 2 else "FieldValueInvalid"
        cause_dicts.append({"reason": reason, "message": message, "field": field})
        texts.append(f"{field}: {message}" if field else message)
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(rt, name, kind_field=rt.kind)
    details["causes"] = cause_dicts
    qualified_kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return ApiStatusError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {summary}', details)


def bad_request(msg: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", msg)


def method_not_allowed(msg: str = "the server does not allow this method on the requested resource") -> ApiStatusError:
    return ApiStatusError(405, "MethodNotAllowed", msg)


def unsupported_media_type(content_type: str) -> ApiStatusError:
    accepted = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    return ApiStatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {accepted}; "
        f'got "{content_type}"',
    )


def unauthorized() -> ApiStatusError:
    return ApiStatusError(401, "Unauthorized", "Unauthorized")


def internal_error(msg: str) -> ApiStatusError:
    return ApiStatusError(500, "InternalError", f"Internal error occurred: {msg}")
