"""PKCE (RFC 7636) verifier and challenge, and the OAuth ``state`` value.

All randomness comes from :mod:`secrets`. The verifier is a secret: it is kept
out of reprs and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field

__all__ = ["PkcePair", "new_pkce_pair", "new_state", "s256_challenge"]

# RFC 7636 section 4.1 allows 43 to 128 characters; 64 random bytes give 86.
_VERIFIER_BYTES = 64
_STATE_BYTES = 32


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def s256_challenge(verifier: str) -> str:
    """Return the S256 code challenge of a verifier (RFC 7636 section 4.2)."""
    return _base64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class PkcePair:
    """A PKCE code verifier with its S256 challenge."""

    verifier: str = field(repr=False)
    challenge: str

    def __repr__(self) -> str:
        return f"PkcePair(verifier=<hidden>, challenge={self.challenge!r})"


def new_pkce_pair() -> PkcePair:
    """Create a fresh verifier and its challenge."""
    verifier = _base64url(secrets.token_bytes(_VERIFIER_BYTES))
    return PkcePair(verifier=verifier, challenge=s256_challenge(verifier))


def new_state() -> str:
    """Create an unguessable OAuth ``state`` value (RFC 6749 section 10.12)."""
    return secrets.token_urlsafe(_STATE_BYTES)
