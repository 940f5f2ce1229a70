"""Authorization codes, access, id and refresh tokens of the emulated OAuth server.

The store issues and checks every credential: single-use authorization codes
bound to a PKCE challenge, JWT access and id tokens, and rotating refresh
tokens grouped in families. One lock serialises every change, so concurrent
refreshes with one token are judged strictly one after the other. The store
does not parse HTTP requests and never logs a credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field

from . import jwt
from .state import User

__all__ = [
    "CODE_TTL_S",
    "InvalidAccessTokenError",
    "TokenRequestError",
    "TokenStore",
    "s256_challenge",
]

# RFC 6749 section 4.1.2 recommends a code lifetime of at most 10 minutes.
CODE_TTL_S = 600.0
ID_TOKEN_TTL_S = 36000
MINTED_SCOPE = "openid profile email"

# RFC 7636 section 4.1: a code_verifier is 43 to 128 unreserved characters.
_VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def s256_challenge(code_verifier: str) -> str:
    """Return the S256 code_challenge of a verifier (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class TokenRequestError(Exception):
    """A token request failed with an OAuth error code (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class InvalidAccessTokenError(Exception):
    """A bearer token is missing, malformed, expired, revoked or not an access token."""


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    user: User
    expires_at_monotonic: float
    used: bool = False
    family_id: str | None = None


@dataclass
class _Family:
    """One login: the tokens issued for one code and its refreshes, revoked together."""

    id: str
    user: User
    client_id: str
    scope: str
    current_refresh_token: str | None = field(default=None, repr=False)
    revoked: bool = False


@dataclass
class _JwtRecord:
    kind: str
    family_id: str | None
    revoked: bool = False


class TokenStore:
    """Thread-safe issuer and checker of the emulator's OAuth credentials.

    Parameters
    ----------
    issuer
        The ``iss`` claim, the OAuth server's base URL.
    audience
        The ``aud`` claim of access tokens.
    access_token_ttl_s
        Lifetime of access tokens issued by the token endpoint, in seconds.
    """

    def __init__(self, *, issuer: str, audience: str, access_token_ttl_s: int) -> None:
        self.issuer = issuer
        self.audience = audience
        self.access_token_ttl_s = access_token_ttl_s
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._families: dict[str, _Family] = {}
        self._family_by_refresh_token: dict[str, str] = {}
        self._jwts: dict[str, _JwtRecord] = {}
        self._secrets: set[str] = set()

    def issue_code(
        self, *, client_id: str, redirect_uri: str, code_challenge: str, scope: str, user: User
    ) -> str:
        """Return a new single-use authorization code for an approved request."""
        code = secrets.token_urlsafe(32)
        expires_at = time.monotonic() + CODE_TTL_S
        with self._lock:
            self._codes[code] = _Code(
                client_id, redirect_uri, code_challenge, scope, user, expires_at
            )
            self._secrets.add(code)
        return code

    def exchange_code(
        self, *, client_id: str, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, object]:
        """Redeem an authorization code and return the token response.

        Raises
        ------
        TokenRequestError
            ``invalid_request`` when the verifier is missing or malformed.
            ``invalid_grant`` when the code is unknown, used or expired, when
            the client or redirect URI differs from the authorize request, or
            when the verifier's S256 hash is not the challenge.
        """
        with self._lock:
            if code_verifier:
                self._secrets.add(code_verifier)
            record = self._codes.get(code)
            if record is None:
                raise TokenRequestError("invalid_grant", "Unknown authorization code.")
            if record.used:
                # RFC 6749 section 4.1.2: deny a reused code and revoke what it issued.
                self._revoke_family(record.family_id)
                raise TokenRequestError(
                    "invalid_grant",
                    "Authorization code was already used; the tokens issued for it are revoked.",
                )
            if time.monotonic() >= record.expires_at_monotonic:
                raise TokenRequestError("invalid_grant", "Authorization code expired.")
            if record.client_id != client_id:
                raise TokenRequestError("invalid_grant", "Code was issued to another client.")
            if record.redirect_uri != redirect_uri:
                raise TokenRequestError(
                    "invalid_grant", "redirect_uri differs from the one of the authorize request."
                )
            _check_verifier(code_verifier, record.code_challenge)

            record.used = True
            family = _Family(secrets.token_hex(16), record.user, client_id, record.scope)
            self._families[family.id] = family
            record.family_id = family.id
            return self._issue_locked(family)

    def refresh(self, *, client_id: str, refresh_token: str) -> dict[str, object]:
        """Rotate a refresh token and return the token response.

        Each refresh token works once. Presenting a spent one revokes its whole
        family, every access, id and refresh token descended from the same
        code, because the server cannot tell whether the client or a thief
        has the newer token.

        Raises
        ------
        TokenRequestError
            ``invalid_grant`` for an unknown, spent or revoked refresh token, or
            one issued to another client.
        """
        with self._lock:
            family_id = self._family_by_refresh_token.get(refresh_token)
            if family_id is None:
                raise TokenRequestError("invalid_grant", "Unknown refresh token.")
            family = self._families[family_id]
            if family.revoked:
                raise TokenRequestError("invalid_grant", "Refresh token was revoked.")
            if family.client_id != client_id:
                raise TokenRequestError(
                    "invalid_grant", "Refresh token was issued to another client."
                )
            if refresh_token != family.current_refresh_token:
                self._revoke_family(family.id)
                raise TokenRequestError(
                    "invalid_grant",
                    "Refresh token was already used; every token of its login is now revoked.",
                )
            return self._issue_locked(family)

    def mint_access_token(self, user: User, ttl_s: int) -> str:
        """Return an access token of ``user`` that no refresh token belongs to."""
        with self._lock:
            return self._sign_locked("access", None, user, MINTED_SCOPE, ttl_s)

    def verify_access_token(self, token: str) -> dict[str, object]:
        """Return the claims of a valid access token.

        Raises
        ------
        InvalidAccessTokenError
            The token is not a JWT access token of this emulator, or it is
            expired or revoked. The message names the reason.
        """
        try:
            claims = jwt.decode(token, self._key)
        except jwt.InvalidTokenError as exc:
            raise InvalidAccessTokenError("The access token is not valid.") from exc
        with self._lock:
            record = self._jwts.get(str(claims.get("jti")))
            if record is None or record.kind != "access" or claims.get("aud") != self.audience:
                raise InvalidAccessTokenError("The token is not an access token of this API.")
            if self._is_revoked_locked(record):
                raise InvalidAccessTokenError("The access token was revoked.")
        expires_at = claims.get("exp")
        if not isinstance(expires_at, int) or time.time() >= expires_at:
            raise InvalidAccessTokenError("The access token expired.")
        return claims

    def revoke(self, token: str) -> None:
        """Revoke a token; a token issued by a login revokes that whole login.

        Raises
        ------
        KeyError
            The token was not issued by this emulator.
        """
        with self._lock:
            family_id, record = self._lookup_locked(token)
            if family_id is not None:
                self._revoke_family(family_id)
            elif record is not None:
                record.revoked = True

    def revoked(self, token: str) -> bool:
        """Return whether a token was revoked.

        A refresh token that was only rotated is spent, not revoked.

        Raises
        ------
        KeyError
            The token was not issued by this emulator.
        """
        with self._lock:
            family_id, record = self._lookup_locked(token)
            if family_id is not None:
                return self._families[family_id].revoked
            return record is not None and record.revoked

    def issued_secrets(self) -> set[str]:
        """Return every code and token issued and every code_verifier received."""
        with self._lock:
            return set(self._secrets)

    def _issue_locked(self, family: _Family) -> dict[str, object]:
        scopes = family.scope.split()
        access_token = self._sign_locked(
            "access", family, family.user, family.scope, self.access_token_ttl_s
        )
        response: dict[str, object] = {
            "access_token": access_token,
            "expires_in": self.access_token_ttl_s,
            "token_type": "Bearer",
            "scope": family.scope,
        }
        if "openid" in scopes:
            response["id_token"] = self._sign_locked(
                "id", family, family.user, family.scope, ID_TOKEN_TTL_S
            )
        # As with Auth0, a refresh token comes only with the offline_access scope.
        if "offline_access" in scopes:
            refresh_token = "v1." + secrets.token_urlsafe(48)
            family.current_refresh_token = refresh_token
            self._family_by_refresh_token[refresh_token] = family.id
            self._secrets.add(refresh_token)
            response["refresh_token"] = refresh_token
        return response

    def _sign_locked(
        self, kind: str, family: _Family | None, user: User, scope: str, ttl_s: int
    ) -> str:
        jwt_id = secrets.token_hex(16)
        issued_at = int(time.time())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": user.id,
            "iat": issued_at,
            "exp": issued_at + int(ttl_s),
            "jti": jwt_id,
        }
        if kind == "access":
            claims.update(aud=self.audience, scope=scope)
        else:
            if family is None:
                raise ValueError("Internal error: an id token is issued only within a login.")
            # An OpenID Connect id token's audience is the client id.
            claims.update(aud=family.client_id, email=user.email, name=user.full_name)
        token = jwt.encode(claims, self._key)
        self._jwts[jwt_id] = _JwtRecord(kind, family.id if family else None)
        self._secrets.add(token)
        return token

    def _lookup_locked(self, token: str) -> tuple[str | None, _JwtRecord | None]:
        family_id = self._family_by_refresh_token.get(token)
        if family_id is not None:
            return family_id, None
        try:
            claims = jwt.decode(token, self._key)
        except jwt.InvalidTokenError:
            claims = {}
        record = self._jwts.get(str(claims.get("jti")))
        if record is None:
            raise KeyError("The token was not issued by this emulator.")
        return record.family_id, record

    def _is_revoked_locked(self, record: _JwtRecord) -> bool:
        if record.revoked:
            return True
        return record.family_id is not None and self._families[record.family_id].revoked

    def _revoke_family(self, family_id: str | None) -> None:
        if family_id is not None:
            self._families[family_id].revoked = True


def _check_verifier(code_verifier: str, code_challenge: str) -> None:
    if not code_verifier:
        raise TokenRequestError("invalid_request", "code_verifier is missing.")
    if not _VERIFIER_PATTERN.match(code_verifier):
        raise TokenRequestError(
            "invalid_request", "code_verifier must be 43 to 128 unreserved characters."
        )
    # RFC 7636 section 4.6: BASE64URL(SHA256(code_verifier)) must equal code_challenge.
    if not hmac.compare_digest(s256_challenge(code_verifier), code_challenge):
        raise TokenRequestError("invalid_grant", "code_verifier does not match code_challenge.")
