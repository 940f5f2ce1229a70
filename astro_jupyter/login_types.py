"""The values a login is described by: its mode, steps, events, options and result.

These are plain data shared by the login flow and the views that watch it.
None of them contains a token.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from .astro_api import Organization, Workspace

__all__ = ["LoginEvent", "LoginMode", "LoginOptions", "LoginResult", "LoginStep"]


class LoginMode(enum.Enum):
    """Way the user reaches the sign-in page: a browser opened here, a link, or a token."""

    BROWSER = "browser"
    LINK = "link"
    TOKEN = "token"


class LoginStep(enum.Enum):
    """The steps a login goes through, in order; the last three end it."""

    STARTING = "starting"
    AUTH_CONFIG = "auth config"
    ORGANIZATION_LOOKUP = "organization lookup"
    WAITING_FOR_BROWSER = "waiting for the browser"
    TOKEN_EXCHANGE = "token exchange"
    USER_INFO = "user info"
    SESSION_CHECK = "session check"
    SAVING = "saving"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the login has ended at this step."""
        return self in (LoginStep.DONE, LoginStep.FAILED, LoginStep.CANCELLED)


@dataclass(frozen=True)
class LoginEvent:
    """One change in a login's progress.

    ``authorize_url`` is set on the :attr:`LoginStep.WAITING_FOR_BROWSER`
    event: the page the user must open. It contains no secret (the PKCE challenge
    and ``state`` are public by design). ``callback_listening`` is false on that
    event when another program listens on the callback port, so only a pasted
    redirect address can finish the login.
    """

    step: LoginStep
    message: str
    authorize_url: str | None = None
    deadline_monotonic: float | None = None
    callback_listening: bool | None = None
    redirect_uri: str | None = None


@dataclass(frozen=True)
class LoginOptions:
    """Settings of one login, resolved by the caller from its configuration."""

    domain: str
    api_base_url: str
    callback_port: int = 12345
    callback_timeout_s: float = 300.0
    http_timeout_s: float = 30.0


@dataclass(frozen=True)
class LoginResult:
    """The saved outcome of a successful login, without any token."""

    domain: str
    email: str
    requested_email: str | None
    organization: Organization
    workspace: Workspace | None
    workspaces: tuple[Workspace, ...]
    expires_at: datetime
    refreshable: bool

    @property
    def email_differs(self) -> bool:
        """Whether the account that signed in is not the one the user asked for."""
        return bool(self.requested_email) and (
            self.email.casefold() != (self.requested_email or "").casefold()
        )
