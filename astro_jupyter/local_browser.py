"""Opening the sign-in page in a browser on the kernel's own machine, when that makes sense.

A kernel on a remote JupyterHub or a headless server must not open a browser,
because it would open on the server, where the user cannot see it. A console
browser such as lynx must never start inside a kernel, where it would hang
waiting for a terminal. In those cases the caller only shows the link.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import webbrowser
from collections.abc import Mapping

__all__ = ["browser_unavailable_reason", "open_in_browser"]

log = logging.getLogger(__name__)

# Browsers that take over the terminal; webbrowser registers them when TERM is set.
_CONSOLE_BROWSERS = frozenset({"lynx", "w3m", "links", "links2", "elinks", "www-browser", "browsh"})


def _console_browser_name(browser: webbrowser.BaseBrowser) -> str | None:
    if not isinstance(browser, webbrowser.GenericBrowser):
        return None
    command = browser.args[0] if getattr(browser, "args", None) else browser.name
    name = os.path.basename(str(command))
    return name if name in _CONSOLE_BROWSERS else None


def browser_unavailable_reason(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """Return why no browser should be opened from this kernel, or None when one can be.

    The reason is a phrase for the user, such as ``"this kernel runs on a
    JupyterHub server"``.
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform

    if environ.get("JUPYTERHUB_API_URL") or environ.get("JUPYTERHUB_USER"):
        return "this kernel runs on a JupyterHub server, not on your computer"
    if platform.startswith("linux") or "bsd" in platform:
        if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
            return "this machine has no graphical display"
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return "no web browser is installed on the kernel's machine"
    console = _console_browser_name(browser)
    if console:
        return f"the only browser found, {console}, runs in a terminal"
    return None


def open_in_browser(url: str) -> None:
    """Open ``url`` in the default browser from a daemon thread.

    Some launchers wait for the browser to exit, so the kernel must not wait
    for them. Failures are logged, not raised: the link is shown anyway.
    """

    def _open() -> None:
        try:
            if not webbrowser.open(url, new=2):
                log.warning("the web browser did not open the sign-in page")
        except Exception:
            log.warning("opening the web browser failed", exc_info=True)

    threading.Thread(target=_open, name="astro-login-browser", daemon=True).start()
