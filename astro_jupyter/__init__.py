"""Log in to Astronomer's Astro from Jupyter, sharing one login with the Astro CLI.

``%load_ext astro_jupyter`` registers ``%astro_login``, ``%astro_logout``,
``%astro_whoami``, ``%astro_context`` and ``%astro_workspace``. In Python,
:func:`login_panel` returns the interactive login panel,
:func:`wait_for_login` waits for a login in progress, :func:`get_token`
returns the access token (refreshed when needed), :func:`session` an
authenticated session for the Astro API, and :func:`whoami` describes the
credentials in use.

Loading the extension only registers magics and their tab completion: it
sends no request, reads no file and imports neither requests, ipywidgets nor
the YAML library until they are used. Installed from a wheel, the package makes
every IPython kernel of its environment load it at start
(:mod:`astro_jupyter.autoload`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "get_token",
    "load_ipython_extension",
    "login_panel",
    "session",
    "wait_for_login",
    "whoami",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .api_session import AstroSession
    from .credentials import Identity
    from .login_types import LoginResult
    from .panel import LoginPanel


def get_token(domain: str | None = None) -> str:
    """Return the access token of the current or given Astro context, refreshed if needed.

    See :func:`astro_jupyter.credentials.get_token`.
    """
    from .credentials import get_token as _get_token

    return _get_token(domain)


def session(domain: str | None = None) -> AstroSession:
    """Return a ``requests`` session for the Astro API of the current or given context.

    See :class:`astro_jupyter.api_session.AstroSession`.
    """
    from .api_session import session as _session

    return _session(domain)


def whoami(domain: str | None = None) -> Identity:
    """Describe the credentials in use for the current or given Astro context.

    See :func:`astro_jupyter.credentials.whoami`.
    """
    from .credentials import whoami as _whoami

    return _whoami(domain)


def login_panel(
    domain: str | None = None,
    *,
    email: str | None = None,
    mode: str = "browser",
    timeout: float | None = None,
) -> LoginPanel:
    """Return the interactive login panel that ``%astro_login`` shows.

    Display it as a cell's last value. It starts the login at once when the
    account email is known (given, or saved in the context) and ``mode`` is
    ``"browser"`` or ``"link"``. Otherwise it waits for the user's input. The
    login runs in the background: use :func:`wait_for_login` in a later cell
    to wait for it.

    Parameters
    ----------
    domain
        The Astro domain; default: ``$ASTRO_DOMAIN``, else the current context.
    email
        The account email; default: the context's saved one.
    mode
        The way in selected at first: ``"browser"``, ``"link"`` or ``"token"``.
    timeout
        Seconds to wait for the browser; default: ``AstroLogin.callback_timeout_s``.
    """
    from .panel import new_login_panel

    return new_login_panel(domain, email=email, mode=mode, timeout=timeout)


def wait_for_login(timeout: float | None = None) -> LoginResult:
    """Wait for the login started last in this kernel and return its result.

    Raises ``LoginTimeoutError`` when the login is still running after
    ``timeout`` seconds (it goes on), the error that ended the login, or
    ``NotLoggedInError`` when no login was started in this kernel. While this
    waits, the kernel handles no widget clicks, so only the browser's own
    return to the callback (or the loopback port) can finish the login.
    """
    from .settings import AstroLogin

    return AstroLogin.instance().logins.wait(timeout)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the ``AstroLogin`` settings with an IPython shell."""
    from .completion import register_completers
    from .context_magics import ContextMagics
    from .login_magics import AstroMagics
    from .settings import AstroLogin

    already_created = AstroLogin.initialized()
    settings = AstroLogin.instance(parent=ipython)
    if already_created:
        # get_token() may have created the settings before the extension was
        # loaded; give them the shell's configuration now.
        settings.update_config(ipython.config)
    if settings not in ipython.configurables:
        ipython.configurables.append(settings)
    ipython.register_magics(AstroMagics(ipython, settings))
    ipython.register_magics(ContextMagics(ipython, settings))
    register_completers(ipython)
