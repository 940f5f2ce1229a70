"""Shared state of one emulator, as the endpoint handlers see it.

``Backend`` gathers the settings, the user directory, the token store, the
authorize requests waiting for a decision, the injected faults and the request
log. It does no I/O. The ``Emulator`` class owns one and exposes the parts
that tests use.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from .faults import FaultTable, RequestLog
from .state import Directory
from .tokens import TokenStore

__all__ = [
    "AUDIENCE",
    "CLIENT_ID",
    "DEFAULT_SCOPE",
    "LEGACY_AUTH_FLOWS",
    "PENDING_REQUEST_TTL_S",
    "AuthorizeRequest",
    "Backend",
    "PendingRequests",
]

CLIENT_ID = "astro-emulator-cli"
"""The only OAuth client id the emulator accepts, sent by auth-config as ``clientId``."""

AUDIENCE = "astronomer-ee"
"""The ``aud`` of access tokens, sent by auth-config as ``audience``."""

DEFAULT_SCOPE = "openid profile email offline_access"
"""The scope granted when an authorize request names none."""

LEGACY_AUTH_FLOWS = ("ORG_FIRST", "IDENTITY_FIRST")

# How long the approval page stays valid, like an authorization code.
PENDING_REQUEST_TTL_S = 600.0


@dataclass(frozen=True)
class AuthorizeRequest:
    """A validated authorize request, waiting for the user's decision or approved at once."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    login_hint: str
    organization: str | None


class PendingRequests:
    """Thread-safe map from the approval page's request id to its authorize request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, tuple[AuthorizeRequest, float]] = {}

    def add(self, request: AuthorizeRequest) -> str:
        """Store ``request`` and return the random id the approval form posts back."""
        request_id = secrets.token_urlsafe(24)
        expires_at = time.monotonic() + PENDING_REQUEST_TTL_S
        with self._lock:
            self._drop_expired_locked()
            self._requests[request_id] = (request, expires_at)
        return request_id

    def get(self, request_id: str) -> AuthorizeRequest | None:
        """Return the pending request with ``request_id``, or ``None`` if unknown or expired."""
        with self._lock:
            self._drop_expired_locked()
            entry = self._requests.get(request_id)
            return entry[0] if entry else None

    def pop(self, request_id: str) -> AuthorizeRequest | None:
        """Remove and return the pending request, so each approval page is decided once."""
        with self._lock:
            self._drop_expired_locked()
            entry = self._requests.pop(request_id, None)
            return entry[0] if entry else None

    def _drop_expired_locked(self) -> None:
        now = time.monotonic()
        expired = [key for key, (_, expires_at) in self._requests.items() if expires_at <= now]
        for key in expired:
            del self._requests[key]


@dataclass
class Backend:
    """Settings and state shared by the request handlers of one emulator.

    ``base_url`` and ``oauth_base_url`` are empty until the server is bound.
    """

    page_size_max: int
    access_token_ttl_s: int
    approve_as: str | None = None
    legacy_auth_flow: str = "ORG_FIRST"
    base_url: str = ""
    oauth_base_url: str = ""
    # The domainUrl that auth config sends when set, instead of oauth_base_url.
    domain_url: str | None = None
    directory: Directory = field(default_factory=Directory)
    faults: FaultTable = field(default_factory=FaultTable)
    log: RequestLog = field(default_factory=RequestLog)
    pending: PendingRequests = field(default_factory=PendingRequests)
    stopping: threading.Event = field(default_factory=threading.Event)
    tokens: TokenStore = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenStore(
            issuer="", audience=AUDIENCE, access_token_ttl_s=self.access_token_ttl_s
        )

    def set_base_url(self, base_url: str) -> None:
        """Set the API base URL once the port is known, and the OAuth issuer below it."""
        self.base_url = base_url
        self.oauth_base_url = base_url + "auth/"
        self.tokens.issuer = self.oauth_base_url
