"""``notebooks/remote-hub.ipynb`` run in JupyterLab as a user of a remote JupyterHub would run it.

The notebook is copied unchanged into a JupyterLab server of its own, whose
kernels get the emulator's address from the environment, as the notebook
describes. The test runs the cells one at a time in headless Chromium, types the
email into the login panel, and opens the sign-in link in a second Chromium
where ``localhost`` does not resolve. The redirect to the kernel's loopback
callback fails there, as it does on a laptop talking to a remote hub. It pastes the
failed address back into the panel and checks what the later cells print.

A screenshot of the panel after it rejected an address cut short goes to the
test's temporary folder, and also to ``$ASTRO_JUPYTER_SCREENSHOT_DIR`` when it
is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import ADA_EMAIL, ADA_WORKSPACE, read_config

from .conftest import approve_on_other_device
from .jupyter_server import JupyterServer
from .notebook_page import NotebookPage

REPO_ROOT = Path(__file__).resolve().parents[2]
REMOTE_HUB_NOTEBOOK = REPO_ROOT / "notebooks" / "remote-hub.ipynb"

# Read at import, because the hermetic_env fixture clears every ASTRO_ variable.
_SCREENSHOT_DIR = os.environ.get("ASTRO_JUPYTER_SCREENSHOT_DIR")
SCREENSHOT_DIR = Path(_SCREENSHOT_DIR).resolve() if _SCREENSHOT_DIR else None
LOGIN_TIMEOUT_MS = 30_000


@pytest.fixture
def hub_astro_home(tmp_path: Path) -> Path:
    folder = tmp_path / "hub-astro-home"
    folder.mkdir()
    return folder


@pytest.fixture
def hub_server(emulator: Any, hub_astro_home: Path) -> Iterator[JupyterServer]:
    """Yield a JupyterLab server whose kernels log in to this test's emulator.

    The shared server cannot be used, because the emulator's address reaches
    the kernels only through the server's environment.
    """
    env = {
        "ASTRO_HOME": str(hub_astro_home),
        "ASTRO_JUPYTER_API_URL": emulator.base_url,
        "ASTRO_JUPYTER_CALLBACK_PORT": "0",
    }
    with JupyterServer(extra_env=env) as server:
        yield server


def cell_index(notebook: Any, cell_id: str) -> int:
    """Return the position of the cell with ``cell_id``, counting markdown cells too."""
    ids = [cell.id for cell in notebook.cells]
    assert cell_id in ids, f"the notebook has no cell with id {cell_id!r}"
    return ids.index(cell_id)


def panel_part(page: NotebookPage, name: str) -> Locator:
    return page.page.locator(f".astro-login-panel .astro-{name}")


def keep_screenshot(page: NotebookPage, tmp_path: Path, name: str) -> None:
    path = page.screenshot(page.page.locator(".astro-login-panel"), tmp_path / f"{name}.png")
    if SCREENSHOT_DIR is not None:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT_DIR / f"{name}.png")


def test_remote_hub_notebook_runs(
    hub_server: JupyterServer,
    hub_astro_home: Path,
    browser_page: Page,
    other_device: Page,
    emulator: Any,
    ada_account: str,
    leaked_secrets: Any,
    tmp_path: Path,
) -> None:
    stored = nbformat.read(REMOTE_HUB_NOTEBOOK, as_version=4)
    shutil.copyfile(REMOTE_HUB_NOTEBOOK, hub_server.root_dir / REMOTE_HUB_NOTEBOOK.name)
    notebook = NotebookPage(browser_page, hub_server, REMOTE_HUB_NOTEBOOK.name).open()

    notebook.run_cell(cell_index(stored, "load-extension"))
    notebook.run_cell(cell_index(stored, "login"))

    # A fresh config has no saved email, so the panel shows an empty Email field.
    email = panel_part(notebook, "email").locator("input")
    expect(email).to_be_visible()
    expect(email).to_have_value("")
    email.fill(ADA_EMAIL)
    panel_part(notebook, "login").click()

    link = panel_part(notebook, "login-link")
    expect(link).to_be_visible()
    sign_in_url = link.get_attribute("href")
    assert sign_in_url is not None
    assert sign_in_url.startswith(emulator.oauth_base_url)

    landed = approve_on_other_device(other_device, sign_in_url)
    assert landed.startswith("http://localhost:")
    assert "/callback?" in landed

    # An address cut short is rejected, and the login keeps waiting for the whole one.
    address = panel_part(notebook, "paste").locator("input")
    address.fill(landed[:-4])
    panel_part(notebook, "paste-finish").click()
    expect(panel_part(notebook, "message")).to_contain_text("cut short")
    expect(address).to_have_value("")
    expect(panel_part(notebook, "card")).to_be_hidden()
    keep_screenshot(notebook, tmp_path, "panel-remote-hub-paste-rejected")

    address.fill(landed)
    panel_part(notebook, "paste-finish").click()

    card = panel_part(notebook, "card")
    expect(card).to_contain_text(f"Logged in to localhost as {ADA_EMAIL}", timeout=LOGIN_TIMEOUT_MS)
    expect(card).to_contain_text(ADA_WORKSPACE)

    whoami_index = cell_index(stored, "whoami")
    notebook.run_cell(whoami_index)
    whoami_output = notebook.output(whoami_index)
    expect(whoami_output).to_contain_text(f"Email: {ADA_EMAIL}")
    expect(whoami_output).to_contain_text("Domain: localhost")
    expect(whoami_output).to_contain_text("Credentials: a refreshable login saved in config.yaml")

    config = read_config(hub_astro_home / ".astro" / "config.yaml")
    context = config["contexts"]["localhost"]
    assert config["context"] == "localhost"
    assert context["user_email"] == ADA_EMAIL
    assert context["organization"] == ada_account
    token = context["token"].removeprefix("Bearer ")
    assert token

    api_index = cell_index(stored, "call-api")
    notebook.run_cell(api_index)
    api_output = notebook.output(api_index)
    expect(api_output).to_contain_text(f"Workspace: {ADA_WORKSPACE} (")
    expect(api_output).to_contain_text(f"Access token: {len(token)} characters")

    saved = notebook.save()
    assert saved.metadata.get("widgets"), "no widget state was saved, so the search proves little"
    saved_text = notebook.file_path.read_text(encoding="utf-8")
    assert emulator.issued_secrets()
    assert leaked_secrets(saved_text) == []
