"""Checking an email address before it is sent anywhere."""

from __future__ import annotations

from .errors import InvalidInputError, excerpt

__all__ = ["validate_email"]

# RFC 5321 section 4.5.3.1 limits a path to 256 octets, so an address to 254.
_MAX_EMAIL_OCTETS = 254


def validate_email(text: str) -> str:
    """Return the address stripped of surrounding spaces, or raise if it is not one.

    The check is deliberately loose (one ``@``, a non-empty local part, a
    domain with a dot, at most 254 UTF-8 bytes, only printable characters and
    no spaces): the sign-in page is the judge of real addresses, and unicode
    and plus-addressing must pass. Unprintable characters (controls, lone
    surrogates, invisible format characters such as U+202E) are rejected
    because they could not be URL-encoded or would hide what is sent.

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
        and email.isprintable()
        and not any(ch.isspace() for ch in email)
        and len(email.encode("utf-8")) <= _MAX_EMAIL_OCTETS
    )
    if not well_formed:
        raise InvalidInputError(
            f"Invalid email {excerpt(email)!r}: expected an address such as name@example.com."
        )
    return email
