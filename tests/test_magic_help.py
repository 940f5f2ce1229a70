"""Every magic documents itself: ``%magic?`` shows usage, options and examples."""

from __future__ import annotations

import pytest

# Each magic with its usage line and options as argparse prints them.
HELP = {
    "astro_login": (
        "%astro_login [-e EMAIL] [-l] [-t [TOKEN]] [--timeout SECONDS] [--no-widget]",
        ["-e EMAIL, --email EMAIL", "-l, --link", "--token",
         "--timeout SECONDS", "--no-widget"],
    ),
    "astro_logout": ("%astro_logout [domain]", ["domain"]),
    "astro_whoami": ("%astro_whoami [domain]", ["domain"]),
    "astro_context": ("%astro_context [{list,switch}] [domain]", ["{list,switch}", "domain"]),
    "astro_workspace": (
        "%astro_workspace [--domain DOMAIN] [{list,switch}] [workspace ...]",
        ["--domain DOMAIN", "{list,switch}", "workspace"],
    ),
}


@pytest.mark.parametrize("magic", sorted(HELP))
def test_question_mark_shows_help(shell, capsys, magic):
    usage, options = HELP[magic]
    shell.run_cell(f"%{magic}?")
    page = capsys.readouterr().out

    # argparse wraps the usage line to the terminal width.
    assert usage in " ".join(page.split())
    for option in options:
        assert option in page
    examples = page.split("Examples\n--------\n", 1)
    assert len(examples) == 2, f"%{magic}? shows no Examples section"
    assert f"In [1]: %{magic}" in examples[1] or f"In [2]: %{magic}" in examples[1]


@pytest.mark.parametrize("magic", sorted(HELP))
def test_every_argument_has_help(shell, magic):
    parser = shell.find_line_magic(magic).__func__.parser
    for action in parser._actions:
        assert action.help, f"%{magic} {action.dest} has no help text"
