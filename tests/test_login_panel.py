"""The login panel's behaviour, driven in this process through its widgets.

The widgets run without a frontend here: the tests set values and click
buttons the way the frontend's messages would, while the flow talks HTTP to
the emulator and the browser is played by ``follow_login_link``. The browser
tests in tests/browser drive the same panel in a real JupyterLab.
"""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from astro_jupyter.emulator import follow_login_link
from astro_jupyter.errors import LoginTimeoutError, NotLoggedInError
from astro_jupyter.login_types import LoginMode, LoginStep
from astro_jupyter.panel import LoginPanel, new_login_panel
from astro_jupyter.settings import AstroLogin
from tests.conftest import ADA_EMAIL, ADA_ORGANIZATION, ADA_WORKSPACE, port_is_free, read_config

pytestmark = pytest.mark.usefixtures("emulator_settings")

WAIT_S = 15.0


def wait_until(condition: Callable[[], Any], description: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {description}")


def shown(widget: Any) -> str:
    """Return the text an HTML widget shows, without tags or character references."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def visible(widget: Any) -> bool:
    return widget.layout.display != "none"


def waiting_url(panel: LoginPanel) -> str:
    return wait_until(
        lambda: panel.flow is not None and panel.flow.authorize_url, "the sign-in link"
    )


def finished(panel: LoginPanel) -> None:
    wait_until(lambda: panel.flow is not None and panel.flow.done, "the login to end")
    # The final event reaches the panel right after the flow is marked done.
    wait_until(lambda: not visible(panel.widgets.cancel), "the panel to leave the running state")


def callback_port_of(panel: LoginPanel) -> int:
    redirect_uri = panel.flow.events[-1].redirect_uri
    port = urlsplit(redirect_uri).port
    assert port is not None
    return port


@pytest.fixture
def panels() -> Iterator[list[LoginPanel]]:
    """Collect panels and cancel their logins at the end, so no callback server outlives a test."""
    created: list[LoginPanel] = []
    yield created
    for panel in created:
        panel.cancel()
        if panel.flow is not None:
            wait_until(lambda panel=panel: panel.flow.done, "a cancelled login to end")


def open_panel(panels: list[LoginPanel], **kwargs: Any) -> LoginPanel:
    panel = new_login_panel(**kwargs)
    panels.append(panel)
    return panel


def test_panel_starts_with_known_email_and_logs_in(panels, ada_account, astro_config_path):
    panel = open_panel(panels, email=ADA_EMAIL)

    url = waiting_url(panel)
    assert 'class="astro-open-tab"' in panel.widgets.link.value
    assert 'target="_blank"' in panel.widgets.link.value
    assert 'rel="noopener noreferrer"' in panel.widgets.link.value
    assert visible(panel.widgets.paste_box)
    assert "left" in shown(panel.widgets.status)

    follow_login_link(url)
    finished(panel)

    card = panel.widgets.card.value
    assert visible(panel.widgets.card)
    assert ADA_EMAIL in card
    assert ADA_ORGANIZATION in card
    assert ADA_WORKSPACE in card
    assert "refreshed automatically" in card
    assert panel.widgets.link.value == ""
    assert not visible(panel.widgets.paste_box)
    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["user_email"] == ADA_EMAIL
    assert context["organization"] == ada_account


def test_panel_waits_for_email_when_none_known(panels, ada_account):
    panel = open_panel(panels)

    assert panel.flow is None
    assert visible(panel.widgets.login)
    panel.widgets.email.value = "not-an-email"
    panel.widgets.login.click()

    assert panel.flow is None
    assert "Invalid email" in shown(panel.widgets.message)

    panel.widgets.email.value = ADA_EMAIL
    panel.widgets.login.click()
    follow_login_link(waiting_url(panel))
    finished(panel)
    assert panel.result is not None
    assert panel.result.email == ADA_EMAIL


def test_panel_prefills_saved_email(panels, saved_login):
    panel = open_panel(panels, mode="token")

    assert panel.widgets.email.value == ADA_EMAIL
    assert panel.flow is None


def test_panel_deny_offers_try_again(panels, ada_account, astro_config_path):
    panel = open_panel(panels, email=ADA_EMAIL)

    follow_login_link(waiting_url(panel), approve=False)
    finished(panel)

    assert "access_denied" in shown(panel.widgets.message)
    assert panel.widgets.login.description == "Try again"
    assert visible(panel.widgets.login)
    assert not astro_config_path.exists()


def test_panel_paste_back_finishes_login(panels, ada_account, astro_config_path):
    panel = open_panel(panels, email=ADA_EMAIL, mode="link")
    url = waiting_url(panel)
    assert 'class="astro-copy"' in panel.widgets.link.value

    landed = follow_login_link(url, reach_callback=False)
    panel.widgets.paste.value = landed.url

    assert panel.widgets.paste.value == ""
    finished(panel)
    assert panel.result is not None
    assert read_config(astro_config_path)["contexts"]["localhost"]["user_email"] == ADA_EMAIL


@pytest.mark.parametrize(
    ("rewrite", "expected"),
    [
        (lambda url: url.replace("state=", "state=x"), "another login attempt"),
        (lambda url: url.split("?")[0] + "?code=abc", "no state parameter"),
        (lambda url: url.split("&code=")[0].split("?code=")[0], "cut short"),
        (lambda url: url.replace("localhost", "example.com"), "not this login's callback"),
        (lambda url: "javascript:alert(1)", "not this login's callback"),
    ],
    ids=["wrong-state", "no-state", "no-query", "other-host", "javascript"],
)
def test_panel_paste_back_rejects_bad_address(panels, ada_account, rewrite, expected):
    panel = open_panel(panels, email=ADA_EMAIL, mode="link")
    landed = follow_login_link(waiting_url(panel), reach_callback=False)

    panel.widgets.paste.value = rewrite(landed.url)

    assert expected in shown(panel.widgets.message)
    assert panel.widgets.paste.value == ""
    assert panel.flow is not None
    assert panel.flow.step is LoginStep.WAITING_FOR_BROWSER


def test_panel_paste_back_without_code_is_rejected(panels, ada_account):
    panel = open_panel(panels, email=ADA_EMAIL, mode="link")
    landed = follow_login_link(waiting_url(panel), reach_callback=False)
    state = landed.query["state"]
    callback = landed.url.split("?")[0]

    panel.widgets.paste.value = f"{callback}?state={state}"

    assert "neither a code nor an error" in shown(panel.widgets.message)
    assert panel.flow.step is LoginStep.WAITING_FOR_BROWSER


def test_panel_paste_back_error_ends_login(panels, ada_account, astro_config_path):
    panel = open_panel(panels, email=ADA_EMAIL, mode="link")
    landed = follow_login_link(waiting_url(panel), approve=False, reach_callback=False)
    assert landed.query["error"] == "access_denied"

    panel.widgets.paste.value = landed.url
    finished(panel)

    assert "access_denied" in shown(panel.widgets.message)
    assert not astro_config_path.exists()


def test_panel_cancel_frees_port(panels, ada_account, astro_config_path):
    panel = open_panel(panels, email=ADA_EMAIL)
    waiting_url(panel)
    port = callback_port_of(panel)
    assert not port_is_free(port)

    panel.widgets.cancel.click()
    finished(panel)

    assert port_is_free(port)
    assert "Login cancelled" in shown(panel.widgets.message)
    assert f"port {port} is free again" in shown(panel.widgets.message)
    assert visible(panel.widgets.login)
    assert not astro_config_path.exists()


def test_panel_busy_port_completes_by_paste_back(
    panels, ada_account, astro_config_path, monkeypatch
):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_login:
        other_login.bind(("127.0.0.1", 0))
        other_login.listen()
        port = other_login.getsockname()[1]
        monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", str(port))
        AstroLogin.clear_instance()

        panel = open_panel(panels, email=ADA_EMAIL, mode="link")
        url = waiting_url(panel)
        assert f"Port {port} is in use" in shown(panel.widgets.status)

        landed = follow_login_link(url, reach_callback=False)
        assert f":{port}/callback" in landed.url
        panel.widgets.paste.value = landed.url
        finished(panel)

    assert panel.result is not None
    assert read_config(astro_config_path)["contexts"]["localhost"]["user_email"] == ADA_EMAIL


def test_panel_token_is_cleared_at_once(panels, emulator, ada_account, astro_config_path):
    token = emulator.mint_access_token(ADA_EMAIL)
    panel = open_panel(panels, mode="token")

    panel.widgets.token.value = token

    assert panel.widgets.token.value == ""
    assert "Token received" in shown(panel.widgets.message)
    assert token not in repr(panel.widgets.root)
    panel.widgets.login.click()
    finished(panel)
    assert panel.result is not None
    assert read_config(astro_config_path)["contexts"]["localhost"]["token"] == f"Bearer {token}"


def test_panel_malformed_token_is_rejected(panels, ada_account, astro_config_path):
    panel = open_panel(panels, mode="token")

    panel.widgets.token.value = "not-a-token"
    panel.widgets.login.click()

    assert panel.flow is None
    assert "token" in shown(panel.widgets.message).lower()
    assert "not-a-token" not in shown(panel.widgets.message)
    assert not astro_config_path.exists()


def test_panel_switch_to_token_cancels_browser_login(panels, ada_account):
    panel = open_panel(panels, email=ADA_EMAIL)
    waiting_url(panel)
    first = panel.flow

    panel.widgets.mode.value = LoginMode.TOKEN.value
    wait_until(lambda: first.done, "the browser login to be cancelled")
    wait_until(lambda: visible(panel.widgets.token), "the token field")

    assert first.step is LoginStep.CANCELLED
    assert "Paste an access token" in shown(panel.widgets.message)


def test_panel_mode_change_after_login_keeps_summary(panels, ada_account):
    panel = open_panel(panels, email=ADA_EMAIL)
    follow_login_link(waiting_url(panel))
    finished(panel)

    panel.widgets.mode.value = LoginMode.TOKEN.value

    assert visible(panel.widgets.card)
    assert not visible(panel.widgets.token)
    panel.widgets.again.click()
    assert visible(panel.widgets.token)
    assert not visible(panel.widgets.card)


def test_panel_workspace_choice_is_saved(panels, emulator, astro_config_path):
    organization = emulator.add_organization("Two Teams", workspaces=("Alpha", "Beta"))
    emulator.add_user(ADA_EMAIL, organizations=(organization,))
    panel = open_panel(panels, email=ADA_EMAIL)
    follow_login_link(waiting_url(panel))
    finished(panel)

    dropdown = panel.widgets.workspace
    assert visible(dropdown)
    assert dropdown.value == ""
    assert dropdown.label.startswith("None selected")
    assert "none selected: choose one below" in shown(panel.widgets.card)
    beta = next(value for label, value in dropdown.options if label.startswith("Beta"))
    dropdown.value = beta

    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["workspace"] == beta
    assert context["last_used_workspace"] == beta
    assert "Workspace set to Beta" in shown(panel.widgets.message)
    assert "none selected" not in shown(panel.widgets.card)
    assert [value for _label, value in dropdown.options if not value] == []
    assert dropdown.value == beta

    alpha = next(value for label, value in dropdown.options if label.startswith("Alpha"))
    dropdown.value = alpha
    assert read_config(astro_config_path)["contexts"]["localhost"]["workspace"] == alpha
    assert panel.result.workspace.id == alpha


def test_second_panel_replaces_first_login(panels, ada_account):
    first = open_panel(panels, email=ADA_EMAIL)
    waiting_url(first)
    first_flow = first.flow
    first_port = callback_port_of(first)

    second = open_panel(panels, email=ADA_EMAIL)
    url = waiting_url(second)

    assert first_flow.done
    assert first_flow.step is LoginStep.CANCELLED
    assert port_is_free(first_port)
    wait_until(lambda: visible(first.widgets.login), "the first panel to return to its form")
    assert "a newer login started in this kernel" in shown(first.widgets.message)
    follow_login_link(url)
    finished(second)
    assert second.result is not None


def test_wait_for_login_returns_panel_result(panels, ada_account):
    import astro_jupyter

    panel = open_panel(panels, email=ADA_EMAIL)
    url = waiting_url(panel)
    threading.Timer(0.2, follow_login_link, args=(url,)).start()

    result = astro_jupyter.wait_for_login(timeout=WAIT_S)

    assert result.email == ADA_EMAIL


def test_wait_for_login_times_out_clearly(panels, ada_account):
    import astro_jupyter

    panel = open_panel(panels, email=ADA_EMAIL)
    waiting_url(panel)

    with pytest.raises(LoginTimeoutError, match="still waiting after 0.2 s"):
        astro_jupyter.wait_for_login(timeout=0.2)
    assert not panel.flow.done


def test_wait_for_login_without_login_says_so():
    import astro_jupyter

    with pytest.raises(NotLoggedInError, match="No login was started in this kernel"):
        astro_jupyter.wait_for_login(timeout=1)


def test_get_token_waits_for_login_in_progress(panels, emulator, ada_account):
    import astro_jupyter

    panel = open_panel(panels, email=ADA_EMAIL)
    url = waiting_url(panel)
    threading.Timer(0.3, follow_login_link, args=(url,)).start()

    token = astro_jupyter.get_token()

    assert token in emulator.issued_secrets()
    assert panel.flow.done


def test_get_token_reports_failed_login_in_progress(panels, ada_account):
    import astro_jupyter

    panel = open_panel(panels, email=ADA_EMAIL)
    url = waiting_url(panel)
    threading.Timer(0.3, follow_login_link, args=(url,), kwargs={"approve": False}).start()

    with pytest.raises(NotLoggedInError, match="ended without logging in: Login failed"):
        astro_jupyter.get_token()


def test_get_token_reports_timed_out_login(panels, ada_account):
    import astro_jupyter

    panel = open_panel(panels, email=ADA_EMAIL, timeout=0.5)
    waiting_url(panel)

    with pytest.raises(NotLoggedInError, match="ended without logging in: Login timed out"):
        astro_jupyter.get_token()


def test_panel_repr_and_text_form_hold_no_secret(panels, emulator, ada_account):
    panel = open_panel(panels, email=ADA_EMAIL)
    follow_login_link(waiting_url(panel))
    finished(panel)

    bundle = panel._repr_mimebundle_()
    texts = [repr(panel), bundle["text/plain"], repr(panel.widgets.root)]
    texts += [str(widget.get_state()) for widget in _all_widgets(panel.widgets.root)]
    for text in texts:
        assert not [secret for secret in emulator.issued_secrets() if secret in text]
    assert "needs a frontend that shows ipywidgets" in bundle["text/plain"]


def _all_widgets(root: Any) -> Iterator[Any]:
    yield root
    for child in getattr(root, "children", ()):
        yield from _all_widgets(child)


def test_new_login_panel_rejects_bad_input(astro_config_path):
    from astro_jupyter.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="Invalid mode 'phone'"):
        new_login_panel(mode="phone")
    with pytest.raises(InvalidInputError, match="^timeout must be more than 0"):
        new_login_panel(timeout=0)
    with pytest.raises(InvalidInputError, match="Invalid email"):
        new_login_panel(email="not-an-email")
    assert not astro_config_path.exists()


def test_panel_timeout_message(panels, ada_account):
    panel = open_panel(panels, email=ADA_EMAIL, timeout=0.5)
    waiting_url(panel)
    finished(panel)

    assert "timed out" in shown(panel.widgets.message)
    assert panel.widgets.login.description == "Try again"


def test_login_panel_function_survives_module_import(panels, ada_account):
    import astro_jupyter
    import astro_jupyter.panel  # noqa: F401 - the import that once replaced the function

    first = astro_jupyter.login_panel(mode="token")
    second = astro_jupyter.login_panel(mode="token")
    panels.extend([first, second])

    assert isinstance(first, LoginPanel)
    assert isinstance(second, LoginPanel)
    assert callable(astro_jupyter.login_panel)


def record_disabled(panel: LoginPanel) -> list[tuple[str, bool]]:
    changes: list[tuple[str, bool]] = []
    for name in ("token", "paste", "paste_button"):
        getattr(panel.widgets, name).observe(
            lambda change, name=name: changes.append((name, change["new"])), names="disabled"
        )
    return changes


def test_token_field_disabled_while_cell_runs(panels, ada_account, shell):
    panel = open_panel(panels, mode="token")
    panel.watch_cell_runs(shell, cell_running=False)
    changes = record_disabled(panel)
    during: dict[str, bool] = {}
    shell.user_ns["record"] = lambda: during.update(token=panel.widgets.token.disabled)

    shell.run_cell("record()")

    assert during == {"token": True}
    assert changes == [("token", True), ("token", False)]
    assert "once no cell is running" not in panel.widgets.token.placeholder


def test_paste_fields_disabled_while_cell_runs(panels, ada_account, shell):
    panel = open_panel(panels, email=ADA_EMAIL, mode="link")
    waiting_url(panel)
    panel.watch_cell_runs(shell, cell_running=False)
    during: dict[str, bool] = {}
    shell.user_ns["record"] = lambda: during.update(
        paste=panel.widgets.paste.disabled, button=panel.widgets.paste_button.disabled
    )

    shell.run_cell("record()")

    assert during == {"paste": True, "button": True}
    assert not panel.widgets.paste.disabled
    assert not panel.widgets.paste_button.disabled


def test_ended_panel_sends_nothing_on_cell_runs(panels, ada_account, shell):
    panel = open_panel(panels, email=ADA_EMAIL)
    follow_login_link(waiting_url(panel))
    finished(panel)
    panel.watch_cell_runs(shell, cell_running=False)
    changes = record_disabled(panel)

    shell.run_cell("1 + 1")

    assert changes == []


def test_busy_port_cancel_message(panels, ada_account, monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_login:
        other_login.bind(("127.0.0.1", 0))
        other_login.listen()
        monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", str(other_login.getsockname()[1]))
        AstroLogin.clear_instance()
        panel = open_panel(panels, email=ADA_EMAIL)
        waiting_url(panel)

        panel.widgets.cancel.click()
        finished(panel)

    assert "Login cancelled; nothing was saved." in shown(panel.widgets.message)
    assert "free again" not in shown(panel.widgets.message)


def test_panel_cut_code_says_paste_may_be_cut(panels, ada_account, astro_config_path):
    panel = open_panel(panels, email=ADA_EMAIL, mode="link")
    landed = follow_login_link(waiting_url(panel), reach_callback=False)
    code = landed.query["code"]

    panel.widgets.paste.value = landed.url.replace(f"code={code}", f"code={code[:-4]}")
    finished(panel)

    message = shown(panel.widgets.message)
    assert "invalid_grant" in message
    assert "pasted address, which may have been cut short" in message
    assert code[:-4] not in message
    assert not astro_config_path.exists()
