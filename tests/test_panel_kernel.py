"""The login panel in a real kernel: when it is shown, and that it never blocks the kernel.

These tests talk to the kernel as JupyterLab does (with stdin allowed) but
render nothing; the browser tests in tests/browser render the panel.
"""

from __future__ import annotations

import json
from typing import Any

from astro_jupyter.emulator import follow_login_link
from tests.conftest import ADA_EMAIL, Browser, read_config, start_logged_out_kernel

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PRINT_LINK = (
    "from astro_jupyter.settings import AstroLogin\n"
    "import time\n"
    "for _ in range(200):\n"
    "    flow = AstroLogin.instance().logins.latest\n"
    "    if flow is not None and flow.authorize_url:\n"
    "        break\n"
    "    time.sleep(0.05)\n"
    "print(flow.authorize_url)\n"
)


def displayed_data(result: Any) -> list[dict[str, Any]]:
    return [
        message["content"]["data"]
        for message in result.messages
        if message["msg_type"] == "display_data"
    ]


def test_panel_shown_where_frontend_allows_stdin(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Any,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)

    panel_cell = kernel.execute(f"%astro_login -e {ADA_EMAIL}", allow_stdin=True)

    assert panel_cell.status == "ok", panel_cell.reply
    data = displayed_data(panel_cell)
    assert len(data) == 1
    assert WIDGET_VIEW in data[0]
    assert "Astro login panel for localhost" in data[0]["text/plain"]
    assert panel_cell.stream("stdout") == ""

    # The cell above has ended while the login waits in the background.
    link = kernel.execute(PRINT_LINK).stream("stdout").strip()
    assert link.startswith(emulator.oauth_base_url + "authorize?")
    follow_login_link(link)
    waited = kernel.execute("import astro_jupyter\nprint(astro_jupyter.wait_for_login(20).email)")

    assert waited.status == "ok", waited.reply
    assert waited.stream("stdout").strip() == ADA_EMAIL
    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["user_email"] == ADA_EMAIL
    # Widget updates travel as comm messages on iopub: none may carry a secret.
    comm_messages = [m for m in kernel.iopub_messages if m["msg_type"].startswith("comm_")]
    assert comm_messages
    assert leaked_secrets(kernel.iopub_text()) == []
    assert leaked_secrets(json.dumps([m["content"] for m in comm_messages])) == []


def test_no_widget_keeps_text_form(
    ada_account: str, kernel_env: dict[str, str], start_kernel: Any
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    browser = Browser()

    result = kernel.execute(
        f"%astro_login -e {ADA_EMAIL} -l --no-widget", allow_stdin=True, on_message=browser
    )

    assert result.status == "ok", result.reply
    assert len(browser.links) == 1
    assert f"Logged in to localhost as {ADA_EMAIL}." in result.stream("stdout")
    assert all(WIDGET_VIEW not in data for data in displayed_data(result))


def test_widget_setting_off_keeps_text_form(
    ada_account: str, kernel_env: dict[str, str], start_kernel: Any
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    kernel.execute("%config AstroLogin.widget = False")

    result = kernel.execute(f"%astro_login -e {ADA_EMAIL} -l --timeout 1", allow_stdin=True)

    assert result.status == "error"
    assert "timed out" in result.reply["evalue"]
    assert all(WIDGET_VIEW not in data for data in displayed_data(result))


def test_headless_kernel_keeps_text_form(
    ada_account: str, kernel_env: dict[str, str], start_kernel: Any
) -> None:
    kernel = start_logged_out_kernel(start_kernel, kernel_env)

    result = kernel.execute(f"%astro_login -e {ADA_EMAIL} -l --timeout 1", allow_stdin=False)

    assert result.status == "error"
    assert "timed out" in result.reply["evalue"]
    assert all(WIDGET_VIEW not in data for data in displayed_data(result))
