"""The stored login, for later cells: the current token and who it belongs to.

Reads the login that ``%astro_login`` or the Astro CLI saved in
``config.yaml`` and refreshes the access token when it is about to expire. A
refresh holds the renewal lock that newer Astro CLIs take, re-reads the file
under it, and uses a token another process saved meanwhile instead of
spending the rotating refresh token twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .config_store import ConfigStore, ContextRecord
from .errors import NotLoggedInError
from .http_client import HttpClient
from .oauth_client import fetch_auth_config, is_invalid_grant, refresh_tokens
from .settings import AstroLogin

__all__ = ["Identity", "get_token", "whoami"]

log = logging.getLogger(__name__)

# Refresh this long before the stored expiry, so a token handed out is still
# valid for the request the caller is about to make.
REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class Identity:
    """Owner and scope of the stored login of one context, without any token."""

    email: str | None
    domain: str
    organization: str | None
    workspace: str | None
    expires_at: datetime | None
    refreshable: bool


def _login_hint(domain: str | None) -> str:
    target = f" {domain}" if domain else ""
    return f"run %astro_login{target} (or `astro login{target}` in a terminal)"


def _read_login(store: ConfigStore, domain: str | None) -> tuple[str, ContextRecord]:
    name, record = store.read_login(domain)
    if not name:
        raise NotLoggedInError(
            f"Not logged in to Astro: {store.path} names no current context; {_login_hint(None)}."
        )
    if record is None:
        raise NotLoggedInError(
            f"Not logged in to Astro domain {name}: {store.path} has no context for it; "
            f"{_login_hint(name)}."
        )
    if record.in_vault:
        raise NotLoggedInError(
            f"Not logged in to Astro domain {name} here: this login is kept in the Astro CLI's "
            f"vault, which astro_jupyter cannot read; {_login_hint(name)} to share one through "
            "config.yaml."
        )
    if not record.token:
        raise NotLoggedInError(f"Not logged in to Astro domain {name}; {_login_hint(name)}.")
    return name, record


def _is_fresh(record: ContextRecord, now: datetime) -> bool:
    return record.expires_at is not None and record.expires_at - REFRESH_MARGIN > now


def get_token(domain: str | None = None, *, store: ConfigStore | None = None) -> str:
    """Return the access token of the current or given context, refreshed if needed.

    Parameters
    ----------
    domain
        The Astro domain whose login to use; default: ``$ASTRO_DOMAIN``, else
        the config file's current context.
    store
        The config file to use; default: ``config.yaml`` under ``$ASTRO_HOME``
        or the home folder.

    Raises
    ------
    NotLoggedInError
        There is no login, it is kept in the CLI's vault, or it expired and
        could not be refreshed.
    """
    store = store or ConfigStore()
    settings = AstroLogin.instance()
    if domain:
        domain = settings.resolve_domain(domain)
    name, record = _read_login(store, domain)
    if _is_fresh(record, datetime.now(timezone.utc)):
        return record.token or ""

    with store.renewal_lock():
        name, record = _read_login(store, name)
        if _is_fresh(record, datetime.now(timezone.utc)):
            log.debug("another process refreshed the token of %s", name)
            return record.token or ""
        if not record.refresh_token:
            raise NotLoggedInError(
                f"The Astro login for {name} has expired and has no refresh token; "
                f"{_login_hint(name)}."
            )
        return _refresh(store, settings, name, record.refresh_token)


def _refresh(store: ConfigStore, settings: AstroLogin, name: str, refresh_token: str) -> str:
    with HttpClient(timeout_s=settings.http_timeout_s) as http:
        config = fetch_auth_config(http, settings.api_base_url_for(name))
        try:
            tokens = refresh_tokens(http, config, refresh_token)
        except Exception as error:
            if is_invalid_grant(error):
                raise NotLoggedInError(
                    f"The Astro login for {name} has expired and could not be renewed "
                    f"(invalid_grant); {_login_hint(name)}.",
                    step="Token refresh",
                    oauth_error="invalid_grant",
                ) from None
            raise

    store.update_context(
        name,
        token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
    )
    log.info("refreshed the access token of %s", name)
    return tokens.access_token


def whoami(domain: str | None = None, *, store: ConfigStore | None = None) -> Identity:
    """Describe the stored login of the current or given context, without any request.

    Raises
    ------
    NotLoggedInError
        There is no usable login for that context.
    """
    store = store or ConfigStore()
    if domain:
        domain = AstroLogin.instance().resolve_domain(domain)
    name, record = _read_login(store, domain)
    return Identity(
        email=record.user_email,
        domain=name,
        organization=record.organization,
        workspace=record.workspace,
        expires_at=record.expires_at,
        refreshable=bool(record.refresh_token),
    )
