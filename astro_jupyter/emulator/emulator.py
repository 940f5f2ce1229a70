"""The ``Emulator`` class: start, stop, seed and inspect an emulated Astro control plane.

This is the Python API that tests and the demo use. It starts the HTTP server
in a daemon thread, and gives tests the means to add organisations and users,
mint tokens, inject faults and read what was requested and issued. It does not
print; the command line entry point does.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from urllib.parse import urlsplit

from .backend import AUDIENCE, CLIENT_ID, LEGACY_AUTH_FLOWS, Backend
from .faults import Fault, RequestRecord
from .server import EmulatorHttpServer, loopback_bind_address

__all__ = ["Emulator"]

logger = logging.getLogger(__name__)

# Maximum seconds stop() waits for the serving thread, which notices shutdown within one poll
# interval.
_JOIN_TIMEOUT_S = 5.0
_POLL_INTERVAL_S = 0.05


class Emulator:
    """An Astro control plane and OAuth server on a loopback port.

    Parameters
    ----------
    host
        Loopback address to bind: ``127.0.0.1``, ``::1`` or ``localhost``.
    port
        Port to bind; 0 picks a free one.
    approve_as
        If set, the authorize endpoint signs in as this email without showing
        the approval page.
    page_size_max
        Maximum number of items in one page of a list endpoint, whatever the
        request's ``limit``.
    access_token_ttl_s
        Lifetime in seconds of access tokens from the token endpoint.
    legacy_auth_flow
        The ``authFlow`` that the older ``<api>auth-config`` endpoint sends,
        ``ORG_FIRST`` or ``IDENTITY_FIRST``.

    Raises
    ------
    ValueError
        ``host`` is not a loopback address, or a number is out of range.

    Examples
    --------
    >>> with Emulator(approve_as="jane@example.com") as emu:
    ...     emu.base_url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        approve_as: str | None = None,
        page_size_max: int = 100,
        access_token_ttl_s: int = 3600,
        *,
        legacy_auth_flow: str = "ORG_FIRST",
    ) -> None:
        loopback_bind_address(host)
        if not 0 <= port <= 65535:
            raise ValueError(f"Invalid port {port!r}: expected 0 to 65535.")
        if page_size_max < 1:
            raise ValueError(f"Invalid page_size_max {page_size_max!r}: expected 1 or more.")
        if access_token_ttl_s < 1:
            raise ValueError(
                f"Invalid access_token_ttl_s {access_token_ttl_s!r}: expected 1 or more."
            )
        if legacy_auth_flow not in LEGACY_AUTH_FLOWS:
            raise ValueError(
                f"Invalid legacy_auth_flow {legacy_auth_flow!r}: "
                f"expected one of {LEGACY_AUTH_FLOWS}."
            )
        self._host = host
        self._port = port
        self._backend = Backend(
            page_size_max=page_size_max,
            access_token_ttl_s=access_token_ttl_s,
            legacy_auth_flow=legacy_auth_flow,
        )
        self.set_approve_as(approve_as)
        self._lock = threading.Lock()
        self._server: EmulatorHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def __repr__(self) -> str:
        where = self._backend.base_url or "not started"
        return f"<Emulator {where}>"

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Emulator:
        """Bind the socket, serve in a daemon thread and return ``self``.

        Raises
        ------
        RuntimeError
            The emulator was already started.
        OSError
            The port cannot be bound.
        """
        with self._lock:
            if self._server is not None or self._stopped:
                raise RuntimeError("This emulator was already started; create a new one.")
            server = EmulatorHttpServer(self._host, self._port, self._backend)
            host, port = str(server.server_address[0]), int(server.server_address[1])
            netloc_host = f"[{host}]" if ":" in host else host
            self._backend.set_base_url(f"http://{netloc_host}:{port}/")
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name=f"astro-emulator-{port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        logger.info("Astro emulator listening on %s", self._backend.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, end pending delays, close the socket and join the threads.

        Calling it again, or on an emulator never started, does nothing.
        """
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._stopped = True
        if server is None or thread is None:
            return
        self._backend.stopping.set()
        server.shutdown()
        server.end_reads()
        server.server_close()
        thread.join(_JOIN_TIMEOUT_S)
        logger.info("Astro emulator at %s stopped", self._backend.base_url)

    @property
    def base_url(self) -> str:
        """The API base URL, such as ``http://127.0.0.1:43121/``, always ending in ``/``."""
        return self._require_started().base_url

    @property
    def oauth_base_url(self) -> str:
        """The OAuth server's URL that auth-config sends as ``domainUrl``, ending in ``/``."""
        return self._require_started().oauth_base_url

    @property
    def client_id(self) -> str:
        """The OAuth client id that auth-config sends and the OAuth endpoints accept."""
        return CLIENT_ID

    @property
    def audience(self) -> str:
        """The audience that auth-config sends and access tokens carry."""
        return AUDIENCE

    @property
    def default_organization_id(self) -> str:
        """The id of "Example Org", which users created at sign-in join."""
        return self._backend.directory.default_organization_id

    def add_organization(
        self, name: str, *, product: str = "HOSTED", workspaces: tuple[str, ...] = ("Default",)
    ) -> str:
        """Create an organisation with the named workspaces and return its id (``org-...``).

        Every workspace gets two made-up deployments.
        """
        return self._backend.directory.add_organization(
            name, product=product, workspaces=workspaces
        )

    def add_user(self, email: str, *, organizations: tuple[str, ...] = ()) -> str:
        """Create a user who is a member of exactly ``organizations`` and return its id.

        A user added with no organisation has none, unlike users created at sign-in.

        Raises
        ------
        ValueError
            The email is invalid or taken, or an organisation id is unknown.
        """
        return self._backend.directory.add_user(email, organizations=tuple(organizations))

    def set_approve_as(self, email: str | None) -> None:
        """Approve every authorize request at once as ``email``, or ask on a page if ``None``."""
        if email is not None:
            self._backend.directory.ensure_user(email)
        self._backend.approve_as = email

    def mint_access_token(self, email: str, ttl_s: int = 3600) -> str:
        """Return an access token for ``email``, like one copied from the cloud UI's token page.

        No refresh token belongs to it. The user is created if unknown. A
        ``ttl_s`` of 0 or less gives a token that is already expired.
        """
        self._require_started()
        user = self._backend.directory.ensure_user(email)
        return self._backend.tokens.mint_access_token(user, ttl_s)

    def fail(
        self,
        endpoint: str,
        *,
        status: int | None = 500,
        delay_s: float = 0.0,
        body: dict[str, object] | bytes | str | None = None,
        times: int | None = None,
        headers: dict[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        """Make ``endpoint`` fail, replacing its previous fault.

        Parameters
        ----------
        endpoint
            An endpoint name, such as ``"token"`` or ``"workspaces"``.
        status
            HTTP status to send. ``None`` sends the normal response after ``delay_s``.
        delay_s
            Seconds to wait before responding, at most 60. ``stop()`` ends the wait.
        body
            A dict is sent as JSON, bytes or str as they are. ``None`` sends
            ``{"message", "statusCode", "requestId"}``, or for ``"token"`` and
            ``"refresh"`` an OAuth error object.
        times
            Number of requests to fail; ``None`` fails until ``clear_faults()``.
        headers
            Extra headers of the injected response, such as ``{"Retry-After": "1"}``.
        drop
            Reset the connection after ``delay_s`` instead of responding. The
            request log records status 0 for it.

        Raises
        ------
        ValueError
            The endpoint is unknown or a value is out of range.
        """
        fault = Fault(
            endpoint,
            status=status,
            delay_s=delay_s,
            body=body,
            times=times,
            headers=headers,
            drop=drop,
        )
        self._backend.faults.set(fault)

    def set_domain_url(self, url: str | None) -> None:
        """Make the auth config send ``url`` as ``domainUrl``, or the emulator's own for ``None``.

        Clients then send their token and userinfo requests there, which lets
        a test put a proxy, a closed port or a TLS listener in front of the
        OAuth server. The emulator's own OAuth endpoints stay where they are.

        Raises
        ------
        ValueError
            ``url`` is not an http(s) URL of a loopback host.
        """
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"Invalid domainUrl {url!r}: expected an http(s) URL.")
            loopback_bind_address(parts.hostname)
            url = url if url.endswith("/") else url + "/"
        self._backend.domain_url = url

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._backend.faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, in order: method, path without query, endpoint, status."""
        return self._backend.log.snapshot()

    def count(self, endpoint: str) -> int:
        """Return how many requests of ``endpoint`` were served.

        Raises
        ------
        ValueError
            The endpoint name is unknown.
        """
        return self._backend.log.count(endpoint)

    def issued_secrets(self) -> set[str]:
        """Return every code and token issued and every code_verifier received, for leak tests."""
        return self._backend.tokens.issued_secrets()

    def revoked(self, token: str) -> bool:
        """Return whether ``token`` was revoked; a merely rotated refresh token was not.

        Raises
        ------
        KeyError
            The token was not issued by this emulator.
        """
        return self._backend.tokens.revoked(token)

    def revoke(self, token: str) -> None:
        """Revoke ``token`` and, for a token from a login, every token of that login.

        Raises
        ------
        KeyError
            The token was not issued by this emulator.
        """
        self._backend.tokens.revoke(token)

    def _require_started(self) -> Backend:
        if not self._backend.base_url:
            raise RuntimeError("The emulator is not started yet; call start() first.")
        return self._backend
