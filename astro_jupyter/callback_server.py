"""The one-shot loopback server that receives the browser's OAuth redirect.

It binds 127.0.0.1 only (RFC 8252 section 7.3), closes connections from any
peer that is not a loopback address, serves a single login, and acts only on
``GET /callback`` whose ``state`` matches. A favicon request, another path, or a
response with a wrong, missing or repeated ``state`` gets a small page and is
otherwise ignored, so a stray or forged request can neither finish nor abort
the login. Each connection is served on its own thread with a read timeout, so
an idle or slow client cannot hold up the browser's redirect. The waiting side
reads outcomes from a queue that a cancel or a pasted redirect URL can also feed.

It handles no tokens: it returns the authorization code and stops.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import logging
import queue
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .callback_query import CallbackOutcome, parse_callback_query
from .errors import (
    CallbackError,
    CallbackPortBusyError,
    LoginCancelledError,
    LoginTimeoutError,
)

__all__ = ["CallbackOutcome", "CallbackServer", "is_loopback_address", "parse_callback_query"]

log = logging.getLogger(__name__)

CALLBACK_PATH = "/callback"
_BIND_HOST = "127.0.0.1"
# A browser that opens the connection but never sends its request must not
# hold a handler thread for long.
# NOTE: the timeout applies to each read, so a local client that sends a byte
# every few seconds keeps its thread until close(). Every connection has its own
# thread, so such a client cannot delay the browser's redirect.
_REQUEST_READ_TIMEOUT_S = 5.0
# A connect to a loopback port succeeds or fails at once; this only bounds a stall.
_LISTEN_PROBE_TIMEOUT_S = 0.5
# How long close() waits for the threads of open connections after cutting them off.
_CONNECTION_JOIN_TIMEOUT_S = 0.5
# How often the serving loop checks for shutdown, in seconds. close() waits up
# to this long, which the login flow overlaps with the token exchange.
_POLL_INTERVAL_S = 0.05


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}</style>
</head><body><h1>{title}</h1><p>{body}</p></body></html>
"""


def _page(title: str, body: str) -> bytes:
    return _PAGE.format(title=html.escape(title), body=html.escape(body)).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: _LoopbackHttpServer
    timeout = _REQUEST_READ_TIMEOUT_S
    protocol_version = "HTTP/1.0"

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed:
            self.server.mark_request_read(self.request)
        return parsed

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._respond(404, _page("Not found", "This address belongs to a notebook login."))
            return
        outcome = parse_callback_query(parts.query, self.server.expected_state)
        self.server.owner.deliver(outcome)
        if outcome.ignored_reason:
            self._respond(
                400,
                _page(
                    "Login response ignored",
                    "This sign-in response does not belong to the login waiting on this port "
                    f"({outcome.ignored_reason}), so it was ignored. If another notebook's "
                    "login panel is waiting for it, copy this page's whole address from the "
                    "address bar and paste it there.",
                ),
            )
        elif outcome.error:
            self._respond(
                200,
                _page(
                    "Login failed",
                    f"Astro did not sign you in ({outcome.error}). "
                    "Return to your notebook for details.",
                ),
            )
        else:
            self._respond(
                200,
                _page(
                    "Sign-in received",
                    "Return to your notebook: it is finishing the login and shows the result. "
                    "You can close this tab.",
                ),
            )

    def _respond(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        # The default logs the request line to stderr, and that contains the code.
        return


def is_loopback_address(host: str) -> bool:
    """Tell whether ``host`` is an IP address literal of the loopback interface.

    Covers 127.0.0.0/8, ``::1`` and IPv4-mapped ``::ffff:127.x.x.x``. A host
    name, ``localhost`` included, is not resolved and returns false.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class _LoopbackHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR lets a new login bind the port while connections of the
    # previous one sit in TIME-WAIT (about 60 s on Linux). It does not let two
    # servers listen at once, so a port held by another login still fails.
    allow_reuse_address = True
    # socketserver's default listen backlog is 5. When a burst of connections
    # fills it, Linux drops the browser's SYN and the browser retries only
    # after about a second.
    request_queue_size = socket.SOMAXCONN

    def __init__(
        self, port: int, owner: CallbackServer, expected_state: str, host: str = _BIND_HOST
    ) -> None:
        # The callback carries the authorization code, so no other machine may reach it.
        if not is_loopback_address(host):
            raise CallbackError(
                f"Cannot listen on {host} for the login callback: only a loopback address "
                "such as 127.0.0.1 is allowed.",
                step="Callback",
            )
        self.owner = owner
        self.expected_state = expected_state
        self.rejected_peers = 0
        # Each open connection and the thread serving it, and the connections
        # whose request is not read yet, which close() may cut off.
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._reading: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def verify_request(self, request: object, client_address: object) -> bool:
        """Accept a connection only from a loopback peer.

        A server bound to 127.0.0.1 receives nothing else, so this is defence
        in depth against a bind or firewall mistake.
        """
        peer = client_address[0] if isinstance(client_address, tuple) else ""
        if is_loopback_address(str(peer)):
            return True
        self.rejected_peers += 1
        if self.rejected_peers == 1:
            log.warning("closed a login callback connection from non-loopback peer %s", peer)
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        # ThreadingMixIn does not keep daemon threads, and close() needs them.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"astro-login-callback-{self.server_address[1]}-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
            self._reading.add(request)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)
            self._reading.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        # The default prints a traceback to stderr, which a kernel shows in the
        # notebook. A client that hangs up early is no fault of ours; anything
        # else is a bug, logged without the request, which carries the code.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.debug("login callback connection failed: %s", type(error).__name__)
        else:
            log.error("login callback handler failed: %s", type(error).__name__)

    def mark_request_read(self, request: Any) -> None:
        """Mark a connection's request as read, so close() lets its response finish."""
        with self._connections_lock:
            self._reading.discard(request)

    def close_connections(self, timeout_s: float) -> None:
        """Cut off connections still sending their request; wait up to ``timeout_s`` for all.

        A connection whose request was read is left to finish its response:
        the page that tells the user to return to the notebook is sent after
        the code reaches the login, which may close the server at once.
        """
        with self._connections_lock:
            threads = list(self._connections.values())
            unread = list(self._reading)
        for connection in unread:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # Already closed by the client or by its own thread.
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))


def _someone_listens(port: int) -> bool:
    """Tell whether a server accepts connections on ``port`` of 127.0.0.1 or ::1.

    Binding alone does not tell. Browsers try ``localhost`` as ::1 first, so a
    server on [::1] would receive the redirect meant for us. And with
    SO_REUSEADDR, some systems (macOS, BSD) let us bind 127.0.0.1 beside a
    server on the wildcard address.
    """
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(_LISTEN_PROBE_TIMEOUT_S)
                probe.connect((address, port))
        except OSError:
            continue
        return True
    return False


class CallbackServer:
    """Listens on the loopback interface for one OAuth redirect.

    Parameters
    ----------
    expected_state
        The ``state`` sent in the authorize URL.
    port
        The port to listen on; 0 picks a free one. The real Astro OAuth server
        only accepts ``http://localhost:12345/callback``.
    """

    def __init__(self, expected_state: str, port: int = 12345) -> None:
        self._expected_state = expected_state
        self._requested_port = port
        self._bound_port: int | None = None
        self._outcomes: queue.Queue[CallbackOutcome | None] = queue.Queue()
        self._httpd: _LoopbackHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.ignored_count = 0

    def __repr__(self) -> str:
        state = "listening" if self._httpd else "not listening"
        return f"CallbackServer(port={self.port}, {state})"

    def __enter__(self) -> CallbackServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port listened on, or the requested one before :meth:`start`."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def redirect_uri(self) -> str:
        """The redirect URI to register in the authorize request."""
        return f"http://localhost:{self.port}{CALLBACK_PATH}"

    @property
    def listening(self) -> bool:
        """Whether the browser's redirect can reach this server on its port."""
        return self._httpd is not None

    def start(self, *, allow_busy_port: bool = False) -> CallbackServer:
        """Bind the port and serve in a background thread.

        With ``allow_busy_port``, a port where another process listens is not an
        error: the server then does not listen, and only a response passed to
        :meth:`deliver` (a redirect address the user pasted) can end
        :meth:`wait`. Check :attr:`listening` to tell the two apart.

        Raises
        ------
        CallbackPortBusyError
            Another process, such as ``astro login`` in a terminal or another
            notebook's login, is listening on the port, and ``allow_busy_port``
            is false.
        """
        busy = CallbackPortBusyError(
            f"Port {self._requested_port} on localhost is already in use, so the "
            "browser cannot return to this login; finish or cancel the other login "
            "(another notebook or `astro login` in a terminal), then try again.",
            step="Callback",
        )
        if self._requested_port and _someone_listens(self._requested_port):
            if allow_busy_port:
                log.info("callback port %s is busy; waiting for a pasted address", self.port)
                return self
            raise busy
        try:
            httpd = _LoopbackHttpServer(self._requested_port, self, self._expected_state)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                if allow_busy_port:
                    log.info("callback port %s is busy; waiting for a pasted address", self.port)
                    return self
                raise busy from None
            raise CallbackError(
                f"Cannot listen on {_BIND_HOST}:{self._requested_port} for the login callback: "
                f"{error.strerror or error}.",
                step="Callback",
            ) from None
        self._httpd = httpd
        self._bound_port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name=f"astro-login-callback-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.debug("callback server listening on %s:%s", _BIND_HOST, self.port)
        return self

    def judge(self, query: str) -> CallbackOutcome:
        """Judge a callback query string against this login's state, without acting on it."""
        return parse_callback_query(query, self._expected_state)

    def deliver(self, outcome: CallbackOutcome) -> None:
        """Pass a judged response to :meth:`wait`, as if the browser had sent it.

        An ignored response is only counted, so a flood of them costs no memory.
        """
        if outcome.ignored_reason:
            with self._lock:
                self.ignored_count += 1
                first = self.ignored_count == 1
            # Only the first one is a warning: a flood must not flood the log too.
            level = logging.WARNING if first else logging.DEBUG
            log.log(level, "ignored a login callback: %s", outcome.ignored_reason)
            return
        self._outcomes.put(outcome)

    def deliver_query(self, query: str) -> CallbackOutcome:
        """Judge a callback query obtained another way and pass it to :meth:`wait`."""
        outcome = self.judge(query)
        self.deliver(outcome)
        return outcome

    def cancel(self) -> None:
        """Make :meth:`wait` raise :class:`LoginCancelledError`; safe from any thread."""
        self._outcomes.put(None)

    def wait(self, timeout_s: float) -> str:
        """Wait for the browser's response and return the authorization code.

        Raises
        ------
        CallbackError
            The response carried an OAuth error, or no code.
        LoginTimeoutError
            No accepted response arrived within ``timeout_s`` seconds.
        LoginCancelledError
            :meth:`cancel` was called.
        """
        try:
            outcome = self._outcomes.get(timeout=max(timeout_s, 0))
        except queue.Empty:
            raise LoginTimeoutError(self._timeout_message(timeout_s), step="Callback") from None
        if outcome is None:
            raise LoginCancelledError("Login cancelled.", step="Callback")
        if outcome.error:
            description = (outcome.error_description or "").rstrip(". ")
            detail = f": {description}" if description else ""
            raise CallbackError(
                f"Login failed: the browser came back with {outcome.error}{detail}. "
                "Run the login again to retry.",
                step="Callback",
                oauth_error=outcome.error,
            )
        assert outcome.code is not None  # noqa: S101 - parse_callback_query guarantees it
        return outcome.code

    def _timeout_message(self, timeout_s: float) -> str:
        message = (
            f"Login timed out: the browser did not come back within {timeout_s:g} s; "
            "run the login again and finish it in the browser sooner"
        )
        if self.ignored_count:
            message += (
                f" ({self.ignored_count} response(s) with a missing, repeated or wrong state, "
                "or an unreadable query, were ignored)"
            )
        return message + "."

    def close(self) -> None:
        """Stop serving and free the port; safe to call more than once."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        # An idle client would otherwise keep its connection and thread for the
        # read timeout after the login ended.
        httpd.close_connections(_CONNECTION_JOIN_TIMEOUT_S)
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.debug("callback server on %s:%s closed", _BIND_HOST, self.port)
