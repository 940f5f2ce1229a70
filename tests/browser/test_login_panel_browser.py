"""The login panel in a real JupyterLab 4 and Notebook 7, driven through headless Chromium.

Each test writes a notebook whose first cell points the kernel at this test's
emulator and config folder, and runs it in the browser. Then it acts as the
user: it clicks the panel's link, approves or denies on the emulator's page,
or pastes an address or a token. Then it checks what the panel shows and what
``config.yaml`` contains, saves the notebook with widget state, and searches
the saved file for every secret the emulator handled.

Screenshots of the panel go to the test's temporary folder, and also to
``$ASTRO_JUPYTER_SCREENSHOT_DIR`` when it is set (the docs keep them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import ADA_EMAIL, ADA_ORGANIZATION, ADA_WORKSPACE, port_is_free, read_config

from .conftest import approve_on_other_device
from .notebook_page import LAB, NOTEBOOK7, NotebookPage, UserInterface

# Read at import, because the hermetic_env fixture clears every ASTRO_ variable.
_SCREENSHOT_DIR = os.environ.get("ASTRO_JUPYTER_SCREENSHOT_DIR")
SCREENSHOT_DIR = Path(_SCREENSHOT_DIR).resolve() if _SCREENSHOT_DIR else None
LOGIN_TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def setup_cell(emulator: Any, astro_home: Path, callback_port: int) -> str:
    settings = {
        "ASTRO_HOME": str(astro_home),
        "ASTRO_JUPYTER_API_URL": emulator.base_url,
        "ASTRO_JUPYTER_CALLBACK_PORT": str(callback_port),
    }
    return f"import os\nos.environ.update({json.dumps(settings)})\n%load_ext astro_jupyter"


@pytest.fixture
def astro_home(astro_config_path: Path) -> Path:
    return astro_config_path.parent.parent


@pytest.fixture
def callback_port() -> int:
    return free_port()


@pytest.fixture
def open_login_notebook(
    write_notebook: Any,
    open_notebook: Any,
    emulator: Any,
    ada_account: str,
    astro_home: Path,
    callback_port: int,
) -> Any:
    """Return a function that opens a notebook with the set-up cell and one login cell, run."""

    def open_and_run(
        login_line: str, ui: UserInterface = LAB, later_cells: tuple[str, ...] = ()
    ) -> NotebookPage:
        cells = [setup_cell(emulator, astro_home, callback_port), login_line, *later_cells]
        notebook = open_notebook(write_notebook(cells), ui=ui)
        notebook.run_all(wait=not later_cells)
        expect(panel(notebook)).to_be_visible()
        return notebook

    return open_and_run


def panel(notebook: NotebookPage) -> Locator:
    return notebook.page.locator(".astro-login-panel")


def panel_part(notebook: NotebookPage, name: str) -> Locator:
    return panel(notebook).locator(f".astro-{name}")


def keep_screenshot(notebook: NotebookPage, tmp_path: Path, name: str) -> None:
    path = notebook.screenshot(panel(notebook), tmp_path / f"{name}.png")
    if SCREENSHOT_DIR is not None:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOT_DIR / f"{name}.png")


def assert_saved_without_secrets(notebook: NotebookPage, emulator: Any) -> None:
    """Save the notebook with widget state and search the file for every issued secret."""
    saved = notebook.save()
    text = notebook.file_path.read_text(encoding="utf-8")

    widget_state = saved.metadata.get("widgets", {})
    assert widget_state, "the saved notebook has no widget state, so the search proves nothing"
    assert "astro-login-panel" in text
    secrets = emulator.issued_secrets()
    assert secrets, "the emulator issued no secret, so the search proves nothing"
    leaked = [f"{secret[:4]}... ({len(secret)} characters)" for secret in secrets if secret in text]
    assert leaked == []


def approve_in_popup(notebook: NotebookPage, *, approve: bool = True) -> Page:
    """Click the panel's sign-in button and decide on the emulator's page in the new tab."""
    with notebook.page.context.expect_page() as new_tab:
        panel_part(notebook, "open-tab").click()
    tab = new_tab.value
    tab.wait_for_load_state()
    expect(tab.get_by_role("button", name="Approve")).to_be_visible()
    tab.get_by_role("button", name="Approve" if approve else "Deny").click()
    return tab


def expect_logged_in(notebook: NotebookPage) -> None:
    card = panel_part(notebook, "card")
    expect(card).to_contain_text(f"Logged in to localhost as {ADA_EMAIL}", timeout=LOGIN_TIMEOUT_MS)
    expect(card).to_contain_text(ADA_ORGANIZATION)
    expect(card).to_contain_text(ADA_WORKSPACE)
    expect(card).to_contain_text("refreshed automatically")


def saved_context(astro_config_path: Path) -> dict[str, Any]:
    return read_config(astro_config_path)["contexts"]["localhost"]


@pytest.mark.parametrize("ui", [LAB, NOTEBOOK7])
def test_tab_flow_approve(
    ui, open_login_notebook, emulator, ada_account, astro_config_path, tmp_path
):
    notebook = open_login_notebook(f"%astro_login -e {ADA_EMAIL}", ui=ui)
    expect(panel_part(notebook, "status")).to_contain_text("left")
    open_tab = panel_part(notebook, "open-tab")
    expect(open_tab).to_have_attribute("target", "_blank")
    expect(open_tab).to_have_attribute("rel", "noopener noreferrer")
    if ui == LAB:
        keep_screenshot(notebook, tmp_path, "panel-browser-waiting")

    tab = approve_in_popup(notebook)

    expect(tab.get_by_role("heading", name="Sign-in received")).to_be_visible()
    expect_logged_in(notebook)
    expect(panel_part(notebook, "open-tab")).to_have_count(0)
    if ui == LAB:
        keep_screenshot(notebook, tmp_path, "panel-logged-in")
    context = saved_context(astro_config_path)
    assert context["user_email"] == ADA_EMAIL
    assert context["organization"] == ada_account
    assert context["token"].startswith("Bearer ")
    assert read_config(astro_config_path)["context"] == "localhost"
    assert_saved_without_secrets(notebook, emulator)


def test_tab_flow_deny(open_login_notebook, emulator, astro_config_path, tmp_path):
    notebook = open_login_notebook(f"%astro_login -e {ADA_EMAIL}")

    tab = approve_in_popup(notebook, approve=False)

    expect(tab.get_by_role("heading", name="Login failed")).to_be_visible()
    message = panel_part(notebook, "message")
    expect(message).to_contain_text("access_denied", timeout=LOGIN_TIMEOUT_MS)
    expect(panel_part(notebook, "login")).to_have_text(re.compile("Try again"))
    keep_screenshot(notebook, tmp_path, "panel-denied")
    assert not astro_config_path.exists()

    # Try again without running the cell again; this time approve.
    panel_part(notebook, "login").click()
    approve_in_popup(notebook)
    expect_logged_in(notebook)
    assert saved_context(astro_config_path)["user_email"] == ADA_EMAIL
    assert_saved_without_secrets(notebook, emulator)


def test_link_flow_paste_back(
    open_login_notebook, other_device, emulator, astro_config_path, callback_port, tmp_path
):
    notebook = open_login_notebook(f"%astro_login -e {ADA_EMAIL} -l")
    link = panel_part(notebook, "login-link")
    expect(link).to_be_visible()
    keep_screenshot(notebook, tmp_path, "panel-link-waiting")
    notebook.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    panel_part(notebook, "copy").click()
    expect(panel_part(notebook, "copy")).to_have_text("Copied")
    assert notebook.page.evaluate("navigator.clipboard.readText()") == link.get_attribute("href")

    landed = approve_on_other_device(other_device, link.get_attribute("href"))
    assert landed.startswith(f"http://localhost:{callback_port}/callback?")

    # A pasted address with another state is rejected and the login keeps waiting.
    paste = panel_part(notebook, "paste").locator("input")
    paste.fill(landed.replace("state=", "state=x"))
    panel_part(notebook, "paste-finish").click()
    expect(panel_part(notebook, "message")).to_contain_text("another login attempt")
    expect(paste).to_have_value("")

    paste.fill(landed)
    panel_part(notebook, "paste-finish").click()

    expect_logged_in(notebook)
    assert saved_context(astro_config_path)["user_email"] == ADA_EMAIL
    assert_saved_without_secrets(notebook, emulator)


def test_token_flow(open_login_notebook, emulator, astro_config_path, tmp_path):
    token = emulator.mint_access_token(ADA_EMAIL)
    notebook = open_login_notebook("%astro_login -t", later_cells=("import time; time.sleep(3)",))
    field = panel_part(notebook, "token").locator("input")
    expect(field).to_be_visible()
    # While a cell runs the kernel could not clear a pasted token, so the field is closed.
    expect(field).to_be_disabled()
    expect(field).to_be_enabled(timeout=15_000)
    expect(panel_part(notebook, "email")).to_be_hidden()
    keep_screenshot(notebook, tmp_path, "panel-token")

    field.fill(token)
    panel_part(notebook, "login").click()

    card = panel_part(notebook, "card")
    expect(card).to_contain_text(f"Logged in to localhost as {ADA_EMAIL}", timeout=LOGIN_TIMEOUT_MS)
    expect(card).to_contain_text("cannot be refreshed")
    assert saved_context(astro_config_path)["token"] == f"Bearer {token}"
    assert token in emulator.issued_secrets()
    assert_saved_without_secrets(notebook, emulator)


def test_cancel_frees_port(
    open_login_notebook, emulator, astro_config_path, callback_port, tmp_path
):
    notebook = open_login_notebook(f"%astro_login -e {ADA_EMAIL}")
    expect(panel_part(notebook, "open-tab")).to_be_visible()
    assert not port_is_free(callback_port)

    panel_part(notebook, "cancel").click()

    expect(panel_part(notebook, "message")).to_contain_text("Login cancelled")
    expect(panel_part(notebook, "message")).to_contain_text(f"port {callback_port} is free again")
    expect(panel_part(notebook, "login")).to_be_visible()
    assert port_is_free(callback_port)
    keep_screenshot(notebook, tmp_path, "panel-cancelled")
    assert not astro_config_path.exists()

    # Log in from the same panel, so the saved file is searched for real secrets.
    panel_part(notebook, "login").click()
    approve_in_popup(notebook)
    expect_logged_in(notebook)
    assert_saved_without_secrets(notebook, emulator)


def test_busy_port_completes_by_paste_back(
    open_login_notebook, other_device, emulator, astro_config_path, callback_port, tmp_path
):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_login:
        other_login.bind(("127.0.0.1", callback_port))
        other_login.listen()

        notebook = open_login_notebook(f"%astro_login -e {ADA_EMAIL}")
        status = panel_part(notebook, "status")
        expect(status).to_contain_text(f"Port {callback_port} is in use")
        keep_screenshot(notebook, tmp_path, "panel-busy-port")

        landed = approve_on_other_device(
            other_device, panel_part(notebook, "open-tab").get_attribute("href")
        )
        panel_part(notebook, "paste").locator("input").fill(landed)
        panel_part(notebook, "paste-finish").click()

        expect_logged_in(notebook)

    assert saved_context(astro_config_path)["user_email"] == ADA_EMAIL
    assert_saved_without_secrets(notebook, emulator)


def test_run_all_waits_for_tab_login(open_login_notebook, emulator, astro_config_path):
    notebook = open_login_notebook(
        f"%astro_login -e {ADA_EMAIL}",
        later_cells=("import astro_jupyter\nprint(astro_jupyter.wait_for_login(60).email)",),
    )
    # The third cell blocks the kernel, so the address field stays closed meanwhile.
    expect(panel_part(notebook, "paste").locator("input")).to_be_disabled()

    approve_in_popup(notebook)

    expect_logged_in(notebook)
    notebook.wait_for_output_text(2, ADA_EMAIL, timeout_s=30)
    assert saved_context(astro_config_path)["user_email"] == ADA_EMAIL
    assert_saved_without_secrets(notebook, emulator)
