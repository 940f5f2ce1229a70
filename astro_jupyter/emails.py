"""Checking an email address before it is sent anywhere."""

from __future__ import annotations

from .errors import InvalidInputError, excerpt

__all__ = ["validate_email"]

# RFC 5321 section 4.5.3.1 limits a path to 256 octets, so an address to 254.
_MAX_EMAIL_LENGTH = 254


def validate_email(text: str) -> str:
    """Return the address stripped of surrounding spaces, or raise if it is not one.

    The check is deliberately loose (one ``@``, a non-empty local part, a
    domain with a dot, no spaces or control characters): the sign-in page is
    the judge of real addresses, and unicode and plus-addressing must pass.

    Raises
    ------
    InvalidInputError
        The text is empty or is not shaped like an address.
    """
    email = (text or "").strip()
    if not email:
        raise InvalidInputError("The email is empty; pass your Astro account email with -e.")
    local, at, domain = email.rpartition("@")
    well_formed = (
        at
        and local
        and "@" not in local
        and "." in domain.strip(".")
        and not domain.startswith(".")
        and not domain.endswith(".")
        and len(email) <= _MAX_EMAIL_LENGTH
        and not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in email)
    )
    if not well_formed:
        raise InvalidInputError(
            f"Invalid email {excerpt(email)!r}: expected an address such as name@example.com."
        )
    return email
