"""The one-shot loopback server that receives the browser's OAuth redirect.

It binds 127.0.0.1 only (RFC 8252 section 7.3), serves a single login, and
acts only on ``GET /callback`` whose ``state`` matches. A favicon request,
another path, or a response with a wrong or missing ``state`` gets a small page
and is otherwise ignored, so a stray or forged request can neither finish nor
abort the login. The waiting side reads outcomes from a queue that a cancel
or a pasted redirect URL can also feed.

It handles no tokens: it returns the authorization code and stops.
"""

from __future__ import annotations

import errno
import html
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .errors import (
    CallbackError,
    CallbackPortBusyError,
    LoginCancelledError,
    LoginTimeoutError,
)

__all__ = ["CallbackOutcome", "CallbackServer", "parse_callback_query"]

log = logging.getLogger(__name__)

CALLBACK_PATH = "/callback"
_BIND_HOST = "127.0.0.1"
# A browser that opens the connection but never sends its request must not
# hold a handler thread for long.
_REQUEST_READ_TIMEOUT_S = 5.0
# A connect to a loopback port succeeds or fails at once; this only bounds a stall.
_LISTEN_PROBE_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class CallbackOutcome:
    """Verdict on one request to the callback.

    Exactly one of ``code`` and ``error`` is set when ``accepted`` is true;
    ``ignored_reason`` is set when the request must not affect the login.
    """

    accepted: bool
    code: str | None = field(default=None, repr=False)
    error: str | None = None
    error_description: str | None = None
    ignored_reason: str | None = None
    missing_code: bool = False

    def __repr__(self) -> str:
        code = "<hidden>" if self.code else None
        return (
            f"CallbackOutcome(accepted={self.accepted}, code={code}, error={self.error!r}, "
            f"ignored_reason={self.ignored_reason!r})"
        )


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    return values[0] if len(values) == 1 else ""


def parse_callback_query(query: str, expected_state: str) -> CallbackOutcome:
    """Judge a callback query string against the state the login sent.

    A repeated parameter is treated as malformed, so it can never smuggle a
    second code or state past the check.
    """
    params = parse_qs(query, keep_blank_values=True, max_num_fields=50)
    state = _single(params, "state")
    if not state:
        return CallbackOutcome(accepted=False, ignored_reason="missing state")
    if state != expected_state:
        return CallbackOutcome(accepted=False, ignored_reason="wrong state")

    error = _single(params, "error")
    if error is not None:
        description = _single(params, "error_description") or ""
        return CallbackOutcome(
            accepted=True,
            error=error or "invalid_request",
            error_description=" ".join(description.split())[:300] or None,
        )
    code = _single(params, "code")
    if not code:
        return CallbackOutcome(
            accepted=True,
            error="invalid_request",
            error_description="the response has no code",
            missing_code=True,
        )
    return CallbackOutcome(accepted=True, code=code)


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


class _LoopbackHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR lets a new login bind the port while connections of the
    # previous one sit in TIME-WAIT (about 60 s on Linux). It does not let two
    # servers listen at once, so a port held by another login still fails.
    allow_reuse_address = True

    def __init__(self, port: int, owner: CallbackServer, expected_state: str) -> None:
        self.owner = owner
        self.expected_state = expected_state
        super().__init__((_BIND_HOST, port), _Handler)


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
            kwargs={"poll_interval": 0.05},
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
        """Pass a judged response to :meth:`wait`, as if the browser had sent it."""
        if outcome.ignored_reason:
            with self._lock:
                self.ignored_count += 1
            log.warning("ignored a login callback: %s", outcome.ignored_reason)
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
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                outcome = self._outcomes.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise LoginTimeoutError(self._timeout_message(timeout_s), step="Callback") from None
            if outcome is None:
                raise LoginCancelledError("Login cancelled.", step="Callback")
            if outcome.ignored_reason:
                continue
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
                f" ({self.ignored_count} response(s) with a missing or wrong state were ignored)"
            )
        return message + "."

    def close(self) -> None:
        """Stop serving and free the port; safe to call more than once."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.debug("callback server on %s:%s closed", _BIND_HOST, self.port)
