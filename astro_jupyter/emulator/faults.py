"""Endpoint names, injected faults and the request log of the emulator.

This module contains the test-facing bookkeeping: which endpoints exist, which of
them should fail next and how, and what was requested so far. It sends no
requests and uses nothing of the HTTP handlers but the status codes they sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

__all__ = [
    "DROPPED_STATUS",
    "ENDPOINTS",
    "OAUTH_TOKEN_ENDPOINTS",
    "Fault",
    "FaultTable",
    "RequestLog",
    "RequestRecord",
    "validate_endpoint",
]

ENDPOINTS = (
    "auth-config",
    "legacy-auth-config",
    "organization-lookup",
    "authorize",
    "authorize-decision",
    "token",
    "refresh",
    "userinfo",
    "self",
    "organization",
    "organizations",
    "workspaces",
    "deployments",
)
"""Names of the emulated endpoints, as ``Emulator.fail`` and ``Emulator.count`` take them."""

OAUTH_TOKEN_ENDPOINTS = frozenset({"token", "refresh"})
"""Endpoints whose errors are OAuth error objects rather than API error objects."""

DROPPED_STATUS = 0
"""The status that the request log records for a connection dropped without a response."""

# Maximum delay of one injected fault. It keeps every test wait bounded.
MAX_DELAY_S = 60.0

# Default OAuth error codes of injected token endpoint faults (RFC 6749 section 5.2,
# plus the "server_error" and "temporarily_unavailable" codes of section 4.1.2.1).
_OAUTH_ERROR_BY_STATUS = {
    400: "invalid_grant",
    401: "invalid_client",
    403: "unauthorized_client",
    503: "temporarily_unavailable",
}


def validate_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` unchanged, or raise ``ValueError`` if it names no endpoint."""
    if endpoint not in ENDPOINTS:
        known = ", ".join(ENDPOINTS)
        raise ValueError(f"Unknown emulator endpoint {endpoint!r}: expected one of {known}.")
    return endpoint


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator served.

    ``path`` never contains the query string, because queries carry codes and
    PKCE challenges. ``endpoint`` is ``None`` for a path that matches no endpoint.
    ``started_ns`` is ``time.monotonic_ns()`` when the handler began, after
    http.server parsed the request line and headers. ``service_ns`` runs from
    then until the response was ready to send, injected delays included. Both
    are 0 in records made elsewhere, and neither takes part in comparisons.
    """

    method: str
    path: str
    endpoint: str | None
    status: int
    started_ns: int = field(default=0, compare=False)
    service_ns: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, object]:
        """Return the record as a JSON-ready dict."""
        return {
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint,
            "status": self.status,
        }


@dataclass
class Fault:
    """An injected failure of one endpoint.

    Attributes
    ----------
    endpoint
        The endpoint name, one of ``ENDPOINTS``.
    status
        The HTTP status to send instead of the normal response, or ``None`` to
        send the normal response after ``delay_s``.
    delay_s
        Seconds to wait before responding, at most ``MAX_DELAY_S``.
    body
        A dict is sent as JSON, bytes or str are sent as they are, and ``None``
        selects the default error body of the endpoint.
    times
        How many more requests the fault applies to; ``None`` means until cleared.
    headers
        Extra response headers, such as ``{"Retry-After": "2"}``.
    drop
        Close the connection after ``delay_s`` with a TCP reset and send no
        response at all, whatever ``status`` is. The request log records
        such a request with status ``DROPPED_STATUS``.
    """

    endpoint: str
    status: int | None = 500
    delay_s: float = 0.0
    body: dict[str, object] | bytes | str | None = None
    times: int | None = None
    headers: dict[str, str] | None = None
    drop: bool = False

    def __post_init__(self) -> None:
        validate_endpoint(self.endpoint)
        if self.status is not None and not (
            isinstance(self.status, int) and 100 <= self.status <= 599
        ):
            raise ValueError(f"Invalid fault status {self.status!r}: expected 100 to 599 or None.")
        if not isinstance(self.delay_s, (int, float)) or not 0 <= self.delay_s <= MAX_DELAY_S:
            raise ValueError(
                f"Invalid fault delay_s {self.delay_s!r}: expected 0 to {MAX_DELAY_S:g} seconds."
            )
        if self.body is not None and not isinstance(self.body, (dict, bytes, str)):
            raise ValueError(
                f"Invalid fault body of type {type(self.body).__name__}: "
                "expected a dict (sent as JSON), bytes, str or None."
            )
        if self.times is not None and not (isinstance(self.times, int) and self.times >= 1):
            raise ValueError(
                f"Invalid fault times {self.times!r}: expected a positive int or None."
            )
        if self.headers is not None and not _valid_headers(self.headers):
            raise ValueError(
                "Invalid fault headers: expected a dict of header names to str values, "
                "without line breaks."
            )
        if not isinstance(self.drop, bool):
            raise ValueError(f"Invalid fault drop {self.drop!r}: expected true or false.")

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """Build a fault from the JSON object of the HTTP control surface.

        Raises
        ------
        ValueError
            A field is missing, unknown or invalid.
        """
        if not isinstance(data, dict):
            raise ValueError("Invalid fault: expected a JSON object.")
        allowed = {"endpoint", "status", "delay_s", "body", "times", "headers", "drop"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"Invalid fault: unknown fields {unknown}; allowed: {sorted(allowed)}."
            )
        if "endpoint" not in data:
            raise ValueError("Invalid fault: the field 'endpoint' is missing.")
        return cls(
            endpoint=data["endpoint"],
            status=data.get("status", 500),
            delay_s=data.get("delay_s", 0.0),
            body=data.get("body"),
            times=data.get("times"),
            headers=data.get("headers"),
            drop=data.get("drop", False),
        )

    def render_body(self, status: int, request_id: str) -> tuple[bytes, str]:
        """Return the response body and its content type for ``status``."""
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode("utf-8"), "application/json"
        default: dict[str, object]
        if self.endpoint in OAUTH_TOKEN_ENDPOINTS:
            default = {
                "error": _OAUTH_ERROR_BY_STATUS.get(status, "server_error"),
                "error_description": f"Injected fault: HTTP {status} from the emulator.",
            }
        else:
            default = {
                "message": f"Injected fault: HTTP {status} from the emulator.",
                "statusCode": status,
                "requestId": request_id,
            }
        return json.dumps(default).encode("utf-8"), "application/json"


def _valid_headers(headers: object) -> bool:
    if not isinstance(headers, dict):
        return False
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            return False
        if not name or any(character in name + value for character in "\r\n"):
            return False
    return True


class FaultTable:
    """Thread-safe map from endpoint name to its active fault.

    One endpoint has at most one fault, so a new fault replaces the old one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def set(self, fault: Fault) -> None:
        """Make ``fault`` the active fault of its endpoint."""
        with self._lock:
            self._faults[fault.endpoint] = fault

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def take(self, endpoint: str) -> Fault | None:
        """Return the fault to apply to one request of ``endpoint``, using up one of its times."""
        with self._lock:
            fault = self._faults.get(endpoint)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    del self._faults[endpoint]
            return fault


class RequestLog:
    """Thread-safe, append-only list of the requests served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        """Add one served request at the end."""
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        """Return a copy of the records in the order they were logged."""
        with self._lock:
            return list(self._records)

    def count(self, endpoint: str) -> int:
        """Return how many requests of ``endpoint`` were served."""
        validate_endpoint(endpoint)
        with self._lock:
            return sum(1 for record in self._records if record.endpoint == endpoint)
