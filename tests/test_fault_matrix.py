"""The fault matrix: every request of a login and of a token refresh, against every fault.

Each cell injects one fault into one endpoint and runs what a notebook user
runs: ``%astro_login`` in the in-process shell for the steps of a login, and
``%astro_workspace`` (which refreshes a stale token first) for the refresh.
Each cell then checks four things. The output is one ``UsageError`` line that
names the failed step, with no traceback. ``config.yaml`` kept its bytes. No
thread is left over. No listening socket is left open, the callback port
included.

HTTP faults come from the emulator's ``fail()``. Faults below HTTP come from
``_Gate``, a TCP relay on loopback in front of the emulator: it refuses
connections, or serves a TLS base with plain HTTP, from a chosen request on.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import (
    ADA_EMAIL,
    Browser,
    log_in_by_link,
    nothing_listens_on,
    start_logged_out_kernel,
)

from astro_jupyter.config_context import ContextRecord
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.credentials import get_token
from astro_jupyter.emulator import follow_login_link
from astro_jupyter.errors import ApiError
from astro_jupyter.http_client import HttpClient, retry_after_s
from astro_jupyter.oauth_client import fetch_auth_config
from astro_jupyter.settings import AstroLogin

# Short enough that the whole matrix runs in seconds, long enough for an
# unloaded emulator on loopback to respond to every request that is not stalled.
HTTP_TIMEOUT_S = 0.5
# An injected stall outlasts the client's timeout many times over; stopping the
# emulator at the end of the cell ends it.
STALL_S = 20.0
# HttpClient's default: one request and two retries.
ATTEMPTS = 3
# Seconds the checks wait for threads to end and for the browser to finish.
SETTLE_S = 10.0

# The endpoints of the matrix, in login order, with the step that their errors name.
STEPS = {
    "auth-config": "Auth config",
    "organization-lookup": "Organization lookup",
    "token": "Token exchange",
    "userinfo": "User info",
    "self": "Current user",
    "organizations": "Organizations",
    "workspaces": "Workspaces",
    "refresh": "Token refresh",
}
OAUTH_ENDPOINTS = frozenset({"token", "userinfo", "refresh"})
# Requests that may reach the server and are never repeated.
NOT_RETRIED = frozenset({"token", "refresh"})

# The last request to the same server before each endpoint's request. A gate
# that lets it through and then closes shuts exactly that endpoint out. None
# means the gate is closed from the start: the endpoint's request is the first
# one that the login or refresh sends to that server. (The browser reaches the
# sign-in page directly, like a browser that trusts what the kernel does not.)
GATE_OPENS_UNTIL = {
    "auth-config": None,
    "organization-lookup": "/private/v1alpha1/cli/auth-config",
    "token": None,
    "userinfo": "/auth/oauth/token",
    "self": "/organization-lookup",
    "organizations": "/v1/users/self",
    "workspaces": "/v1/organizations",
    "refresh": None,
}

FAULTS = (
    "refused",
    "stalled",
    "500-message",
    "500-bare",
    "429",
    "not-json",
    "missing-fields",
    "tls",
)

# Every fault that ends in the same kind of message names the same words.
EXPECTED_WORDS = {
    "refused": "connection refused",
    "stalled": f"did not respond within {HTTP_TIMEOUT_S:g} s",
    "500-message": "returned HTTP 500: database unavailable (request id req-fault-1)",
    "500-bare": "returned HTTP 500.",
    "429": "returned HTTP 429 (too many requests)",
    "not-json": "with a body that is not JSON",
    "tls": "TLS handshake failed",
}
MISSING_FIELD_WORDS = {
    "auth-config": "has no 'domainUrl' field",
    "token": "has no 'access_token' field",
    "userinfo": "returned no email address",
    "self": "has no user 'id'",
    "organizations": "has no 'organizations' list",
    "workspaces": "has no 'workspaces' list",
    "refresh": "has no 'access_token' field",
}


# The gate: a loopback relay that shuts one endpoint out below HTTP


class _Gate:
    """A TCP relay on 127.0.0.1 to the emulator that closes after one request path.

    Until the request for ``open_until`` has passed, every connection is
    relayed to the emulator, after TLS termination when ``tls`` is given.
    From then on, a plain gate refuses connections (nothing listens on its
    port any more), and a TLS gate relays the raw bytes, so the client's TLS
    handshake meets the emulator's plain HTTP.
    """

    def __init__(
        self, upstream_port: int, *, tls: ssl.SSLContext | None, open_until: str | None
    ) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._tls = tls
        self._open_until = open_until
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.failed_connections = 0

        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self._shut = threading.Event()
        if open_until is None:
            self._shut_out()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="gate-accept")
        self._accept_thread.start()

    def _shut_out(self) -> None:
        with self._lock:
            if self._shut.is_set():
                return
            self._shut.set()
            if self._tls is not None:
                return
            # With no listener on the port, the kernel refuses connections.
            # shutdown() stops the listening at once: close() alone waits for
            # the accept loop's poll to return, and a connection that arrives
            # meanwhile would be reset instead of refused.
            # NOTE: another program could bind the freed port before the
            # client's next connection; with ephemeral ports that is unlikely.
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(SETTLE_S)
            thread = threading.Thread(target=self._relay, args=(client,), name="gate-relay")
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket) -> None:
        if self._shut.is_set():
            # Only a TLS gate accepts once shut: relay the handshake to plain HTTP.
            with self._lock:
                self.failed_connections += 1
            with client, socket.create_connection(self._upstream, timeout=SETTLE_S) as upstream:
                self._pipe(client, upstream, b"")
            return
        if self._tls is not None:
            try:
                client = self._tls.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                client.close()
                return
        with client, socket.create_connection(self._upstream, timeout=SETTLE_S) as upstream:
            try:
                head = _read_request_head(client)
            except OSError:
                # A client that connected and sent nothing before the timeout
                # has no request to relay.
                return
            if not head:
                return
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            path = request_line[1].split(b"?", 1)[0].decode("ascii", "replace")
            if path == self._open_until:
                self._shut_out()
            self._pipe(client, upstream, head)

    @staticmethod
    def _pipe(client: socket.socket, upstream: socket.socket, head: bytes) -> None:
        upstream.sendall(head)
        forward = threading.Thread(target=_copy, args=(client, upstream), name="gate-copy")
        forward.start()
        _copy(upstream, client)
        # The emulator speaks HTTP/1.0 and closed after its response, so the
        # exchange is over; shutting the client down wakes the other copy.
        for end in (client, upstream):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        forward.join(SETTLE_S)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._listener.close()
        self._accept_thread.join(SETTLE_S)
        for thread in self._threads:
            thread.join(SETTLE_S)


def _read_request_head(connection: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = connection.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Create a self-signed certificate for 127.0.0.1 with the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [  # noqa: S607 - openssl from PATH, fixed arguments
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


# What a cell leaves behind


def _listening_ports() -> set[int]:
    """Return the TCP ports that this process listens on, from Linux's /proc.

    Each cell first checks that the emulator's port is in the set, so an
    empty result on another system fails instead of passing.
    """
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                listening = fields[3] == "0A"
                if listening and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    """Return the bytes of every file in the Astro folder but its lock files.

    An empty lock file stays in place after use by design, as the Astro CLI's
    own does, so it is no partial write.
    """
    if not folder.exists():
        return {}
    files = {}
    for path in folder.rglob("*"):
        if path.is_file() and not (path.name.endswith(".lock") and path.stat().st_size == 0):
            files[str(path.relative_to(folder))] = path.read_bytes()
    return files


@dataclass
class _Before:
    threads: set[threading.Thread]
    listening: set[int]
    files: dict[str, bytes]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _leftover_threads(before: set[threading.Thread]) -> list[str]:
    deadline = time.monotonic() + SETTLE_S
    while True:
        extra = [thread.name for thread in threading.enumerate() if thread not in before]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.02)


# Playing the browser for %astro_login in this process


class _Browser:
    """Follow the sign-in link of the shell's login once it appears, on a thread of its own.

    ``reroute`` maps the advertised OAuth server URL to the emulator's own,
    for a browser that reaches the sign-in page where the kernel cannot.
    """

    def __init__(self, settings: AstroLogin, reroute: tuple[str, str] | None) -> None:
        self._settings = settings
        self._reroute = reroute
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-browser")
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + SETTLE_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            flow = self._settings.logins.latest
            url = flow.authorize_url if flow is not None else None
            if url:
                if self._reroute:
                    url = url.replace(*self._reroute, 1)
                follow_login_link(url, timeout_s=SETTLE_S)
                return
            if flow is not None and flow.done:
                return
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(SETTLE_S)


# The cell


@dataclass
class _Cell:
    endpoint: str
    fault: str
    output: str
    error_line: str | None
    injected: int


def _inject(emulator: Any, endpoint: str, fault: str) -> None:
    if fault == "stalled":
        emulator.fail(endpoint, status=None, delay_s=STALL_S)
    elif fault == "500-message":
        body = {"message": "database unavailable", "requestId": "req-fault-1"}
        emulator.fail(endpoint, status=500, body=body)
    elif fault == "500-bare":
        emulator.fail(endpoint, status=500, body=b"")
    elif fault == "429":
        body = {"message": "slow down"}
        emulator.fail(endpoint, status=429, body=body, headers={"Retry-After": "1"})
    elif fault == "not-json":
        emulator.fail(endpoint, status=200, body="<html><p>Maintenance</p></html>")
    elif fault == "missing-fields":
        emulator.fail(endpoint, status=200, body={})


def _injected_count(emulator: Any, endpoint: str, fault: str, caplog: Any, gate: Any) -> int:
    """Count the failing responses or connections that the cell's client met."""
    if fault == "refused":
        # Refused connections reach no server, so the client's own log counts
        # them: one line per retry, plus the final failure.
        retries = [
            record
            for record in caplog.records
            if record.name == "astro_jupyter.http_client"
            and "connection refused" in record.getMessage()
        ]
        return len(retries) + 1
    if fault == "tls":
        return gate.failed_connections
    if fault == "stalled":
        return emulator.count(endpoint)
    status = {"500-message": 500, "500-bare": 500, "429": 429}.get(fault, 200)
    return sum(
        1 for record in emulator.requests if record.endpoint == endpoint and record.status == status
    )


def _seed_config(path: Path) -> None:
    """Save a token login for localhost, so that the file has bytes to keep."""
    store = ConfigStore(path)
    store.save_login(
        ContextRecord(
            domain="localhost",
            token="seeded-token",
            expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
            user_email=ADA_EMAIL,
        )
    )


def _run_login_cell(
    endpoint: str,
    fault: str,
    *,
    emulator: Any,
    shell: Any,
    capsys: Any,
    caplog: Any,
    open_gate: Callable[..., _Gate],
    settings: AstroLogin,
) -> tuple[_Cell, _Gate | None]:
    gate = None
    reroute = None
    if fault in ("refused", "tls"):
        gate = open_gate(emulator, fault, endpoint)
        if endpoint in OAUTH_ENDPOINTS:
            emulator.set_domain_url(f"{gate.url}auth/")
            reroute = (f"{gate.url}auth/", emulator.oauth_base_url)
        else:
            settings.api_url = gate.url
    else:
        _inject(emulator, endpoint, fault)

    browser = _Browser(settings, reroute)
    try:
        result = shell.run_cell(f"%astro_login localhost -e {ADA_EMAIL} -l", store_history=False)
    finally:
        browser.close()
    captured = capsys.readouterr()
    error = result.error_in_exec
    return _finish_cell(endpoint, fault, captured, error, emulator, gate, caplog), gate


def _finish_cell(
    endpoint: str,
    fault: str,
    captured: Any,
    error: BaseException | None,
    emulator: Any,
    gate: _Gate | None,
    caplog: Any,
) -> _Cell:
    """Close the gate and stop the emulator, then count the faults that were injected.

    Stopping the emulator ends its stalled responses and logs them, so only
    threads of the login itself could be left after this.
    """
    if gate is not None:
        gate.close()
    emulator.stop()
    output = captured.out + captured.err
    error_line = str(error) if error is not None else None
    injected = _injected_count(emulator, endpoint, fault, caplog, gate)
    return _Cell(endpoint, fault, output, error_line, injected)


def _assert_clean_exit(
    cell: _Cell,
    before: _Before,
    callback_port: int | None,
    astro_folder: Path,
    *,
    config_changes: bool = False,
) -> None:
    assert "Traceback" not in cell.output, cell.output
    leftover = _leftover_threads(before.threads)
    assert leftover == [], f"threads left behind: {leftover}"
    assert _listening_ports() <= before.listening
    if callback_port is not None:
        assert nothing_listens_on(callback_port)
    if not config_changes:
        assert _folder_bytes(astro_folder) == before.files


LOGIN_ENDPOINTS = [endpoint for endpoint in STEPS if endpoint != "refresh"]


@pytest.fixture
def tls_context(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """Return the gate's TLS context, and make the test's requests trust its certificate."""
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    return context


@pytest.fixture
def open_gate(tls_context: ssl.SSLContext) -> Iterator[Callable[..., _Gate]]:
    """Return a function that opens the gate for one cell; every gate is closed at teardown."""
    gates: list[_Gate] = []

    def open_for(emulator: Any, fault: str, endpoint: str) -> _Gate:
        gate = _Gate(
            urlsplit(emulator.base_url).port,
            tls=tls_context if fault == "tls" else None,
            open_until=GATE_OPENS_UNTIL[endpoint],
        )
        gates.append(gate)
        return gate

    yield open_for
    for gate in gates:
        gate.close()


@pytest.fixture
def cell_settings(emulator: Any, shell: Any) -> Iterator[tuple[AstroLogin, int]]:
    """Point the shell's settings at the emulator with a short timeout and a known callback port."""
    settings = AstroLogin.instance()
    settings.api_url = emulator.base_url
    settings.http_timeout_s = HTTP_TIMEOUT_S
    settings.callback_timeout_s = SETTLE_S
    port = _free_port()
    settings.callback_port = port
    yield settings, port


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("endpoint", LOGIN_ENDPOINTS)
def test_login_fault_cell(
    endpoint,
    fault,
    emulator,
    ada_account,
    shell,
    cell_settings,
    open_gate,
    capsys,
    caplog,
    astro_config_path,
    hardening,
):
    settings, callback_port = cell_settings
    caplog.set_level(logging.INFO, logger="astro_jupyter.http_client")
    _seed_config(astro_config_path)
    astro_folder = astro_config_path.parent
    before = _Before(set(threading.enumerate()), _listening_ports(), _folder_bytes(astro_folder))
    assert urlsplit(emulator.base_url).port in before.listening
    assert nothing_listens_on(callback_port)

    cell, gate = _run_login_cell(
        endpoint,
        fault,
        emulator=emulator,
        shell=shell,
        capsys=capsys,
        caplog=caplog,
        open_gate=open_gate,
        settings=settings,
    )
    hardening.add("Fault matrix", "faults injected", cell.injected)

    if endpoint == "organization-lookup" and fault == "missing-fields":
        # The lookup only routes the sign-in page, and the Astro API sends no
        # organizationIds for an email it does not know, so the login goes on
        # without the hint and saves the login as usual.
        assert cell.error_line is None, cell.output
        assert "Logged in to localhost as ada@example.com." in cell.output
        saved = ConfigStore(astro_config_path).read_context("localhost")
        assert saved.organization == ada_account
        assert saved.token != "seeded-token"
        assert "organization=" not in settings.logins.latest.authorize_url
        assert cell.injected == 1
        _assert_clean_exit(cell, before, callback_port, astro_folder, config_changes=True)
        hardening.add("Fault matrix", "cells passed", 1)
        return

    step = STEPS[endpoint]
    assert cell.error_line is not None, cell.output
    assert "\n" not in cell.error_line
    assert cell.error_line.startswith(f"{step} failed: "), cell.error_line
    words = MISSING_FIELD_WORDS[endpoint] if fault == "missing-fields" else EXPECTED_WORDS[fault]
    assert words in cell.error_line
    assert f"UsageError: {cell.error_line}" in cell.output
    assert cell.injected >= 1
    # A refused connection sent nothing, so every request tries again; a 429
    # is tried again only by the requests that may be repeated.
    retried = fault == "refused" or (fault == "429" and endpoint not in NOT_RETRIED)
    if retried:
        assert cell.injected == ATTEMPTS
        assert f"Tried {ATTEMPTS} times." in cell.error_line
        hardening.add("Fault matrix", "retries observed", cell.injected - 1)
    else:
        assert cell.injected == 1
    _assert_clean_exit(cell, before, callback_port, astro_folder)
    hardening.add("Fault matrix", "cells passed", 1)


@pytest.mark.parametrize("fault", FAULTS)
def test_refresh_fault_cell(
    fault,
    emulator,
    ada_account,
    emulator_settings,
    open_gate,
    capsys,
    caplog,
    astro_config_path,
    hardening,
    request,
):
    store = ConfigStore(astro_config_path)
    log_in_by_link(emulator, store)
    # Two minutes left is inside the refresh margin, so the next token request refreshes.
    store.update_context("localhost", expires_at=datetime.now(timezone.utc) + timedelta(minutes=2))
    # A new settings object contains no auth config from the login above, so the
    # refresh fetches the domainUrl that this cell advertises.
    AstroLogin.clear_instance()
    shell = request.getfixturevalue("shell")
    AstroLogin.instance().http_timeout_s = HTTP_TIMEOUT_S
    caplog.set_level(logging.INFO, logger="astro_jupyter.http_client")
    astro_folder = astro_config_path.parent
    capsys.readouterr()
    before = _Before(set(threading.enumerate()), _listening_ports(), _folder_bytes(astro_folder))
    assert urlsplit(emulator.base_url).port in before.listening

    gate = None
    if fault in ("refused", "tls"):
        gate = open_gate(emulator, fault, "refresh")
        emulator.set_domain_url(f"{gate.url}auth/")
    else:
        _inject(emulator, "refresh", fault)
    result = shell.run_cell("%astro_workspace", store_history=False)
    cell = _finish_cell(
        "refresh", fault, capsys.readouterr(), result.error_in_exec, emulator, gate, caplog
    )
    hardening.add("Fault matrix", "faults injected", cell.injected)

    assert cell.error_line is not None, cell.output
    assert "\n" not in cell.error_line
    assert cell.error_line.startswith("Token refresh failed: "), cell.error_line
    words = MISSING_FIELD_WORDS["refresh"] if fault == "missing-fields" else EXPECTED_WORDS[fault]
    assert words in cell.error_line
    assert f"UsageError: {cell.error_line}" in cell.output
    # Only a refused connection, which the server never saw, is tried again.
    if fault == "refused":
        assert cell.injected == ATTEMPTS
        hardening.add("Fault matrix", "retries observed", cell.injected - 1)
    else:
        assert cell.injected == 1
    _assert_clean_exit(cell, before, None, astro_folder)
    hardening.add("Fault matrix", "cells passed", 1)


# A few cells in a real kernel, where the output travels as Jupyter messages


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [("auth-config", "500-message"), ("token", "429"), ("workspaces", "missing-fields")],
)
def test_kernel_fault_cell(
    endpoint,
    fault,
    emulator,
    ada_account,
    kernel_env,
    start_kernel,
    astro_config_path,
    leaked_secrets,
    hardening,
):
    _seed_config(astro_config_path)
    before = astro_config_path.read_bytes()
    callback_port = _free_port()
    kernel_env["ASTRO_JUPYTER_CALLBACK_PORT"] = str(callback_port)
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    _inject(emulator, endpoint, fault)

    result = kernel.execute(
        f"%astro_login localhost -e {ADA_EMAIL} -l --no-widget", on_message=Browser()
    )
    status = {"429": 429, "500-message": 500}.get(fault, 200)
    injected = sum(
        1 for record in emulator.requests if record.endpoint == endpoint and record.status == status
    )
    hardening.add("Fault matrix", "faults injected", injected)

    assert result.status == "error"
    assert result.reply["ename"] == "UsageError"
    message = result.reply["evalue"]
    assert message.startswith(f"{STEPS[endpoint]} failed: ")
    assert "\n" not in message
    assert f"UsageError: {message}" in result.stream("stderr")
    assert "Traceback" not in result.text() + result.stream("stderr")
    assert astro_config_path.read_bytes() == before
    assert injected == 1
    assert nothing_listens_on(callback_port)
    # The login's threads end within the bounded wait of this probe cell.
    probe = kernel.execute(
        "import threading, time\n"
        f"deadline = time.monotonic() + {SETTLE_S}\n"
        "while time.monotonic() < deadline and any(\n"
        "    t.name.startswith('astro-') for t in threading.enumerate()\n"
        "):\n"
        "    time.sleep(0.02)\n"
        "print(sorted(t.name for t in threading.enumerate() if t.name.startswith('astro-')))"
    )
    assert probe.stream("stdout").strip() == "[]"
    assert leaked_secrets(kernel.iopub_text()) == []
    hardening.add("Fault matrix", "cells passed", 1)


# Retries: counted in the emulator's request log


def _statuses(emulator: Any, endpoint: str) -> list[int]:
    """Return the statuses the emulator sent for ``endpoint``, 0 for a dropped connection."""
    return [record.status for record in emulator.requests if record.endpoint == endpoint]


@pytest.mark.parametrize(
    "endpoint",
    ["auth-config", "organization-lookup", "userinfo", "self", "organizations", "workspaces"],
)
def test_idempotent_request_retried_after_503(
    endpoint, emulator, ada_account, astro_config_path, hardening
):
    emulator.fail(endpoint, status=503, times=2)
    result = log_in_by_link(emulator, ConfigStore(astro_config_path))
    statuses = _statuses(emulator, endpoint)
    hardening.add("Fault matrix", "faults injected", statuses.count(503))
    hardening.add("Fault matrix", "retries observed", len(statuses) - 1)

    assert result.organization.id == ada_account
    assert statuses == [503, 503, 200]


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("workspaces", {"status": 502}),
        ("workspaces", {"status": 504}),
        ("workspaces", {"status": 429, "headers": {"Retry-After": "0"}}),
        ("workspaces", {"drop": True}),
        ("auth-config", {"drop": True}),
        ("organization-lookup", {"drop": True}),
        ("userinfo", {"drop": True}),
    ],
    ids=["502", "504", "429", "reset", "auth-config-reset", "lookup-reset", "userinfo-reset"],
)
def test_transient_fault_retried_once(
    endpoint, fault, emulator, ada_account, astro_config_path, hardening
):
    emulator.fail(endpoint, times=1, **fault)
    log_in_by_link(emulator, ConfigStore(astro_config_path))
    statuses = _statuses(emulator, endpoint)
    hardening.add("Fault matrix", "faults injected", len(statuses) - statuses.count(200))
    hardening.add("Fault matrix", "retries observed", len(statuses) - 1)

    assert statuses == [0 if fault.get("drop") else fault["status"], 200]


def test_retries_are_bounded(emulator, ada_account, astro_config_path, hardening):
    emulator.fail("self", status=503, body={"message": "maintenance"})
    with pytest.raises(ApiError) as caught:
        log_in_by_link(emulator, ConfigStore(astro_config_path))
    hardening.add("Fault matrix", "faults injected", emulator.count("self"))
    assert emulator.count("self") == ATTEMPTS
    assert emulator.count("organizations") == 0
    message = str(caught.value)
    assert message.startswith("Current user failed: ")
    assert "returned HTTP 503: maintenance" in message
    assert message.endswith(f"Tried {ATTEMPTS} times.")
    assert not astro_config_path.exists()


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 502},
        {"status": 503},
        {"status": 429, "headers": {"Retry-After": "0"}},
        {"drop": True},
    ],
    ids=["502", "503", "429", "reset"],
)
def test_token_exchange_sent_once(fault, emulator, ada_account, astro_config_path, hardening):
    emulator.fail("token", **fault)
    with pytest.raises(ApiError) as caught:
        log_in_by_link(emulator, ConfigStore(astro_config_path))
    hardening.add("Fault matrix", "faults injected", emulator.count("token"))
    # The code is single-use: a second try could only fail, or spend it twice.
    assert emulator.count("token") == 1
    assert str(caught.value).startswith("Token exchange failed: ")
    assert "Tried" not in str(caught.value)
    assert not astro_config_path.exists()


@pytest.mark.parametrize(
    "fault",
    [{"status": 503}, {"status": 429, "headers": {"Retry-After": "0"}}, {"drop": True}],
    ids=["503", "429", "reset"],
)
def test_refresh_sent_once(
    fault, emulator, ada_account, emulator_settings, astro_config_path, hardening
):
    store = ConfigStore(astro_config_path)
    log_in_by_link(emulator, store)
    store.update_context("localhost", expires_at=datetime.now(timezone.utc) + timedelta(minutes=2))
    before = astro_config_path.read_bytes()
    emulator.fail("refresh", **fault)

    with pytest.raises(ApiError) as caught:
        get_token(store=store)
    hardening.add("Fault matrix", "faults injected", emulator.count("refresh"))
    assert emulator.count("refresh") == 1
    assert str(caught.value).startswith("Token refresh failed: ")
    assert astro_config_path.read_bytes() == before

    # The failed refresh did not spend the saved refresh token: the next one works.
    emulator.clear_faults()
    old_token = store.read_context("localhost").token
    assert get_token(store=store) != old_token
    assert emulator.count("refresh") == 2


# Retry-After: honoured, but never beyond the request's own timeout


def _retry_messages(caplog: Any) -> list[str]:
    messages = [record.getMessage() for record in caplog.records]
    return [message for message in messages if "retrying in" in message]


@pytest.mark.parametrize("retry_after", ["3600", "http-date"])
def test_retry_after_capped_by_timeout(retry_after, emulator, caplog, hardening):
    if retry_after == "http-date":
        retry_after = formatdate(time.time() + 3600, usegmt=True)
    caplog.set_level(logging.INFO, logger="astro_jupyter.http_client")
    emulator.fail("auth-config", status=429, headers={"Retry-After": retry_after}, times=2)
    started = time.monotonic()
    with HttpClient(timeout_s=0.5) as http:
        config = fetch_auth_config(http, emulator.base_url)
    elapsed = time.monotonic() - started
    hardening.add("Fault matrix", "faults injected", _statuses(emulator, "auth-config").count(429))

    assert config.client_id == emulator.client_id
    assert emulator.count("auth-config") == ATTEMPTS
    waits = _retry_messages(caplog)
    assert len(waits) == 2
    assert all("retrying in 0.50 s" in wait for wait in waits)
    # Two waits of the capped 0.5 s happened, so the header was honoured, not skipped.
    assert elapsed >= 1.0


def test_retry_after_below_cap_is_used(emulator, caplog):
    caplog.set_level(logging.INFO, logger="astro_jupyter.http_client")
    emulator.fail("auth-config", status=503, headers={"Retry-After": "1"}, times=1)
    started = time.monotonic()
    with HttpClient(timeout_s=10) as http:
        fetch_auth_config(http, emulator.base_url)
    elapsed = time.monotonic() - started
    assert emulator.count("auth-config") == 2
    waits = _retry_messages(caplog)
    assert waits and "retrying in 1.00 s" in waits[0]
    assert elapsed >= 1.0


def test_429_message_reports_server_wait(emulator):
    emulator.fail("auth-config", status=429, headers={"Retry-After": "120"})
    with HttpClient(timeout_s=0.2) as http, pytest.raises(ApiError) as caught:
        fetch_auth_config(http, emulator.base_url)
    message = str(caught.value)
    assert message.startswith("Auth config failed: ")
    assert "HTTP 429 (too many requests)" in message
    assert f"Tried {ATTEMPTS} times." in message
    assert message.endswith("The server asks to wait 120 s before trying again.")
    assert emulator.count("auth-config") == ATTEMPTS


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("soon", None),
        ("", None),
        ("-3", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        # A superscript digit passes str.isdigit() but is no number.
        ("\u00b2", None),
        ("9" * 400, 86400.0),
    ],
)
def test_retry_after_parsing(header, expected):
    assert retry_after_s(header) == expected


def test_session_timeouts_not_retried():
    from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError

    from astro_jupyter.http_client import session_retry

    retry = session_retry(3)
    for error in (ConnectTimeoutError(), ReadTimeoutError(None, "/", "timed out")):
        with pytest.raises(type(error)):
            retry.increment(method="GET", error=error)
