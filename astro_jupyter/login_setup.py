"""Turn what a view was given (domain, timeout) into the options of one login.

The magic's text form and the login panel resolve their options the same way
here: the domain from the argument, ``$ASTRO_DOMAIN`` or the current context,
and the timeouts and port from the :class:`~astro_jupyter.settings.AstroLogin`
settings.
"""

from __future__ import annotations

from .config_store import ConfigStore
from .errors import InvalidInputError
from .login_types import LoginOptions
from .settings import MAX_CALLBACK_TIMEOUT_S, AstroLogin

__all__ = ["login_options", "saved_email"]


def login_options(
    settings: AstroLogin,
    store: ConfigStore,
    domain: str | None = None,
    timeout_s: float | None = None,
    *,
    timeout_name: str = "--timeout",
) -> LoginOptions:
    """Resolve the options of a login to ``domain`` with the given callback timeout.

    ``timeout_name`` is how the caller's user passed the timeout, for the error message.

    Raises
    ------
    InvalidInputError
        The domain is malformed or not allowed with ``api_url``, or the
        timeout is out of range.
    """
    resolved = settings.resolve_domain(
        domain or store.current_domain() or settings.default_domain()
    )
    timeout_s = settings.callback_timeout_s if timeout_s is None else timeout_s
    if not 0 < timeout_s <= MAX_CALLBACK_TIMEOUT_S:
        raise InvalidInputError(
            f"{timeout_name} must be more than 0 and at most {MAX_CALLBACK_TIMEOUT_S:g} seconds, "
            f"not {timeout_s:g}."
        )
    return LoginOptions(
        domain=resolved,
        api_base_url=settings.api_base_url_for(resolved),
        callback_port=settings.callback_port,
        callback_timeout_s=timeout_s,
        http_timeout_s=settings.http_timeout_s,
    )


def saved_email(store: ConfigStore, domain: str) -> str | None:
    """Return the account email saved in the context of ``domain``, if any."""
    saved = store.read_context(domain)
    return saved.user_email if saved is not None and saved.user_email else None
