# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors raised anywhere in the collection and turned into ``fail_json`` in one place.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations


class ServerlessError(Exception):
    """A failure the user should see as the module's ``msg``; ``result`` adds return values."""

    def __init__(self, msg: str, **result: object) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


class MissingDependency(ServerlessError):
    """A Python library or collection the module needs is not installed."""


class ApiError(ServerlessError):
    """The Kubernetes API answered with an error (``status`` 0: the request never got an answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        text = f"{reason} ({status}): {message}" if status else f"{reason}: {message}"
        super().__init__(f"Kubernetes API error: {text}")

    def __reduce__(self) -> tuple:
        # Rebuild from the three fields (copy and pickle would pass only the message).
        return (type(self), (self.status, self.reason, self.message))


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiError):
    """409: a write raced another writer (stale resourceVersion) or the object already exists."""


class Gone(ApiError):
    """410: the resourceVersion a watch asked for has been compacted away."""


class DryRunUnsupported(ApiError):
    """The server refused a dry-run write (an admission webhook without dry-run support)."""


def api_error(status: int, reason: str, message: str) -> ApiError:
    """The most specific ``ApiError`` subclass for an HTTP status."""
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return cls(status, reason, message)
