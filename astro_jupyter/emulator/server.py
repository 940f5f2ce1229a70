"""HTTP server of the emulator: routing, fault injection, the control surface, request log.

The server binds a loopback address only and handles each request in its own
thread. Before a handler runs, an injected fault for its endpoint may delay the
response or replace it. Requests are logged at DEBUG with method, path and
status only, because queries and bodies carry codes and tokens; the request
line is never logged. The server keeps no login state itself: ``Backend`` does.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from . import api, oauth
from .backend import Backend
from .faults import DROPPED_STATUS, Fault, RequestRecord
from .messages import HttpError, InvalidParameterError, Request, Response, api_error, json_response

__all__ = ["EmulatorHttpServer", "dispatch", "loopback_bind_address"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20

# Maximum seconds a connection may stay idle before its handler thread closes it.
_SOCKET_TIMEOUT_S = 10


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    endpoint: str | None
    handler: Callable[..., Response]


def _set_fault(backend: Backend, request: Request) -> Response:
    try:
        fault = Fault.from_json(request.json())
    except (InvalidParameterError, ValueError) as exc:
        return api_error(400, str(exc), request.request_id)
    backend.faults.set(fault)
    return json_response(201, {"endpoint": fault.endpoint, "status": fault.status})


def _clear_faults(backend: Backend, request: Request) -> Response:
    backend.faults.clear()
    return Response(204)


def _list_requests(backend: Backend, request: Request) -> Response:
    records = [record.to_json() for record in backend.log.snapshot()]
    return json_response(200, {"requests": records})


def _route(
    method: str, path: str, endpoint: str | None, handler: Callable[..., Response]
) -> _Route:
    pattern = re.compile("^" + path.replace("<org_id>", "(?P<org_id>[^/]+)") + "$")
    return _Route(method, pattern, endpoint, handler)


# Paths are relative to the API base URL; OAuth endpoints live below "/auth/".
# Routes without an endpoint name are the control surface, which the request log skips.
_ROUTES = (
    _route("GET", "/private/v1alpha1/cli/auth-config", "auth-config", api.auth_config),
    _route("GET", "/auth-config", "legacy-auth-config", api.legacy_auth_config),
    _route("POST", "/organization-lookup", "organization-lookup", api.organization_lookup),
    _route("GET", "/auth/authorize", "authorize", oauth.authorize),
    _route("POST", "/auth/authorize/decision", "authorize-decision", oauth.decide),
    _route("POST", "/auth/oauth/token", "token", oauth.token),
    _route("GET", "/auth/userinfo", "userinfo", oauth.userinfo),
    _route("GET", "/v1/users/self", "self", api.current_user),
    _route("GET", "/v1/organizations", "organizations", api.list_organizations),
    _route("GET", "/v1/organizations/<org_id>", "organization", api.get_organization),
    _route("GET", "/v1/organizations/<org_id>/workspaces", "workspaces", api.list_workspaces),
    _route("GET", "/v1/organizations/<org_id>/deployments", "deployments", api.list_deployments),
    _route("POST", "/_emulator/faults", None, _set_fault),
    _route("DELETE", "/_emulator/faults", None, _clear_faults),
    _route("GET", "/_emulator/requests", None, _list_requests),
)


def dispatch(backend: Backend, request: Request) -> tuple[Response, str | None, bool]:
    """Route one request to its handler, or to an injected fault, and return the result.

    Returns
    -------
    tuple
        The response, the endpoint name (``None`` for unknown paths), and
        whether the request belongs in the request log.
    """
    matches = [
        (route, match) for route in _ROUTES if (match := route.pattern.match(request.path))
    ]
    if not matches:
        message = f"Not found: the emulator has no endpoint at {request.path}."
        return api_error(404, message, request.request_id), None, True
    chosen = [(route, match) for route, match in matches if route.method == request.method]
    if not chosen:
        allowed = ", ".join(sorted({route.method for route, _ in matches}))
        response = api_error(405, f"Method {request.method} not allowed.", request.request_id)
        response.headers.append(("Allow", allowed))
        return response, matches[0][0].endpoint, matches[0][0].endpoint is not None
    route, match = chosen[0]
    endpoint = route.endpoint
    if endpoint == "token":
        endpoint = oauth.token_endpoint_name(request)
    path_params = {name: unquote(value) for name, value in match.groupdict().items()}

    try:
        if endpoint is not None:
            injected = _apply_fault(backend, endpoint, request)
            if injected is not None:
                return injected, endpoint, True
        return route.handler(backend, request, **path_params), endpoint, endpoint is not None
    except HttpError as exc:
        return exc.response, endpoint, endpoint is not None
    except Exception:
        # A bug in a handler: respond with 500 like a real server and keep the traceback in the log.
        logger.exception("Internal error while handling %s %s", request.method, request.path)
        message = "Internal error in the emulator; see its log."
        return api_error(500, message, request.request_id), endpoint, endpoint is not None


def _apply_fault(backend: Backend, endpoint: str, request: Request) -> Response | None:
    fault = backend.faults.take(endpoint)
    if fault is None:
        return None
    logger.debug(
        "Applying the injected fault of %s: status %s after %g s",
        endpoint,
        fault.status,
        fault.delay_s,
    )
    if fault.delay_s:
        # Waiting on the stop event lets stop() end the delay at once.
        backend.stopping.wait(fault.delay_s)
    if fault.drop:
        return Response(DROPPED_STATUS)
    if fault.status is None:
        return None
    body, content_type = fault.render_body(fault.status, request.request_id)
    return Response(fault.status, body, content_type, list((fault.headers or {}).items()))


class _RequestHandler(BaseHTTPRequestHandler):
    server: EmulatorHttpServer
    server_version = "AstroEmulator/0.1"
    # HTTP/1.0 closes every connection after one response, so no idle keep-alive
    # connection keeps a handler thread busy when the server stops.
    protocol_version = "HTTP/1.0"
    timeout = _SOCKET_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        started_ns = time.monotonic_ns()
        backend = self.server.backend
        parts = urlsplit(self.path)
        path = parts.path or "/"
        request_id = secrets.token_hex(12)
        try:
            body = self._read_body(request_id)
        except HttpError as exc:
            response, endpoint, logged = exc.response, None, True
        else:
            request = Request(self.command, path, parts.query, self.headers, body, request_id)
            response, endpoint, logged = dispatch(backend, request)
        service_ns = time.monotonic_ns() - started_ns

        # Log before sending, so a client that reads the log after its response finds the entry.
        if logged:
            record = RequestRecord(
                self.command, path, endpoint, response.status, started_ns, service_ns
            )
            backend.log.append(record)
        logger.debug("%s %s -> %d", self.command, path, response.status)
        if response.status == DROPPED_STATUS:
            self._drop_connection()
            return
        try:
            self._write(response)
        except OSError as exc:
            logger.debug(
                "Client left before the response to %s %s was sent: %s", self.command, path, exc
            )

    def _drop_connection(self) -> None:
        """Close the connection with a TCP reset, as a crashing server or a proxy would."""
        self.close_connection = True
        # A zero linger time makes close() send RST instead of FIN. The socket
        # is closed for real once finish() closes its file objects.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _read_body(self, request_id: str) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            message = "Chunked request bodies are not supported: send a Content-Length."
            raise HttpError(api_error(411, message, request_id))
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            message = f"Invalid Content-Length {length_text!r}: expected 0 to {MAX_BODY_BYTES}."
            raise HttpError(api_error(413 if length > 0 else 400, message, request_id))
        return self.rfile.read(length) if length else b""

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log nothing: the request line contains the query, and ``_handle`` logs without it."""

    def log_error(self, format: str, *args: object) -> None:  # noqa: A002 - base class name
        """Log a protocol error without its arguments, which may quote the request line."""
        status = args[0] if args and isinstance(args[0], int) else None
        logger.debug(
            "Rejected a malformed request from %s (status %s)", self.client_address[0], status
        )


def loopback_bind_address(host: str) -> tuple[str, socket.AddressFamily]:
    """Return the address to bind for ``host`` and its address family.

    ``localhost`` binds 127.0.0.1, so no name lookup takes place.

    Raises
    ------
    ValueError
        The host is not a loopback address, because the emulator is not a
        server for a network.
    """
    if host == "localhost":
        return "127.0.0.1", socket.AF_INET
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"Invalid host {host!r}: the emulator binds only loopback addresses "
            "such as 127.0.0.1 or ::1."
        )
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return address.compressed, family


class EmulatorHttpServer(ThreadingHTTPServer):
    """A threaded HTTP server on one loopback socket that serves ``backend``.

    Handler threads are not daemons, so ``server_close`` joins them and a
    stopped emulator leaves no thread or socket behind.
    """

    daemon_threads = False
    block_on_close = True
    # The listen backlog. socketserver's default of 5 drops connections when a
    # browser or a test opens many at once, and the client then retries after 1 s.
    request_queue_size = 64

    def __init__(self, host: str, port: int, backend: Backend) -> None:
        bind_host, family = loopback_bind_address(host)
        self.address_family = family
        self.backend = backend
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__((bind_host, port), _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up with socket.getfqdn, a reverse
        # DNS query that can be slow and leaves loopback; the bound address is enough.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def end_reads(self) -> None:
        """Make every open connection's pending read see end of file.

        A handler waiting for a request that never comes (a browser opens spare
        connections) then ends at once instead of after its socket timeout.
        Responses being written are not affected.
        """
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
