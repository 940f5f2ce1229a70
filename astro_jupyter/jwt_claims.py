"""Reading the claims of a JWT-shaped access token without trusting them.

A token pasted for token login is checked for its shape, and its ``exp`` is
read so that the stored expiry is right. The signature is not verified here,
because the Astro API verifies every request it receives. Nothing read from the
claims is used to decide who the user is.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Any

from .errors import InvalidInputError

__all__ = ["expiry_of", "read_claims"]


def _decode_segment(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    raw = base64.urlsafe_b64decode(padded.encode("ascii"))
    return json.loads(raw)


def read_claims(token: str) -> dict[str, Any]:
    """Return the payload of a JWT-shaped token.

    Raises
    ------
    InvalidInputError
        The token is empty or is not three base64url segments with JSON header
        and payload. The message never repeats the token.
    """
    if not token or not token.strip():
        raise InvalidInputError("The token is empty; copy a token from the Astro UI and try again.")
    if any(character.isspace() or not character.isprintable() for character in token.strip()):
        raise InvalidInputError(
            "The token contains spaces, line breaks or control characters; copy the access "
            "token alone, on one line."
        )
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise InvalidInputError(
            "The token is not a JWT (expected three dot-separated parts); "
            "copy the whole access token from the Astro UI."
        )
    try:
        header = _decode_segment(parts[0])
        payload = _decode_segment(parts[1])
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidInputError(
            "The token is not a JWT (its header or payload is not base64url JSON); "
            "copy the whole access token from the Astro UI."
        ) from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise InvalidInputError("The token is not a JWT (its header or payload is not an object).")
    return payload


def expiry_of(claims: dict[str, Any]) -> datetime | None:
    """Return the ``exp`` claim as an aware UTC datetime, or None when absent or invalid."""
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(exp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
