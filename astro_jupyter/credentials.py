"""The stored login, for later cells: the current token and who it belongs to.

Reads the login that ``%astro_login`` or the Astro CLI saved in
``config.yaml`` and refreshes the access token when it is about to expire. A
refresh holds the renewal lock that newer Astro CLIs take, re-reads the file
under it, and uses a token another process saved meanwhile instead of
spending the rotating refresh token twice.

An Astro API token in ``ASTRO_API_TOKEN`` wins over the stored login, as it
does for the Astro CLI; it is never written to the config file.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .config_context import SOURCE_CREDENTIALS_FILE
from .config_store import ConfigStore, ContextRecord, config_path
from .errors import (
    AstroJupyterError,
    ConfigError,
    ConfigLockTimeoutError,
    InvalidInputError,
    NotLoggedInError,
)
from .http_client import HttpClient
from .jwt_claims import expiry_of, read_claims
from .oauth_client import fetch_auth_config, is_invalid_grant, refresh_tokens
from .settings import AstroLogin

__all__ = [
    "API_TOKEN_ENV",
    "CredentialSource",
    "api_token_from_environment",
    "Identity",
    "default_store",
    "get_token",
    "renew_token",
    "whoami",
]

log = logging.getLogger(__name__)

API_TOKEN_ENV = "ASTRO_API_TOKEN"

# Refresh this long before the stored expiry, so a token handed out is still
# valid for the request the caller is about to make.
# NOTE: a token whose whole lifetime is under this margin (only seen with a
# local control plane set up that way) is refreshed on every call.
REFRESH_MARGIN = timedelta(minutes=5)

# How long a save after a refresh waits for the config lock, in seconds.
_SAVE_AFTER_REFRESH_WAIT_S = 60.0


class CredentialSource(enum.Enum):
    """Origin of the token that :func:`get_token` returns."""

    API_TOKEN = "api token"
    LOGIN = "login"
    TOKEN_LOGIN = "token login"
    CREDENTIALS_FILE = "credentials file"

    def describe(self) -> str:
        """Return a phrase for the user, such as ``"the Astro API token in $ASTRO_API_TOKEN"``."""
        return {
            CredentialSource.API_TOKEN: f"the Astro API token in ${API_TOKEN_ENV}",
            CredentialSource.LOGIN: "a refreshable login saved in config.yaml",
            CredentialSource.CREDENTIALS_FILE: (
                "a login read from credentials.json beside config.yaml (a refresh saves it to "
                "config.yaml)"
            ),
            CredentialSource.TOKEN_LOGIN: (
                "a token login saved in config.yaml, without a refresh token "
                "(log in again when it expires)"
            ),
        }[self]


@dataclass(frozen=True)
class Identity:
    """Owner and scope of the credentials in use for one context, without any token."""

    email: str | None
    domain: str | None
    organization: str | None
    workspace: str | None
    expires_at: datetime | None
    refreshable: bool
    source: CredentialSource


# One store per config path for the whole process, so that the parse cache of
# each store lasts between calls. The cache never outlives a change of the file:
# every read compares the file's stat signature first.
_shared_stores: dict[tuple[str, str], ConfigStore] = {}
_shared_stores_lock = threading.Lock()


def default_store() -> ConfigStore:
    """Return this process's store for the config file that ``ASTRO_HOME`` or ``HOME`` names now."""
    key = (os.environ.get("ASTRO_HOME", ""), os.environ.get("HOME", ""))
    store = _shared_stores.get(key)
    if store is None:
        with _shared_stores_lock:
            store = _shared_stores.setdefault(key, ConfigStore(config_path(os.environ)))
    return store


def api_token_from_environment() -> str | None:
    """Return ``$ASTRO_API_TOKEN`` stripped, or None when it is unset or blank."""
    token = os.environ.get(API_TOKEN_ENV, "").strip()
    if any(character.isspace() or not character.isprintable() for character in token):
        raise InvalidInputError(
            f"${API_TOKEN_ENV} contains spaces, line breaks or control characters; set it to "
            "the token alone, on one line."
        )
    return token or None


def _login_hint(domain: str | None) -> str:
    target = f" {domain}" if domain else ""
    return f"run %astro_login{target} (or `astro login{target}` in a terminal)"


def _resolve_domain(domain: str | None) -> str | None:
    return AstroLogin.instance().resolve_domain(domain) if domain else None


def _read_login(store: ConfigStore, domain: str | None) -> tuple[str, ContextRecord]:
    name, record = store.read_login(domain)
    if not name and not store.path.exists():
        raise NotLoggedInError(
            f"Not logged in to Astro: {store.path} does not exist yet; {_login_hint(None)}."
        )
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


def _wait_for_login_in_progress(domain: str | None) -> None:
    """Wait for a login that this kernel is running for ``domain`` (any when None).

    The login ends by itself when its callback wait times out, so this wait is
    bounded too.
    """
    flow = AstroLogin.instance().logins.running(domain)
    if flow is None:
        return
    log.info("waiting for the login to %s in progress", flow.options.domain)
    try:
        flow.wait()
    except AstroJupyterError as error:
        raise NotLoggedInError(
            f"The login to {flow.options.domain} in progress in this kernel ended without "
            f"logging in: {error}"
        ) from None


def _is_fresh(record: ContextRecord, now: datetime) -> bool:
    return record.expires_at is not None and record.expires_at - REFRESH_MARGIN > now


def get_token(domain: str | None = None, *, store: ConfigStore | None = None) -> str:
    """Return the access token to use for Astro, refreshing a stored login if needed.

    ``$ASTRO_API_TOKEN`` wins when set. Otherwise the token of the stored
    login of ``domain`` is returned, refreshed first when it expires within
    five minutes. When this kernel is running a login for that domain (say,
    from the login panel), the call first waits for the login to end.

    Parameters
    ----------
    domain
        The Astro domain whose login to use; default: ``$ASTRO_DOMAIN``, else
        the config file's current context.
    store
        The config file to use; default: :func:`default_store`.

    Raises
    ------
    NotLoggedInError
        There is no login, it is kept in the CLI's vault, it expired and
        could not be refreshed, or the login in progress failed or timed out.
    """
    api_token = api_token_from_environment()
    if api_token:
        return api_token
    store = store or default_store()
    domain = _resolve_domain(domain)
    _wait_for_login_in_progress(domain)
    name, record = _read_login(store, domain)
    if _is_fresh(record, datetime.now(timezone.utc)):
        return record.token or ""
    return _refresh_under_lock(store, name, rejected_token=None)


def renew_token(
    rejected_token: str, domain: str | None = None, *, store: ConfigStore | None = None
) -> str:
    """Refresh the stored login because the API rejected ``rejected_token``.

    When another process already saved a different token, that one is
    returned without spending the refresh token.

    Raises
    ------
    NotLoggedInError
        The login cannot be refreshed.
    """
    api_token = api_token_from_environment()
    if api_token:
        return api_token
    store = store or default_store()
    name, _record = _read_login(store, _resolve_domain(domain))
    return _refresh_under_lock(store, name, rejected_token=rejected_token)


def _renewal_wait_s(store: ConfigStore, settings: AstroLogin) -> float:
    # The holder of the renewal lock may spend two requests (auth config and
    # token) of up to http_timeout_s each, plus retries, before it lets go.
    return max(store.lock_timeout_s, 2 * settings.http_timeout_s + 10)


def _refresh_under_lock(store: ConfigStore, name: str, rejected_token: str | None) -> str:
    settings = AstroLogin.instance()
    try:
        with store.renewal_lock(_renewal_wait_s(store, settings)):
            return _refresh_locked(store, settings, name, rejected_token)
    except ConfigLockTimeoutError as error:
        if error.path not in {str(path) for path in store.renewal_lock_paths()}:
            raise
        # Another process is still refreshing. A token that has not expired
        # is still usable, so only a dead one is an error.
        name, record = _read_login(store, name)
        now = datetime.now(timezone.utc)
        if record.token != rejected_token and record.expires_at and record.expires_at > now:
            return record.token or ""
        raise


def _refresh_locked(
    store: ConfigStore, settings: AstroLogin, name: str, rejected_token: str | None
) -> str:
    # Parse the file afresh: on a file system with coarse file times, the
    # cache could still show a refresh token another process already spent.
    store.forget_cached()
    name, record = _read_login(store, name)
    now = datetime.now(timezone.utc)
    if rejected_token is None:
        if _is_fresh(record, now):
            log.debug("another process refreshed the token of %s", name)
            return record.token or ""
    elif record.token != rejected_token:
        log.debug("another process replaced the rejected token of %s", name)
        return record.token or ""

    if record.refresh_token and store.is_refresh_token_spent(record.refresh_token):
        raise NotLoggedInError(
            f"The saved refresh token for {name} was already spent by a renewal whose result "
            f"could not be saved; {_login_hint(name)}."
        )
    if not record.refresh_token:
        # A token login cannot be renewed, but it works until it really expires.
        if rejected_token is None and record.expires_at and record.expires_at > now:
            return record.token or ""
        raise NotLoggedInError(
            f"The Astro login for {name} has expired and has no refresh token; "
            f"{_login_hint(name)}."
        )
    return _refresh(store, settings, name, record.refresh_token)


def _refresh(store: ConfigStore, settings: AstroLogin, name: str, refresh_token: str) -> str:
    with HttpClient(timeout_s=settings.http_timeout_s) as http:
        config = settings.auth_configs.get(
            settings.api_base_url_for(name), lambda base_url: fetch_auth_config(http, base_url)
        )
        try:
            tokens = refresh_tokens(http, config, refresh_token)
        except Exception as error:
            if is_invalid_grant(error):
                raise NotLoggedInError(
                    f"The Astro login for {name} could not be renewed: the server rejected its "
                    f"refresh token (invalid_grant), which expired or was revoked; "
                    f"{_login_hint(name)}.",
                    step="Token refresh",
                    oauth_error="invalid_grant",
                ) from None
            raise

    try:
        # The old refresh token is spent now, so saving the new one is worth
        # a longer wait than an ordinary write.
        written = store.save_refreshed_tokens(
            name,
            spent_refresh_token=refresh_token,
            token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
            lock_timeout_s=max(store.lock_timeout_s, _SAVE_AFTER_REFRESH_WAIT_S),
        )
    except ConfigError as error:
        store.mark_refresh_token_spent(refresh_token)
        log.warning("refreshed the token of %s but could not save it: %s", name, error)
        raise ConfigError(
            f"The Astro login for {name} was renewed, but saving it failed: {error} "
            f"The old refresh token is spent, so {_login_hint(name)} once the file can be "
            "written.",
            path=str(store.path),
        ) from None

    if not written:
        # A logout or a new login landed during the request, and it wins.
        log.info("the login of %s changed during a refresh; keeping the new state", name)
        name, record = _read_login(store, name)
        return record.token or ""
    log.info("refreshed the access token of %s", name)
    return tokens.access_token


def whoami(domain: str | None = None, *, store: ConfigStore | None = None) -> Identity:
    """Describe the credentials in use for the current or given context, without any request.

    Raises
    ------
    NotLoggedInError
        Neither ``$ASTRO_API_TOKEN`` nor a usable stored login is there.
    """
    store = store or default_store()
    api_token = api_token_from_environment()
    if api_token:
        name, record = store.read_login(_resolve_domain(domain))
        try:
            expires_at = expiry_of(read_claims(api_token))
        except InvalidInputError:
            # An API token that is not a JWT still works with the API; only
            # its expiry stays unknown.
            expires_at = None
        return Identity(
            email=None,
            domain=name or AstroLogin.instance().default_domain(),
            organization=record.organization if record else None,
            workspace=record.workspace if record else None,
            expires_at=expires_at,
            refreshable=False,
            source=CredentialSource.API_TOKEN,
        )

    name, record = _read_login(store, _resolve_domain(domain))
    refreshable = bool(record.refresh_token)
    if record.source == SOURCE_CREDENTIALS_FILE:
        source = CredentialSource.CREDENTIALS_FILE
    else:
        source = CredentialSource.LOGIN if refreshable else CredentialSource.TOKEN_LOGIN
    return Identity(
        email=record.user_email,
        domain=name,
        organization=record.organization,
        workspace=record.workspace,
        expires_at=record.expires_at,
        refreshable=refreshable,
        source=source,
    )
