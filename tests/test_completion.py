"""Tests of tab completion for the magics, through IPython's own completer.

Completions come from a hand-written config.yaml; the emulator is running so
that a request sent while completing would show up in its log.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from IPython.core.completer import provisionalcompleter

from astro_jupyter.config_store import ConfigStore

CONFIG = """\
context: localhost
contexts:
    astronomer_io:
        domain: astronomer.io
        workspace: clx0cloudws
    localhost:
        domain: localhost
        workspace: clx0ws1
        last_used_workspace: clx0ws2
"""

pytestmark = [
    pytest.mark.usefixtures("emulator_settings"),
    # InteractiveShell.complete is the documented way to ask for the matches of
    # a line; the Completer method it calls is only marked for deprecation.
    pytest.mark.filterwarnings("ignore:`Completer.complete` is pending deprecation"),
]


@pytest.fixture
def config(astro_config_path):
    astro_config_path.parent.mkdir(parents=True)
    astro_config_path.write_text(CONFIG, encoding="utf-8")
    return astro_config_path


def complete(shell, line):
    """Return the matches IPython offers with the cursor at the end of ``line``."""
    _text, matches = shell.complete("", line, len(line))
    return matches


CONFIG_VALUES = {"astronomer.io", "localhost", "clx0cloudws", "clx0ws1", "clx0ws2"}


def offers_config_values(matches):
    """Tell whether ``matches`` contain a domain or workspace id from CONFIG."""
    return not CONFIG_VALUES.isdisjoint(matches)


@pytest.mark.parametrize(
    "line", ["%astro_login ", "%astro_logout ", "%astro_whoami ", "%astro_context switch "]
)
def test_domains_current_first(shell, config, emulator, line):
    assert complete(shell, line) == ["localhost", "astronomer.io"]
    assert emulator.requests == []


def test_domain_prefix_filtered(shell, config):
    assert complete(shell, "%astro_login astr") == ["astronomer.io"]
    assert complete(shell, "astro_whoami loc") == ["localhost"]


def test_login_options(shell, config):
    assert complete(shell, "%astro_login --no") == ["--no-widget"]
    assert "--timeout" in complete(shell, "%astro_login localhost -")


def test_no_domains_for_option_values(shell, config):
    for line in ("%astro_login -e ", "%astro_login -t ", "%astro_login --timeout "):
        assert "localhost" not in complete(shell, line)


def test_no_domain_after_domain(shell, config):
    assert "localhost" not in complete(shell, "%astro_whoami localhost ")


def test_context_actions(shell, config):
    assert complete(shell, "%astro_context ") == ["list", "switch"]
    assert complete(shell, "%astro_context sw") == ["switch"]
    assert complete(shell, "%astro_workspace ") == ["list", "switch"]


def test_workspace_ids_of_current_context(shell, config, emulator):
    assert complete(shell, "%astro_workspace switch ") == ["clx0ws1", "clx0ws2"]
    assert complete(shell, "%astro_workspace switch clx0ws2") == ["clx0ws2"]
    assert emulator.requests == []


def test_workspace_ids_of_named_domain(shell, config):
    line = "%astro_workspace --domain astronomer.io switch "
    assert complete(shell, line) == ["clx0cloudws"]
    assert complete(shell, "%astro_workspace --domain ") == ["localhost", "astronomer.io"]


def test_completer_api_offers_domains(shell, config):
    line = "%astro_context switch l"
    with provisionalcompleter():
        texts = [completion.text for completion in shell.Completer.completions(line, len(line))]
    assert "localhost" in texts


def test_no_config_file(shell, astro_config_path, emulator):
    assert not offers_config_values(complete(shell, "%astro_workspace switch "))
    assert not offers_config_values(complete(shell, "%astro_login "))
    assert not astro_config_path.parent.exists()
    assert emulator.requests == []


def test_unparsable_config_gives_nothing(shell, astro_config_path):
    astro_config_path.parent.mkdir(parents=True)
    astro_config_path.write_text("contexts: [unclosed\n", encoding="utf-8")
    assert not offers_config_values(complete(shell, "%astro_context switch "))
    assert not offers_config_values(complete(shell, "%astro_workspace switch "))
    assert astro_config_path.read_text(encoding="utf-8") == "contexts: [unclosed\n"


def test_held_lock_gives_nothing(shell, config):
    lock_path = ConfigStore(config).lock_path
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            f"lock = open({str(lock_path)!r}, 'a')\n"
            "fcntl.flock(lock, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        assert not offers_config_values(complete(shell, "%astro_context switch "))
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
    assert complete(shell, "%astro_context switch ") == ["localhost", "astronomer.io"]


def kernel_matches(kernel, code):
    """Return the matches a real kernel sends for a complete_request at the end of ``code``."""
    msg_id = kernel.kc.complete(code, len(code))
    while True:
        reply = kernel.kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]["matches"]


def test_kernel_offers_only_our_matches(config, start_kernel, kernel_env):
    # A kernel completes with Jedi too, whose matches (builtins after "-",
    # keywords after a space) must not bury the magic's own.
    kernel = start_kernel(kernel_env)
    kernel.execute("%load_ext astro_jupyter")

    assert kernel_matches(kernel, "%astro_login --e") == ["--email"]
    assert kernel_matches(kernel, "%astro_login -")[:2] == ["-e", "--email"]
    assert "-abs" not in kernel_matches(kernel, "%astro_login -")
    assert kernel_matches(kernel, "%astro_login ") == ["localhost", "astronomer.io"]
    assert kernel_matches(kernel, "%astro_workspace switch clx") == ["clx0ws1", "clx0ws2"]
