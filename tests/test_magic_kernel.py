"""The ``%astro_login`` magic in a real ipykernel, logging in to the Astro emulator.

Each test starts a kernel through jupyter_client (or nbclient, for a headless
notebook run) in the hermetic environment from conftest and plays the user's
browser with ``follow_login_link``. It checks what the cell printed and what it
saved in ``config.yaml``. It also checks that no secret the emulator issued
reached any iopub message.
"""

from __future__ import annotations

import hashlib
import re
import socket
import stat
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest
from conftest import ADA_EMAIL as EMAIL
from conftest import ADA_ORGANIZATION as ORGANIZATION
from conftest import ADA_WORKSPACE as WORKSPACE
from conftest import Browser, login_link, read_config, start_logged_out_kernel
from nbclient.exceptions import CellExecutionError

# Every test logs in as ada@example.com, a member of one organization with one workspace.
pytestmark = pytest.mark.usefixtures("ada_account")

LINK_LOGIN = f"%astro_login localhost -e {EMAIL} -l"

_ORGANIZATION_LINE = re.compile(r"^Organization: (?P<name>.+) \((?P<id>[^()\s]+)\)$", re.MULTILINE)
_WORKSPACE_LINE = re.compile(r"^Workspace: (?P<name>.+) \((?P<id>[^()\s]+)\)$", re.MULTILINE)


def callback_port(url: str) -> int:
    """Return the loopback port named by the ``redirect_uri`` of an authorize URL."""
    redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
    port = urlsplit(redirect_uri).port
    assert port is not None
    return port


def test_link_login_saves_config(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    browser = Browser()

    result = kernel.execute(LINK_LOGIN, on_message=browser)

    assert result.status == "ok", result.reply
    assert len(browser.links) == 1
    assert browser.links[0].startswith(emulator.oauth_base_url + "authorize?")
    output = result.stream("stdout")
    assert f"Logged in to localhost as {EMAIL}." in output
    organization = _ORGANIZATION_LINE.search(output)
    workspace = _WORKSPACE_LINE.search(output)
    assert organization is not None, output
    assert organization["name"] == ORGANIZATION
    assert organization["id"] == ada_account
    assert workspace is not None, output
    assert workspace["name"] == WORKSPACE

    config = read_config(astro_config_path)
    assert config["context"] == "localhost"
    context = config["contexts"]["localhost"]
    assert context["token"].startswith("Bearer ")
    assert len(context["token"]) > len("Bearer ")
    assert context["refreshtoken"]
    assert context["user_email"] == EMAIL
    # The leak check below is only meaningful if it covers the saved tokens.
    assert context["token"].removeprefix("Bearer ") in emulator.issued_secrets()
    assert context["refreshtoken"] in emulator.issued_secrets()
    assert context["organization"] == organization["id"]
    assert context["workspace"] == workspace["id"]
    assert stat.S_IMODE(astro_config_path.stat().st_mode) == 0o600
    assert leaked_secrets(kernel.iopub_text()) == []


def test_link_login_several_workspaces(
    emulator: Any,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    # A user created at sign-in joins the emulator's default organization, which
    # has two workspaces. A headless kernel cannot ask which one to use.
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    login = "%astro_login localhost -e grace@example.com -l"

    result = kernel.execute(login, on_message=Browser())

    assert result.status == "ok", result.reply
    output = result.stream("stdout")
    assert "Logged in to localhost as grace@example.com." in output
    assert "This organization has 2 workspaces:" in output
    assert "Workspace: none selected." in output
    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["organization"] == emulator.default_organization_id
    assert not context.get("workspace")
    assert leaked_secrets(kernel.iopub_text()) == []


def test_link_login_denied(
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    browser = Browser(approve=False)

    result = kernel.execute(LINK_LOGIN, on_message=browser)

    assert len(browser.links) == 1
    assert result.status == "error"
    assert result.reply["ename"] == "UsageError"
    message = result.reply["evalue"]
    assert "denied" in message.lower()
    assert "\n" not in message
    assert f"UsageError: {message}" in result.stream("stderr")
    if astro_config_path.exists():
        context = (read_config(astro_config_path).get("contexts") or {}).get("localhost") or {}
        assert not context.get("token")
    assert leaked_secrets(kernel.iopub_text()) == []


def test_browser_login_opens_browser(
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    tmp_path: Path,
    leaked_secrets: Any,
) -> None:
    # Python's webbrowser module runs $BROWSER with the URL and waits for it to
    # exit, so the script records the URL and plays the browser in the background.
    opened_urls = tmp_path / "browser-urls.txt"
    browser_log = tmp_path / "browser.log"
    script = tmp_path / "fake-browser"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$1" >> "{opened_urls}"\n'
        f'"{sys.executable}" -c "'
        "import sys; "
        "from astro_jupyter.emulator import follow_login_link; "
        'follow_login_link(sys.argv[1])" "$1" >> "{browser_log}" 2>&1 &\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    kernel_env["BROWSER"] = str(script)
    kernel_env["DISPLAY"] = ":0"
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    shown_links: list[str] = []

    def record_link(message: dict[str, Any]) -> None:
        url = login_link(message)
        if url is not None:
            shown_links.append(url)

    result = kernel.execute(
        f"%astro_login localhost -e {EMAIL} --timeout 30", on_message=record_link
    )

    browser_output = browser_log.read_text(encoding="utf-8") if browser_log.exists() else ""
    assert result.status == "ok", (result.reply, browser_output)
    assert "Opened the sign-in page in your browser." in result.stream("stdout")
    assert f"Logged in to localhost as {EMAIL}." in result.stream("stdout")
    assert len(shown_links) == 1
    assert opened_urls.read_text(encoding="utf-8").splitlines() == shown_links
    assert read_config(astro_config_path)["contexts"]["localhost"]["user_email"] == EMAIL
    assert leaked_secrets(kernel.iopub_text()) == []


def test_token_login_warns_once(
    emulator: Any,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    token = emulator.mint_access_token(EMAIL)

    first = kernel.execute(f"%astro_login localhost -t {token}")
    second = kernel.execute(f"%astro_login localhost -t {token}")

    assert first.status == "ok", first.reply
    assert second.status == "ok", second.reply
    assert f"Logged in to localhost as {EMAIL}." in first.stream("stdout")
    assert first.text().count("a token typed into a cell") == 1
    assert "a token typed into a cell" not in second.text()
    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["token"] == f"Bearer {token}"
    assert context["user_email"] == EMAIL
    # The cells' own source contains the token, and execute_input repeats it on
    # iopub; that is what the warning is about. Every output must still be clean.
    assert leaked_secrets(kernel.iopub_text(skip_inputs=True)) == []


def test_token_login_reads_environment(
    emulator: Any,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    token = emulator.mint_access_token(EMAIL)
    kernel_env["ASTRO_JUPYTER_TOKEN"] = token
    kernel = start_logged_out_kernel(start_kernel, kernel_env)

    result = kernel.execute("%astro_login localhost -t")

    assert result.status == "ok", result.reply
    output = result.stream("stdout")
    assert "ASTRO_JUPYTER_TOKEN" in output
    assert f"Logged in to localhost as {EMAIL}." in output
    assert "a token typed into a cell" not in result.text()
    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["token"] == f"Bearer {token}"
    assert leaked_secrets(kernel.iopub_text()) == []


def test_token_login_without_token(
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)

    result = kernel.execute("%astro_login localhost -t")

    assert result.status == "error"
    assert result.reply["ename"] == "UsageError"
    message = result.reply["evalue"]
    assert "ASTRO_JUPYTER_TOKEN" in message
    assert "-t" in message
    assert "\n" not in message
    assert not astro_config_path.exists()
    assert leaked_secrets(kernel.iopub_text()) == []


def test_headless_login_needs_email(
    kernel_env: dict[str, str],
    execute_notebook: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext astro_jupyter"),
            nbformat.v4.new_code_cell("%astro_login localhost -l"),
        ]
    )

    with pytest.raises(CellExecutionError) as raised:
        execute_notebook(notebook, kernel_env)

    assert raised.value.ename == "UsageError"
    assert re.search(r"(?<![\w-])-e(?![\w-])", raised.value.evalue), raised.value.evalue
    assert "\n" not in raised.value.evalue
    assert not astro_config_path.exists()
    assert leaked_secrets(nbformat.writes(notebook)) == []


def test_later_cell_uses_login(
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    assert kernel.execute(LINK_LOGIN, on_message=Browser()).status == "ok"

    token_cell = kernel.execute(
        "import hashlib\n"
        "import astro_jupyter\n"
        "t = astro_jupyter.get_token()\n"
        "print(hashlib.sha256(t.encode()).hexdigest())\n"
    )
    whoami_cell = kernel.execute(
        "me = astro_jupyter.whoami()\nprint(me.email)\nprint(me.domain)\nprint(me.workspace)\n"
    )

    assert token_cell.status == "ok", token_cell.reply
    stored_token = read_config(astro_config_path)["contexts"]["localhost"]["token"]
    expected_digest = hashlib.sha256(stored_token.removeprefix("Bearer ").encode()).hexdigest()
    assert token_cell.stream("stdout").strip() == expected_digest
    assert whoami_cell.status == "ok", whoami_cell.reply
    email, domain, workspace = whoami_cell.stream("stdout").splitlines()
    assert email == EMAIL
    assert domain == "localhost"
    assert workspace == read_config(astro_config_path)["contexts"]["localhost"]["workspace"]
    assert leaked_secrets(kernel.iopub_text()) == []


def test_interrupt_cancels_login(
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    shown_links: list[str] = []

    def interrupt_on_link(message: dict[str, Any]) -> None:
        url = login_link(message)
        if url is not None:
            shown_links.append(url)
            kernel.km.interrupt_kernel()

    cancelled = kernel.execute(LINK_LOGIN, on_message=interrupt_on_link)

    assert len(shown_links) == 1
    assert cancelled.status == "error"
    assert cancelled.reply["ename"] == "UsageError"
    assert "cancelled" in cancelled.reply["evalue"].lower()
    assert not astro_config_path.exists()

    # The cancelled login must have closed its callback server, so the same
    # port can be bound again, here and by the next login.
    port = callback_port(shown_links[0])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", port))
    assert kernel.execute(f"%config AstroLogin.callback_port = {port}").status == "ok"
    browser = Browser()
    retried = kernel.execute(LINK_LOGIN, on_message=browser)

    assert retried.status == "ok", retried.reply
    assert callback_port(browser.links[0]) == port
    assert read_config(astro_config_path)["contexts"]["localhost"]["user_email"] == EMAIL
    assert leaked_secrets(kernel.iopub_text()) == []
