"""Tests of %astro_logout, %astro_whoami, %astro_context and %astro_workspace in a real shell."""

from __future__ import annotations

import pytest
from conftest import log_in_by_link
from IPython.core.error import UsageError

from astro_jupyter.credentials import default_store

EMAIL = "ada@example.com"

pytestmark = pytest.mark.usefixtures("emulator_settings")


@pytest.fixture
def logged_in(emulator):
    return log_in_by_link(emulator, default_store(), email=EMAIL)


def test_whoami_prints_login(shell, logged_in, capsys):
    shell.run_line_magic("astro_whoami", "")
    out = capsys.readouterr().out
    assert f"Email:        {EMAIL}" in out
    assert "Domain:       localhost" in out
    assert f"Organization: {logged_in.organization.id}" in out
    assert "(in 60 minutes)" in out or "(in 59 minutes)" in out
    assert "a refreshable login saved in config.yaml" in out


def test_whoami_names_api_token(shell, emulator, logged_in, capsys, monkeypatch):
    monkeypatch.setenv("ASTRO_API_TOKEN", emulator.mint_access_token("robot@example.com"))
    shell.run_line_magic("astro_whoami", "")
    assert "the Astro API token in $ASTRO_API_TOKEN" in capsys.readouterr().out


def test_whoami_not_logged_in(shell):
    with pytest.raises(UsageError, match="Not logged in"):
        shell.run_line_magic("astro_whoami", "")


def test_logout_blanks_login(shell, logged_in, capsys):
    store = default_store()
    shell.run_line_magic("astro_logout", "")
    out = capsys.readouterr().out
    assert "Logged out of localhost" in out
    record = store.read_context("localhost")
    assert record.token is None
    assert record.refresh_token is None
    assert record.user_email is None
    assert store.current_domain() is None


def test_logout_twice_says_nothing_to_do(shell, logged_in, capsys):
    shell.run_line_magic("astro_logout", "localhost")
    shell.run_line_magic("astro_logout", "localhost")
    assert "Not logged in to localhost; nothing to do." in capsys.readouterr().out


def test_context_lists_and_marks_current(shell, logged_in, capsys):
    shell.run_line_magic("astro_context", "")
    out = capsys.readouterr().out
    assert f"* localhost  {EMAIL}  logged in" in out


def test_context_switch_unknown(shell, logged_in):
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("astro_context", "switch astronomer.io")
    assert "astronomer.io" in str(caught.value)


def test_context_switch_needs_domain(shell, logged_in):
    with pytest.raises(UsageError, match="Missing domain"):
        shell.run_line_magic("astro_context", "switch")


def test_workspace_list_and_switch(shell, logged_in, capsys):
    shell.run_line_magic("astro_workspace", "")
    listing = capsys.readouterr().out
    for workspace in logged_in.workspaces:
        assert workspace.id in listing

    target = logged_in.workspaces[-1]
    shell.run_line_magic("astro_workspace", f"switch {target.name.lower()}")
    assert f"Workspace: {target.name} ({target.id})" in capsys.readouterr().out
    record = default_store().read_context("localhost")
    assert record.workspace == target.id
    assert record.last_used_workspace == target.id

    shell.run_line_magic("astro_workspace", "")
    assert f"* {target.name}" in capsys.readouterr().out


def test_workspace_switch_quoted_name(shell, logged_in):
    target = next(workspace for workspace in logged_in.workspaces if " " in workspace.name)
    shell.run_line_magic("astro_workspace", f"switch '{target.name}'")
    assert default_store().read_context("localhost").workspace == target.id


def test_context_names_astro_domain(shell, logged_in, capsys, monkeypatch):
    monkeypatch.setenv("ASTRO_DOMAIN", "localhost")
    shell.run_line_magic("astro_context", "")
    assert "set by $ASTRO_DOMAIN" in capsys.readouterr().out


def test_workspace_switch_unknown(shell, logged_in):
    with pytest.raises(UsageError, match="No workspace 'Nope'"):
        shell.run_line_magic("astro_workspace", "switch Nope")


def test_magics_print_no_secret(shell, emulator, logged_in, capsys):
    for magic, line in [("astro_whoami", ""), ("astro_context", ""), ("astro_workspace", ""),
                        ("astro_logout", "")]:
        shell.run_line_magic(magic, line)
    out = capsys.readouterr()
    for secret in emulator.issued_secrets():
        assert secret not in out.out
        assert secret not in out.err


def test_context_switch_warns_astro_domain(shell, logged_in, capsys, monkeypatch):
    monkeypatch.setenv("ASTRO_DOMAIN", "astronomer.io")
    shell.run_line_magic("astro_context", "switch localhost")
    assert "$ASTRO_DOMAIN=astronomer.io still chooses the context" in capsys.readouterr().out
