"""A throwaway Astro config folder and a real login to the emulator, for the benchmarks.

While a benchmark runs, ``HOME`` and ``ASTRO_HOME`` point at a temporary
folder and every ``ASTRO_*`` variable is unset, so the user's own
``~/.astro/config.yaml`` is neither read nor written, and processes started
meanwhile inherit the same isolation. All traffic goes to an emulator on
127.0.0.1.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from astro_jupyter.config_store import ConfigStore
from astro_jupyter.emulator import Emulator, follow_login_link
from astro_jupyter.login_flow import LoginFlow, LoginMode, LoginOptions

__all__ = ["isolated_astro_home", "log_in"]

LOGIN_TIMEOUT_S = 30.0
_LOOPBACK_HOSTS = "127.0.0.1,localhost,::1"


@contextmanager
def isolated_astro_home() -> Iterator[Path]:
    """Point ``HOME`` and ``ASTRO_HOME`` at a new temporary folder and yield it.

    The environment is restored and the folder deleted on exit.
    """
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="astro-jupyter-bench-") as folder:
        for name in list(os.environ):
            if name.startswith("ASTRO_"):
                del os.environ[name]
        os.environ["HOME"] = folder
        os.environ["ASTRO_HOME"] = folder
        # requests sends loopback traffic through a configured proxy unless NO_PROXY lists it.
        os.environ["NO_PROXY"] = _LOOPBACK_HOSTS
        os.environ["no_proxy"] = _LOOPBACK_HOSTS
        try:
            yield Path(folder)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def log_in(emulator: Emulator, store: ConfigStore, email: str) -> None:
    """Log in to the emulator by link, playing the browser, and save a refreshable login.

    Raises
    ------
    RuntimeError
        The login ended without a refresh token.
    AstroJupyterError
        The login failed.
    """
    options = LoginOptions(domain="localhost", api_base_url=emulator.base_url, callback_port=0)
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=email)
    browsers: list[threading.Thread] = []

    def open_link(url: str) -> None:
        browser = threading.Thread(target=follow_login_link, args=(url,), daemon=True)
        browsers.append(browser)
        browser.start()

    flow.subscribe(lambda event: event.authorize_url and open_link(event.authorize_url))
    result = flow.start().wait(LOGIN_TIMEOUT_S)
    for browser in browsers:
        browser.join(LOGIN_TIMEOUT_S)
    if not result.refreshable:
        raise RuntimeError("The emulator's login returned no refresh token.")
