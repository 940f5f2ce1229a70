"""Log in to Astronomer's Astro from Jupyter, sharing one login with the Astro CLI.

``%load_ext astro_jupyter`` registers the ``%astro_login`` magic. In Python,
:func:`get_token` returns the stored access token (refreshed when needed) and
:func:`whoami` describes the stored login.

Loading the extension only registers magics: it sends no request, reads no
file and imports neither requests nor the YAML library until they are used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["get_token", "load_ipython_extension", "whoami"]

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .credentials import Identity


def get_token(domain: str | None = None) -> str:
    """Return the access token of the current or given Astro context, refreshed if needed.

    See :func:`astro_jupyter.credentials.get_token`.
    """
    from .credentials import get_token as _get_token

    return _get_token(domain)


def whoami(domain: str | None = None) -> Identity:
    """Describe the stored login of the current or given Astro context.

    See :func:`astro_jupyter.credentials.whoami`.
    """
    from .credentials import whoami as _whoami

    return _whoami(domain)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the ``AstroLogin`` settings with an IPython shell."""
    from .magics import AstroMagics
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
