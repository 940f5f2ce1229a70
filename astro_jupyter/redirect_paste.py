"""Read the callback query out of a redirect address that the user pasted.

When the browser runs on another machine than the kernel (a remote
JupyterHub), the redirect to ``http://localhost:12345/callback?code=…`` ends
on an error page in the user's browser. The address bar still contains the code
and ``state``, so the user can paste that address back into the notebook.

Messages never quote the pasted text, because it contains the authorization code.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import InvalidInputError

__all__ = ["callback_query_from_address"]

# Browsers show the redirect target as the login sent it (localhost), but a
# user may have typed or copied one of the loopback addresses instead.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# A real callback address is a few hundred characters; anything far longer is
# not one, and parsing it is wasted work.
_MAX_ADDRESS_CHARS = 8192


def callback_query_from_address(address: str, redirect_uri: str) -> str:
    """Return the query string of a pasted callback address.

    The address must be ``redirect_uri`` (same scheme, a loopback host, same
    port and path) followed by a query. Whether the query belongs to the
    login is for the caller to judge.

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
    if not text or len(text) > _MAX_ADDRESS_CHARS or any(c.isspace() for c in text):
        raise InvalidInputError(f"The pasted text is not a callback address. {hint}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidInputError(f"The pasted text is not a valid address. {hint}") from None
    if (
        parts.scheme.lower() != expected.scheme
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
