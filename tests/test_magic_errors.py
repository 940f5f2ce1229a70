"""Errors shown to notebook users: one line by default, the full traceback on request."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from astro_jupyter.errors import InvalidInputError, NotLoggedInError

pytestmark = pytest.mark.usefixtures("emulator_settings")

BAD_EMAIL_LOGIN = "%astro_login localhost -e not-an-email -l"
MESSAGE = "Invalid email 'not-an-email'"


def test_error_is_one_line(shell, capsys):
    shell.run_cell(BAD_EMAIL_LOGIN)
    output = capsys.readouterr()
    error_lines = [line for line in output.err.splitlines() if line.strip()]
    assert len(error_lines) == 1
    assert error_lines[0].startswith(f"UsageError: {MESSAGE}")
    assert "Traceback" not in output.out + output.err


def test_tb_repeats_the_one_line(shell, capsys):
    # IPython keeps no more than the UsageError, which is why show_traceback exists.
    shell.run_cell(BAD_EMAIL_LOGIN)
    capsys.readouterr()
    shell.run_cell("%tb")
    output = capsys.readouterr()
    assert f"UsageError: {MESSAGE}" in output.err
    assert "Traceback" not in output.out + output.err


def test_show_traceback_shows_origin(shell, capsys):
    shell.run_cell("%config AstroLogin.show_traceback = True")
    shell.run_cell(BAD_EMAIL_LOGIN)
    output = capsys.readouterr().out
    assert "Traceback (most recent call last)" in output
    assert "InvalidInputError" in output
    assert "emails.py" in output
    assert MESSAGE in output


def test_show_traceback_raises_original(shell):
    shell.run_line_magic("config", "AstroLogin.show_traceback = True")
    with pytest.raises(InvalidInputError, match=MESSAGE):
        shell.run_line_magic("astro_login", "localhost -e not-an-email -l")
    with pytest.raises(NotLoggedInError):
        shell.run_line_magic("astro_whoami", "")


def test_show_traceback_off_again(shell):
    shell.run_line_magic("config", "AstroLogin.show_traceback = True")
    shell.run_line_magic("config", "AstroLogin.show_traceback = False")
    with pytest.raises(UsageError, match=MESSAGE):
        shell.run_line_magic("astro_login", "localhost -e not-an-email -l")
    with pytest.raises(UsageError, match="Not logged in"):
        shell.run_line_magic("astro_whoami", "")


def test_argument_errors_stay_usage_errors(shell):
    # A line argparse cannot parse is the user's typo, not an error to debug.
    shell.run_line_magic("config", "AstroLogin.show_traceback = True")
    with pytest.raises(UsageError):
        shell.run_line_magic("astro_context", "rename localhost")


def test_python_call_error_is_one_line(shell, capsys):
    shell.run_cell("import astro_jupyter\nastro_jupyter.get_token()")
    output = capsys.readouterr()
    shown = output.out + output.err
    lines = [line for line in shown.splitlines() if line.strip()]
    assert len(lines) == 1, shown
    assert "NotLoggedInError" in lines[0]
    assert "Not logged in to Astro" in lines[0]


def test_python_call_error_full_on_request(shell, capsys):
    shell.run_cell("%config AstroLogin.show_traceback = True")
    shell.run_cell("import astro_jupyter\nastro_jupyter.get_token()")
    output = capsys.readouterr()
    shown = output.out + output.err
    assert "credentials.py" in shown
    assert "NotLoggedInError" in shown
