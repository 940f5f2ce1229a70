"""The extension that every IPython kernel of the environment loads at start.

The wheel installs ``etc/ipython/ipython_kernel_config.json`` into the
environment, which adds this module to ``IPKernelApp.extra_extensions``. Loading
it registers the magics as ``%load_ext astro_jupyter`` does, unless
``$ASTRO_JUPYTER_AUTOLOAD`` turns it off. An explicit ``%load_ext astro_jupyter``
loads the extension whatever the variable's value.

The extension is not recorded as loaded under the name ``astro_jupyter``, so a
notebook that still runs ``%load_ext astro_jupyter`` registers the magics again
silently instead of printing IPython's "already loaded" message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["AUTOLOAD_ENV", "autoload_enabled", "load_ipython_extension"]

AUTOLOAD_ENV = "ASTRO_JUPYTER_AUTOLOAD"

_OFF_VALUES = frozenset({"0", "false", "no", "off"})
_ON_VALUES = frozenset({"", "1", "true", "yes", "on"})

log = logging.getLogger(__name__)


def autoload_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Tell whether kernels should load the extension at start.

    Only ``0``, ``false``, ``no`` and ``off`` (any case) turn it off. Another
    unknown value leaves it on and logs a warning, because a kernel starting
    has no cell to show an error in.
    """
    value = environ.get(AUTOLOAD_ENV, "").strip().lower()
    if value in _OFF_VALUES:
        return False
    if value not in _ON_VALUES:
        log.warning(
            "ignoring $%s=%r: expected 0, false, no or off to turn autoload off, "
            "or 1, true, yes or on",
            AUTOLOAD_ENV,
            value,
        )
    return True


def load_ipython_extension(ipython: Any) -> None:
    """Register the astro_jupyter magics unless ``$ASTRO_JUPYTER_AUTOLOAD`` turns autoload off."""
    if not autoload_enabled():
        log.debug("not loading astro_jupyter: $%s turns autoload off", AUTOLOAD_ENV)
        return

    from . import load_ipython_extension as load_astro_jupyter

    load_astro_jupyter(ipython)
