"""Loading the extension stays cheap: the heavy libraries load on first use only.

Each check runs in a new Python process, because this test process has long
imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell

HEAVY = ("ipywidgets", "requests", "ruamel.yaml", "filelock")

LOAD_AND_LIST_MODULES = """
import json, sys
from IPython.testing.globalipapp import start_ipython
shell = start_ipython()
shell.run_line_magic("load_ext", {extension!r})
{after_load}
heavy = {heavy!r}
print(json.dumps({{
    "heavy": {{name: name in sys.modules for name in heavy}},
    "magics": sorted(name for name in shell.magics_manager.magics["line"]
                     if name.startswith("astro_")),
}}))
"""

ALL_MAGICS = ["astro_context", "astro_login", "astro_logout", "astro_whoami", "astro_workspace"]


def load_in_new_process(extension: str, after_load: str = "") -> dict:
    """Load ``extension`` in a new IPython shell and return its heavy imports and astro magics."""
    script = LOAD_AND_LIST_MODULES.format(extension=extension, after_load=after_load, heavy=HEAVY)
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_load_ext_imports_no_heavy_library():
    loaded = load_in_new_process("astro_jupyter")

    assert loaded["heavy"] == {
        "ipywidgets": False,
        "requests": False,
        "ruamel.yaml": False,
        "filelock": False,
    }
    assert loaded["magics"] == ALL_MAGICS


def test_autoload_imports_no_heavy_library():
    loaded = load_in_new_process("astro_jupyter.autoload")

    assert not any(loaded["heavy"].values()), loaded["heavy"]
    assert loaded["magics"] == ALL_MAGICS


def test_completing_imports_no_http_or_widgets():
    # The first completion reads config.yaml, which needs the YAML library
    # and filelock, but neither requests nor ipywidgets.
    loaded = load_in_new_process(
        "astro_jupyter", after_load='shell.complete("", "%astro_login ", 13)'
    )

    assert loaded["heavy"]["requests"] is False
    assert loaded["heavy"]["ipywidgets"] is False
    assert loaded["heavy"]["ruamel.yaml"] is True


@pytest.fixture
def bare_shell():
    """Yield the in-process IPython shell without astro_jupyter loaded."""
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_autoload_switched_off(bare_shell, monkeypatch, value):
    monkeypatch.setenv("ASTRO_JUPYTER_AUTOLOAD", value)
    bare_shell.extension_manager.load_extension("astro_jupyter.autoload")
    assert bare_shell.find_line_magic("astro_login") is None

    # An explicit %load_ext ignores the variable.
    bare_shell.run_line_magic("load_ext", "astro_jupyter")
    assert bare_shell.find_line_magic("astro_login") is not None


@pytest.mark.parametrize("value", ["", "1", "yes", "maybe"])
def test_autoload_switched_on(bare_shell, monkeypatch, value):
    monkeypatch.setenv("ASTRO_JUPYTER_AUTOLOAD", value)
    bare_shell.extension_manager.load_extension("astro_jupyter.autoload")
    assert bare_shell.find_line_magic("astro_login") is not None


def test_load_ext_after_autoload_is_silent(bare_shell, capsys):
    bare_shell.extension_manager.load_extension("astro_jupyter.autoload")
    bare_shell.run_line_magic("load_ext", "astro_jupyter")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""
    assert bare_shell.find_line_magic("astro_whoami") is not None
    settings = [item for item in bare_shell.configurables if type(item).__name__ == "AstroLogin"]
    assert len(settings) == 1
