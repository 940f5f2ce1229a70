"""The OAuth 2.0 side of an Astro login: auth config, authorize URL, tokens, user info.

Astro's CLI login is the authorization code grant with PKCE (RFC 6749 section
4.1, RFC 7636) for a native app with a loopback redirect (RFC 8252). This
module builds the requests and parses the responses; it neither opens a browser
nor listens for the callback, and it writes no files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from .errors import ApiError, OAuthError
from .http_client import HttpClient

__all__ = [
    "AuthConfig",
    "TokenSet",
    "UserInfo",
    "authorization_url",
    "exchange_code",
    "fetch_auth_config",
    "fetch_userinfo",
    "refresh_tokens",
]

log = logging.getLogger(__name__)

OAUTH_SERVER = "Astro OAuth server"
API_SERVER = "Astro API"
SCOPES = "openid profile email offline_access"
# Header the Astro API requires before it serves the CLI's auth config.
_CLIENT_IDENTIFIER_HEADER = {"X-Astro-Client-Identifier": "cli"}


@dataclass(frozen=True)
class AuthConfig:
    """OAuth client settings of one Astro domain."""

    client_id: str
    audience: str
    domain_url: str  # the OAuth server's base URL, always ending in "/"


@dataclass(frozen=True)
class TokenSet:
    """Tokens returned by the token endpoint. The repr never shows a token."""

    access_token: str = field(repr=False)
    expires_at: datetime
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None

    def __repr__(self) -> str:
        refresh = "<hidden>" if self.refresh_token else None
        return (
            f"TokenSet(access_token=<hidden>, refresh_token={refresh}, "
            f"expires_at={self.expires_at.isoformat()!r}, scope={self.scope!r})"
        )


@dataclass(frozen=True)
class UserInfo:
    """The signed-in user as the OAuth server's userinfo endpoint describes them."""

    email: str
    name: str | None = None


def _require_str(step: str, body: Any, key: str, where: str) -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise ApiError(
            f"{step} failed: the response from {where} has no {key!r} field; "
            "check that the API URL points at an Astro control plane.",
            step=step,
        )
    return value


def fetch_auth_config(http: HttpClient, api_base_url: str) -> AuthConfig:
    """Fetch the OAuth client settings the Astro API publishes for the CLI.

    Falls back to the older ``<api>/auth-config`` path when the current
    ``private/v1alpha1/cli/auth-config`` one returns 404.
    """
    step = "Auth config"
    try:
        body = http.request_json(
            step,
            API_SERVER,
            "GET",
            f"{api_base_url}private/v1alpha1/cli/auth-config",
            headers=_CLIENT_IDENTIFIER_HEADER,
        )
    except ApiError as error:
        if error.status != 404:
            raise
        log.debug("auth config: current path returned 404, trying the legacy path")
        body = http.request_json(
            step, API_SERVER, "GET", f"{api_base_url}auth-config", headers=_CLIENT_IDENTIFIER_HEADER
        )

    where = f"the {API_SERVER}"
    domain_url = _require_str(step, body, "domainUrl", where)
    if not domain_url.startswith(("https://", "http://")):
        raise ApiError(f"{step} failed: domainUrl is not an http(s) URL.", step=step)
    return AuthConfig(
        client_id=_require_str(step, body, "clientId", where),
        audience=_require_str(step, body, "audience", where),
        domain_url=domain_url if domain_url.endswith("/") else domain_url + "/",
    )


def authorization_url(
    config: AuthConfig,
    *,
    redirect_uri: str,
    code_challenge: str,
    state: str,
    email: str,
    organization_id: str | None = None,
    prompt_login: bool = False,
) -> str:
    """Build the authorize URL the user opens, every value URL-encoded."""
    params = {
        "audience": config.audience,
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "login_hint": email,
        "scope": SCOPES,
        "response_type": "code",
        "response_mode": "query",
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    if organization_id:
        params["organization"] = organization_id
    if prompt_login:
        params["prompt"] = "login"
    return f"{config.domain_url}authorize?{urlencode(params)}"


def _token_set(step: str, body: Any, now: datetime) -> TokenSet:
    where = f"the {OAUTH_SERVER}"
    access_token = _require_str(step, body, "access_token", where)
    expires_in = body.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
        raise ApiError(
            f"{step} failed: the response from {where} has no valid 'expires_in' field.", step=step
        )
    refresh_token = body.get("refresh_token")
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=now + timedelta(seconds=float(expires_in)),
        scope=body.get("scope") if isinstance(body.get("scope"), str) else None,
    )


def _request_tokens(
    http: HttpClient, config: AuthConfig, step: str, grant: dict[str, str]
) -> TokenSet:
    """POST one grant to the token endpoint (RFC 6749 section 3.2) and parse the tokens."""
    # The expiry counts from before the request, so it is never later than the server's.
    now = datetime.now(timezone.utc)
    body = http.request_json(
        step,
        OAUTH_SERVER,
        "POST",
        f"{config.domain_url}oauth/token",
        form={**grant, "client_id": config.client_id},
    )
    return _token_set(step, body, now)


def exchange_code(
    http: HttpClient, config: AuthConfig, *, code: str, code_verifier: str, redirect_uri: str
) -> TokenSet:
    """Exchange an authorization code for tokens (RFC 6749 section 4.1.3, RFC 7636 section 4.5)."""
    grant = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
    }
    return _request_tokens(http, config, "Token exchange", grant)


def refresh_tokens(http: HttpClient, config: AuthConfig, refresh_token: str) -> TokenSet:
    """Trade a refresh token for new tokens (RFC 6749 section 6).

    Astro's refresh tokens may rotate: the response can carry a new refresh token
    and the old one stops working, so callers must save the result at once.
    When the response has no refresh token, the old one stays valid and is kept.
    """
    grant = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    tokens = _request_tokens(http, config, "Token refresh", grant)
    if tokens.refresh_token is None:
        tokens = replace(tokens, refresh_token=refresh_token)
    return tokens


def fetch_userinfo(http: HttpClient, config: AuthConfig, access_token: str) -> UserInfo:
    """Fetch the signed-in user's email and name from the OAuth server."""
    step = "User info"
    body = http.request_json(
        step, OAUTH_SERVER, "GET", f"{config.domain_url}userinfo", bearer=access_token
    )
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or "@" not in email:
        raise ApiError(
            f"{step} failed: the {OAUTH_SERVER} returned no email address for this account; "
            "the login cannot be saved without one.",
            step=step,
        )
    name = body.get("name")
    return UserInfo(email=email, name=name if isinstance(name, str) else None)


def is_invalid_grant(error: BaseException) -> bool:
    """Tell whether an error means the refresh token or code can never work again."""
    return isinstance(error, OAuthError) and error.oauth_error == "invalid_grant"
