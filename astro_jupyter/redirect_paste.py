"""Read the callback query out of a redirect address that the user pasted.

When the browser runs on another machine than the kernel (a remote
JupyterHub), the redirect to ``http://localhost:12345/callback?code=…`` ends
on an error page in the user's browser. The address bar still contains the code
and ``state``, so the user can paste that address back into the notebook.

Messages never quote the pasted text, because it contains the authorization code.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .callback_query import CallbackOutcome
from .errors import InvalidInputError

__all__ = ["callback_query_from_address", "check_pasted_outcome"]

# Browsers show the redirect target as the login sent it (localhost), but a
# user may have typed or copied one of the loopback addresses instead.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# A real callback address is a few hundred characters; anything far longer is
# not one, and parsing it is wasted work.
_MAX_ADDRESS_CHARS = 8192


def callback_query_from_address(address: str, redirect_uri: str) -> str:
    """Return the query string of a pasted callback address.

    The address must be ``redirect_uri`` (same scheme, a loopback host, same
    port and path, no user name) followed by a query; a fragment is dropped.
    Whether the query belongs to the login is for the caller to judge, with
    :func:`check_pasted_outcome`.

    Raises
    ------
    InvalidInputError
        The text is not an address of the login's callback, or has no query.
    """
    expected = urlsplit(redirect_uri)
    hint = (
        f"Copy the whole address from the browser tab where the sign-in ended; it starts with "
        f"{redirect_uri}?"
    )
    text = address.strip()
    # urlsplit would silently drop some control characters and inner tabs or
    # newlines, so such text is rejected before it can pass as an address.
    if (
        not text
        or len(text) > _MAX_ADDRESS_CHARS
        or any(c.isspace() for c in text)
        or not text.isprintable()
    ):
        raise InvalidInputError(f"The pasted text is not a callback address. {hint}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidInputError(f"The pasted text is not a valid address. {hint}") from None
    if (
        parts.scheme.lower() != expected.scheme
        or parts.username is not None
        or (parts.hostname or "") not in _LOOPBACK_HOSTS
        or port != expected.port
        or parts.path != expected.path
    ):
        raise InvalidInputError(f"The pasted address is not this login's callback address. {hint}")
    if not parts.query:
        raise InvalidInputError(
            f"The pasted address has no code or state: it was cut short. {hint}"
        )
    return parts.query


def check_pasted_outcome(outcome: CallbackOutcome) -> None:
    """Raise unless a pasted address's judged query can end the login.

    A code or an OAuth ``error`` with the right ``state`` can end it, as the
    browser's redirect would. Every other rejection leaves the login waiting,
    so the user can paste again.

    Raises
    ------
    InvalidInputError
        The query's ``state`` is missing, repeated or wrong, the query cannot
        be decoded, or it has no usable code and no error.
    """
    copy_hint = "copy the whole address from the address bar"
    reason = outcome.ignored_reason
    if reason == "wrong state":
        raise InvalidInputError(
            "The pasted address's state does not match this login: it is from another "
            "login attempt, or it was cut short. Copy the whole address from the tab that "
            "this login's link opened."
        )
    if reason == "repeated state":
        raise InvalidInputError(
            f"The pasted address has more than one state parameter; {copy_hint} "
            "of the tab where this login's sign-in ended, and nothing else."
        )
    if reason == "unreadable query":
        raise InvalidInputError(
            "The pasted address's query cannot be decoded (invalid percent-encoding or too "
            f"many parameters); {copy_hint}."
        )
    if reason:
        raise InvalidInputError(f"The pasted address has no state parameter; {copy_hint}.")
    if outcome.missing_code:
        raise InvalidInputError(
            "The pasted address has neither a code nor an error, or more than one code; "
            f"{copy_hint}."
        )
