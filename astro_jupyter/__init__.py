"""Log in to Astronomer's Astro from Jupyter, sharing one login with the Astro CLI.

``%load_ext astro_jupyter`` registers ``%astro_login``, ``%astro_logout``,
``%astro_whoami``, ``%astro_context`` and ``%astro_workspace``. In Python,
:func:`get_token` returns the access token (refreshed when needed),
:func:`session` an authenticated session for the Astro API, and :func:`whoami`
describes the credentials in use.

Loading the extension only registers magics: it sends no request, reads no
file and imports neither requests nor the YAML library until they are used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["get_token", "load_ipython_extension", "session", "whoami"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .api_session import AstroSession
    from .credentials import Identity


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


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the ``AstroLogin`` settings with an IPython shell."""
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
