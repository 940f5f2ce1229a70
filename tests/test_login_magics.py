"""Tests of %astro_login in an in-process IPython shell: messages and input checks.

The kernel tests cover the browser, link and interrupt paths; these check the
magic's own decisions quickly, with the emulator on loopback.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from astro_jupyter.credentials import default_store
from astro_jupyter.settings import AstroLogin

EMAIL = "ada@example.com"

pytestmark = pytest.mark.usefixtures("emulator_settings")


def test_token_login_prints_summary(shell, emulator, capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": "2")
    shell.run_line_magic("astro_login", f"localhost -t {emulator.mint_access_token(EMAIL)}")
    out = capsys.readouterr().out
    assert "Logged in to localhost as ada@example.com." in out
    assert "Organization: Example Org (" in out
    assert "cannot be refreshed" in out
    assert "This organization has 2 workspaces:" in out
    record = default_store().read_context("localhost")
    assert record.user_email == EMAIL
    assert record.workspace
    assert record.last_used_workspace == record.workspace
    assert f"({record.workspace})" in out.splitlines()[-1]


def test_workspace_prompt_without_stdin(shell, emulator, capsys, monkeypatch):
    def closed_stdin(prompt=""):
        raise OSError("reading from stdin is not possible")

    monkeypatch.setattr("builtins.input", closed_stdin)
    shell.run_line_magic("astro_login", f"localhost -t {emulator.mint_access_token(EMAIL)}")
    assert "Workspace: none selected." in capsys.readouterr().out


def test_api_token_env_noted_after_login(shell, emulator, capsys, monkeypatch):
    monkeypatch.setattr("builtins.input", lambda prompt="": "")
    monkeypatch.setenv("ASTRO_API_TOKEN", emulator.mint_access_token("robot@example.com"))
    shell.run_line_magic("astro_login", f"localhost -t {emulator.mint_access_token(EMAIL)}")
    assert "$ASTRO_API_TOKEN is set" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("localhost -e not-an-email -l", "Invalid email 'not-an-email'"),
        ("'exa mple' -e ada@example.com -l", "Invalid Astro domain"),
        ("localhost -e ada@example.com --timeout 0", "--timeout must be more than 0 and at most"),
        ("localhost -t not.a.jwt", "The token is not a JWT"),
    ],
    ids=["bad-email", "bad-domain", "zero-timeout", "not-jwt"],
)
def test_bad_input_is_one_line_error(shell, emulator, astro_config_path, line, expected):
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("astro_login", line)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not astro_config_path.exists()
    assert emulator.requests == []


def test_unknown_domain_without_api_url(shell, monkeypatch):
    AstroLogin.instance().api_url = ""
    with pytest.raises(UsageError, match="Unknown Astro domain 'example.com'"):
        shell.run_line_magic("astro_login", "example.com -e ada@example.com -l")


def test_busy_port_names_port(shell, emulator, astro_config_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        shell.run_line_magic("config", f"AstroLogin.callback_port = {port}")
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic("astro_login", "localhost -e ada@example.com -l")
    assert f"Port {port} on localhost is already in use" in str(caught.value)
    assert not astro_config_path.exists()


def test_help_lists_options(shell):
    help_text = shell.find_line_magic("astro_login").__doc__
    for option in ("-e EMAIL", "-l", "-t [TOKEN]", "--timeout SECONDS", "--no-widget"):
        assert option in help_text


def test_quoted_values_are_unquoted(shell, emulator, capsys, astro_config_path):
    shell.run_line_magic(
        "astro_login", f"'localhost' -t \"{emulator.mint_access_token(EMAIL)}\""
    )
    assert "Logged in to localhost as ada@example.com." in capsys.readouterr().out


def test_bearer_prefix_accepted(shell, emulator, capsys):
    shell.run_line_magic(
        "astro_login", f"localhost -t 'Bearer {emulator.mint_access_token(EMAIL)}'"
    )
    assert "Logged in to localhost as ada@example.com." in capsys.readouterr().out


def test_workspace_prompt_does_not_echo(shell, emulator, capsys, monkeypatch):
    pasted = emulator.mint_access_token(EMAIL)
    monkeypatch.setattr("builtins.input", lambda prompt="": pasted)
    shell.run_line_magic("astro_login", f"localhost -t {emulator.mint_access_token(EMAIL)}")
    out = capsys.readouterr().out
    assert "the answer is not a number from 1 to 2" in out
    assert pasted not in out
    assert "%astro_workspace switch NAME" in out


def test_interrupt_while_saving_reports_login(shell, emulator, capsys, monkeypatch):
    import _thread
    import time

    from astro_jupyter.config_store import ConfigStore
    from astro_jupyter.login_flow import LoginFlow
    from astro_jupyter.login_types import LoginStep

    original_save = ConfigStore.save_login

    def slow_save(self, record, **kwargs):
        time.sleep(0.5)
        return original_save(self, record, **kwargs)

    monkeypatch.setattr(ConfigStore, "save_login", slow_save)
    original_init = LoginFlow.__init__

    def interrupting_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.subscribe(lambda event: event.step is LoginStep.SAVING and _thread.interrupt_main())

    monkeypatch.setattr(LoginFlow, "__init__", interrupting_init)
    monkeypatch.setattr("builtins.input", lambda prompt="": "")
    shell.run_line_magic("astro_login", f"localhost -t {emulator.mint_access_token(EMAIL)}")

    assert "Logged in to localhost as ada@example.com." in capsys.readouterr().out
    assert default_store().read_context("localhost").token


def test_timeout_above_maximum_rejected(shell, emulator):
    with pytest.raises(UsageError, match="at most 86400 seconds"):
        shell.run_line_magic("astro_login", "localhost -e ada@example.com -l --timeout inf")
    assert emulator.requests == []


def test_prompted_email_not_echoed(shell, emulator, monkeypatch):
    pasted = emulator.mint_access_token(EMAIL)
    monkeypatch.setattr("builtins.input", lambda prompt="": pasted)
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("astro_login", "localhost -l")
    assert "The email entered is not an address" in str(caught.value)
    assert pasted[:20] not in str(caught.value)


def test_token_with_line_break_rejected(shell, emulator):
    token = emulator.mint_access_token(EMAIL)
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("astro_login", f"localhost -t '{token[:50]}\n{token[50:]}'")
    assert "line breaks" in str(caught.value)
    assert token[50:80] not in str(caught.value)
    assert emulator.requests == []


def test_unquoted_bearer_prefix_accepted(shell, emulator, capsys):
    shell.run_line_magic("astro_login", f"-t Bearer {emulator.mint_access_token(EMAIL)}")
    assert "Logged in to localhost as ada@example.com." in capsys.readouterr().out


def test_token_as_domain_not_echoed(shell, emulator):
    token = emulator.mint_access_token(EMAIL)
    for magic, line in [("astro_login", f"{token} -e ada@example.com -l"),
                        ("astro_context", f"switch {token}"),
                        ("astro_whoami", token)]:
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic(magic, line)
        assert token[40:] not in str(caught.value)
