"""The loopback callback server under abuse, over real sockets on 127.0.0.1.

Covers where it listens and whom it serves, a flood of bogus and stalled
connections around the browser's real redirect, forged responses during a real
login, and how fast the server is gone after every way a login ends. Every
connection here goes to a server that the test started on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from conftest import nothing_listens_on

from astro_jupyter.callback_server import (
    CallbackServer,
    _LoopbackHttpServer,
    is_loopback_address,
)
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.emulator import follow_login_link
from astro_jupyter.errors import (
    CallbackError,
    InvalidInputError,
    LoginCancelledError,
    LoginTimeoutError,
)
from astro_jupyter.login_flow import LoginFlow, LoginMode, LoginOptions, LoginStep

STATE = "expected-state-value"
EMAIL = "ada@example.com"
# The callback timeout of the logins in this file, as the tests' LoginOptions set it.
LOGIN_TIMEOUT_S = 10.0
# How soon after a login ends its callback port and threads must be gone.
GONE_WITHIN_S = 1.0
# The handler's per-connection read timeout in callback_server, plus slack for a busy machine.
READ_TIMEOUT_BOUND_S = 5.0 + 5.0


def _get(port: int, path_and_query: str, timeout_s: float = 10) -> int:
    """Send one GET to 127.0.0.1:port and return the status code."""
    url = f"http://127.0.0.1:{port}{path_and_query}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def _send_raw(port: int, data: bytes, timeout_s: float = 10) -> bytes:
    """Send raw bytes on a new connection and return what the server sent back before closing.

    A server that closes without reading everything makes the kernel reset the
    connection, which ends the reply too.
    """
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as connection:
        try:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
    return b"".join(chunks)


def _open_stalled(port: int, first_bytes: bytes) -> socket.socket:
    """Open a connection, send ``first_bytes`` (possibly none) and leave it open."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first_bytes:
        connection.sendall(first_bytes)
    return connection


def _callback_threads(port: int) -> list[str]:
    prefix = f"astro-login-callback-{port}"
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(prefix)]


def _seconds_until_gone(port: int, since: float) -> float | None:
    """Poll until the port is free and its threads ended, and return the seconds since ``since``.

    Returns None when that did not happen within ``GONE_WITHIN_S`` of now.
    """
    deadline = time.monotonic() + GONE_WITHIN_S
    while time.monotonic() < deadline:
        if not _callback_threads(port) and nothing_listens_on(port):
            return time.monotonic() - since
        time.sleep(0.01)
    return None


# Where the server listens and whom it serves


def test_listening_socket_is_loopback():
    with CallbackServer(STATE, port=0) as server:
        assert server._httpd is not None
        host, port = server._httpd.socket.getsockname()[:2]
        assert host == "127.0.0.1"
        assert port == server.port
        assert server._httpd.socket.family == socket.AF_INET


# Nothing is bound: the check comes before the socket is created.
@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.0.2.7", "10.0.0.1", "localhost", ""]  # noqa: S104
)
def test_bind_refuses_non_loopback(host):
    owner = CallbackServer(STATE, port=0)
    with pytest.raises(CallbackError) as caught:
        _LoopbackHttpServer(0, owner, STATE, host=host)
    assert "only a loopback address" in str(caught.value)
    assert not owner.listening


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_bind_accepts_loopback(host):
    owner = CallbackServer(STATE, port=0)
    httpd = _LoopbackHttpServer(0, owner, STATE, host=host)
    try:
        assert is_loopback_address(httpd.socket.getsockname()[0])
    finally:
        httpd.server_close()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),  # noqa: S104 - an input of the check, never bound
        ("::", False),
        ("192.0.2.7", False),
        ("::ffff:192.0.2.7", False),
        ("fe80::1", False),
        ("localhost", False),
        ("", False),
        ("127.0.0.1 ", False),
    ],
)
def test_is_loopback_address(address, expected):
    assert is_loopback_address(address) is expected


@pytest.mark.parametrize(
    "peer",
    [
        ("192.0.2.7", 40000),
        ("10.1.2.3", 40000),
        ("::ffff:192.0.2.7", 40000, 0, 0),
        ("fe80::1", 40000, 0, 2),
    ],
)
def test_non_loopback_peer_rejected(peer):
    # No packet is sent: the server's admission check is called as socketserver
    # calls it for each accepted connection, with a peer address it cannot get here.
    with CallbackServer(STATE, port=0) as server:
        assert server._httpd is not None
        assert server._httpd.verify_request(None, peer) is False
        assert server._httpd.rejected_peers == 1
        assert server.ignored_count == 0
        with pytest.raises(LoginTimeoutError):
            server.wait(0.05)


@pytest.mark.parametrize("peer", [("127.0.0.1", 40000), ("::1", 40000, 0, 0)])
def test_loopback_peer_admitted(peer):
    with CallbackServer(STATE, port=0) as server:
        assert server._httpd is not None
        assert server._httpd.verify_request(None, peer) is True
        assert server._httpd.rejected_peers == 0


# A flood of bogus and stalled connections


def _bogus_requests(count: int) -> list[Callable[[int], object]]:
    """Return ``count`` senders of bogus requests: wrong paths, wrong state, garbage bytes."""
    senders: list[Callable[[int], object]] = []
    for index in range(count):
        kind = index % 5
        if kind == 0:
            senders.append(lambda port, i=index: _get(port, f"/not-the-callback/{i}?code=x"))
        elif kind == 1:
            senders.append(lambda port, i=index: _get(port, f"/callback?code=f{i}&state=wrong"))
        elif kind == 2:
            senders.append(
                lambda port, i=index: _get(port, f"/callback?code=f{i}&state={STATE}&state=x")
            )
        elif kind == 3:
            garbage = os.urandom(64 + index % 200)
            senders.append(lambda port, data=garbage: _send_raw(port, data + b"\r\n\r\n"))
        else:
            senders.append(lambda port: _send_raw(port, b"POST /callback HTTP/1.0\r\n\r\n"))
    return senders


_STALLED_OPENINGS = (
    b"",  # connects and sends nothing
    b"GET /callback?code=half",  # stops inside the request line
    b"GET /callback?code=x&state=wrong HTTP/1.1\r\nHost: localhost\r\n",  # no blank line
)


def test_flood_does_not_delay_real_callback(hardening):
    bogus_count = 300
    stalled_count = 60
    with CallbackServer(STATE, port=0) as server:
        port = server.port
        stalled = [
            _open_stalled(port, _STALLED_OPENINGS[index % len(_STALLED_OPENINGS)])
            for index in range(stalled_count)
        ]
        try:
            with ThreadPoolExecutor(max_workers=16) as pool:
                futures = [pool.submit(send, port) for send in _bogus_requests(bogus_count)]
                # The real redirect arrives while the flood is running and every
                # stalled connection is still open.
                while sum(future.done() for future in futures) < bogus_count // 3:
                    time.sleep(0.005)
                real_statuses: list[int] = []
                real = threading.Thread(
                    target=lambda: real_statuses.append(
                        _get(port, f"/callback?code=real-code&state={STATE}")
                    )
                )
                started = time.monotonic()
                real.start()
                code = server.wait(LOGIN_TIMEOUT_S)
                elapsed_s = time.monotonic() - started
                real.join(LOGIN_TIMEOUT_S)
                for future in futures:
                    future.result(LOGIN_TIMEOUT_S)
            # Read before the stalled clients hang up, which ends their requests.
            ignored_during_flood = server.ignored_count
        finally:
            for connection in stalled:
                connection.close()
        wrong_state_sent = sum(1 for index in range(bogus_count) if index % 5 in (1, 2))
        assert code == "real-code"
        assert real_statuses == [200]
        assert ignored_during_flood == wrong_state_sent

    hardening.add("Callback server", "bogus requests sent", bogus_count)
    hardening.add("Callback server", "stalled connections held open", stalled_count)
    hardening.add("Callback server", "real callbacks accepted", 1)
    hardening.add("Callback server", "real callback under flood (ms)", round(elapsed_s * 1000))


def test_idle_connection_does_not_block_callback(hardening):
    with CallbackServer(STATE, port=0) as server:
        idle = _open_stalled(server.port, b"")
        try:
            started = time.monotonic()
            sender = threading.Thread(
                target=_get, args=(server.port, f"/callback?code=c&state={STATE}")
            )
            sender.start()
            code = server.wait(LOGIN_TIMEOUT_S)
            elapsed_s = time.monotonic() - started
            sender.join(LOGIN_TIMEOUT_S)
        finally:
            idle.close()
    assert code == "c"
    hardening.add("Callback server", "real callbacks accepted", 1)
    hardening.add(
        "Callback server", "real callback beside an idle connection (ms)", round(elapsed_s * 1000)
    )


def test_idle_connection_dropped_after_read_timeout():
    with CallbackServer(STATE, port=0) as server:
        idle = _open_stalled(server.port, b"GET /callback?code=x")
        with idle:
            idle.settimeout(READ_TIMEOUT_BOUND_S)
            # The server gives up on the request and closes the connection, so recv returns b"".
            assert idle.recv(1024) == b""
        serving_thread = f"astro-login-callback-{server.port}"
        deadline = time.monotonic() + GONE_WITHIN_S
        while _callback_threads(server.port) != [serving_thread] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _callback_threads(server.port) == [serving_thread]


def test_garbage_request_answered_400():
    # A TLS ClientHello's first bytes, as from a client that tries https://.
    with CallbackServer(STATE, port=0) as server:
        reply = _send_raw(server.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
        # http.server treats a request line without a version as HTTP/0.9, so
        # the 400 page comes without a status line.
        assert b"Error code: 400" in reply
        with pytest.raises(LoginTimeoutError):
            server.wait(0.05)


# Forged responses during a real login


@pytest.fixture
def store(astro_config_path):
    return ConfigStore(astro_config_path)


def _options(emulator, timeout_s: float = LOGIN_TIMEOUT_S) -> LoginOptions:
    return LoginOptions(
        domain="localhost",
        api_base_url=emulator.base_url,
        callback_port=0,
        callback_timeout_s=timeout_s,
    )


class _WaitingLogin:
    """A started link login and the WAITING_FOR_BROWSER event it published."""

    def __init__(self, flow: LoginFlow) -> None:
        self.flow = flow
        self._waiting = threading.Event()
        self.authorize_url = ""
        self.port = 0
        self.deadline_monotonic = 0.0
        flow.subscribe(self._on_event)
        flow.start()
        assert self._waiting.wait(LOGIN_TIMEOUT_S), "the login never waited for the browser"

    def _on_event(self, event) -> None:
        if event.step is LoginStep.WAITING_FOR_BROWSER:
            self.authorize_url = event.authorize_url
            self.port = urlsplit(event.redirect_uri).port
            self.deadline_monotonic = event.deadline_monotonic
            self._waiting.set()

    def callback_path(self, landed_url: str) -> str:
        """Return the path and query of the address where the browser stopped."""
        parts = urlsplit(landed_url)
        return f"{parts.path}?{parts.query}"


def test_forged_callbacks_never_exchange_code(emulator, store, hardening):
    login = _WaitingLogin(LoginFlow(_options(emulator), store, mode=LoginMode.LINK, email=EMAIL))
    landed = follow_login_link(login.authorize_url, reach_callback=False)
    code, state = landed.query["code"], landed.query["state"]
    # Each carries the genuine code, so an exchange would succeed if one were attempted.
    forged = [
        f"/callback?code={code}&state=wrong",
        f"/callback?code={code}&state={state}x",
        f"/callback?code={code}",
        f"/callback?code={code}&state=",
        f"/callback?code={code}&state={state}&state={state}",
        f"/callback?code={code}&state=wrong&state={state}",
        f"/callback?code={code}&state={state}&junk=%FF",
        f"/callback?code={code}&state={state}" + "&x=1" * 60,
        "/callback?error=access_denied&state=wrong",
    ]
    for path in forged:
        assert _get(login.port, path) == 400, path
    pasted = [f"http://localhost:{login.port}{path}" for path in forged]
    for address in pasted:
        with pytest.raises(InvalidInputError) as caught:
            login.flow.deliver_redirect(address)
        assert code not in str(caught.value)

    assert emulator.count("token") == 0
    assert login.flow.step is LoginStep.WAITING_FOR_BROWSER

    assert _get(login.port, login.callback_path(landed.url)) == 200
    result = login.flow.wait(LOGIN_TIMEOUT_S)
    assert result.email == EMAIL
    assert emulator.count("token") == 1
    hardening.add("Callback server", "forged callbacks sent during a login", len(forged))
    hardening.add("Callback server", "forged addresses pasted during a login", len(pasted))
    hardening.add("Callback server", "real callbacks accepted", 1)


# The server is gone soon after every way a login ends


def _record_gone(hardening, case: str, seconds: float | None) -> None:
    assert seconds is not None, f"callback server still there {GONE_WITHIN_S} s after {case}"
    hardening.add("Callback server", f"gone after {case} (ms)", round(seconds * 1000))


def test_gone_after_success(emulator, store, hardening):
    login = _WaitingLogin(LoginFlow(_options(emulator), store, mode=LoginMode.LINK, email=EMAIL))
    landed = follow_login_link(login.authorize_url, reach_callback=False)
    # A client stalled at the moment of success must not keep a thread behind.
    stalled = _open_stalled(login.port, b"GET /favicon.ico")
    with stalled:
        started = time.monotonic()
        assert _get(login.port, login.callback_path(landed.url)) == 200
        gone_s = _seconds_until_gone(login.port, since=started)
    login.flow.wait(LOGIN_TIMEOUT_S)
    _record_gone(hardening, "success", gone_s)
    hardening.add("Callback server", "real callbacks accepted", 1)


def test_gone_after_failure(emulator, store, hardening):
    login = _WaitingLogin(LoginFlow(_options(emulator), store, mode=LoginMode.LINK, email=EMAIL))
    landed = follow_login_link(login.authorize_url, approve=False, reach_callback=False)
    assert landed.query["error"] == "access_denied"
    started = time.monotonic()
    assert _get(login.port, login.callback_path(landed.url)) == 200
    gone_s = _seconds_until_gone(login.port, since=started)
    with pytest.raises(CallbackError):
        login.flow.wait(LOGIN_TIMEOUT_S)
    _record_gone(hardening, "failure", gone_s)
    assert emulator.count("token") == 0


def test_gone_after_cancel(emulator, store, hardening):
    login = _WaitingLogin(LoginFlow(_options(emulator), store, mode=LoginMode.LINK, email=EMAIL))
    stalled = _open_stalled(login.port, b"")
    with stalled:
        started = time.monotonic()
        login.flow.cancel()
        gone_s = _seconds_until_gone(login.port, since=started)
    with pytest.raises(LoginCancelledError):
        login.flow.wait(LOGIN_TIMEOUT_S)
    _record_gone(hardening, "cancel", gone_s)


def test_gone_after_timeout(emulator, store, hardening):
    flow = LoginFlow(_options(emulator, timeout_s=0.5), store, mode=LoginMode.LINK, email=EMAIL)
    login = _WaitingLogin(flow)
    stalled = _open_stalled(login.port, b"GET /callback?state=")
    with stalled:
        with pytest.raises(LoginTimeoutError):
            login.flow.wait(LOGIN_TIMEOUT_S)
        gone_s = _seconds_until_gone(login.port, since=login.deadline_monotonic)
    _record_gone(hardening, "timeout", gone_s)


def test_success_page_survives_immediate_close():
    # The login closes the server as soon as the code arrives, before the handler
    # has written the page. Closing must not cut that response off.
    rounds = 20
    for _ in range(rounds):
        server = CallbackServer(STATE, port=0).start()
        closer = threading.Thread(target=lambda server=server: (server.wait(5), server.close()))
        closer.start()
        url = f"http://127.0.0.1:{server.port}/callback?code=c&state={STATE}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            page = response.read().decode()
        closer.join(10)
        server.close()
        assert "Sign-in received" in page
        assert page.rstrip().endswith("</html>")
