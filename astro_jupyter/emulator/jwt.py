"""HS256 JSON Web Tokens (RFC 7519) signed with the emulator's random key.

Only what the emulator needs: encode a claims dict, and decode a token after
checking its signature. Claims such as ``exp`` and ``aud`` are checked by the
caller. No other algorithm is accepted, so a token with ``"alg": "none"`` fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

__all__ = ["InvalidTokenError", "decode", "encode"]

_HEADER = {"alg": "HS256", "typ": "JWT", "kid": "astro-emulator"}
_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class InvalidTokenError(ValueError):
    """The token is not a JWT that this key signed."""


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not text or any(c not in _B64URL_CHARS for c in text):
        raise InvalidTokenError("JWT segment is not base64url.")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, signing_input: bytes) -> str:
    return _b64url_encode(hmac.new(key, signing_input, hashlib.sha256).digest())


def encode(claims: dict[str, object], key: bytes) -> str:
    """Return the compact serialisation ``header.payload.signature`` of ``claims``."""
    header = _b64url_encode(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    return f"{header}.{payload}.{_sign(key, signing_input)}"


def decode(token: str, key: bytes) -> dict[str, object]:
    """Return the claims of ``token`` after checking its header and HS256 signature.

    Raises
    ------
    InvalidTokenError
        The token is malformed, uses another algorithm or has a wrong signature.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("A JWT has three dot-separated segments.")
    header_text, payload_text, signature = parts
    expected = _sign(key, f"{header_text}.{payload_text}".encode("ascii", "replace"))
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
        raise InvalidTokenError("JWT signature does not match.")
    try:
        header = json.loads(_b64url_decode(header_text))
        claims = json.loads(_b64url_decode(payload_text))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidTokenError("JWT header or payload is not JSON.") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidTokenError("JWT algorithm is not HS256.")
    if not isinstance(claims, dict):
        raise InvalidTokenError("JWT payload is not a JSON object.")
    return claims
