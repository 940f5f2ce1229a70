"""Launch Debian's Chromium headless through Playwright, isolated from the user's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright

__all__ = ["CHROMIUM_ARGS", "CHROMIUM_PATH", "launch_chromium", "require_chromium"]

# Debian's chromium package. Playwright's own browser builds are not used, so
# `playwright install`, which downloads a browser outside any package manager, is never needed.
CHROMIUM_PATH = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # Without these, Chromium keeps trying to reach Google's services.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    # The server is on loopback, so a proxy from the environment must not be used.
    "--no-proxy-server",
]


def require_chromium(path: Path = CHROMIUM_PATH) -> None:
    """Fail the calling test, with the command that installs Chromium, when ``path`` is missing.

    The tests fail rather than skip, so a machine without Chromium cannot pass
    the suite by leaving the browser tests out.
    """
    if not path.exists():
        pytest.fail(
            f"Chromium is missing at {path}; install it with: apt-get install -y chromium",
            pytrace=False,
        )


def launch_chromium(
    playwright: Playwright, home: Path, extra_args: list[str] | None = None
) -> Browser:
    """Launch headless Chromium with ``home`` as its ``HOME``.

    Playwright gives the browser a fresh temporary profile and removes it on
    close. ``HOME`` is replaced too, because Chromium keeps its certificate
    database there. ``extra_args`` go after :data:`CHROMIUM_ARGS`.
    """
    require_chromium()
    env = dict(os.environ)
    env["HOME"] = str(home)
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        env.pop(name, None)
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM_PATH), args=[*CHROMIUM_ARGS, *(extra_args or [])], env=env
    )
