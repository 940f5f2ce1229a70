"""Loading the extension stays cheap: the heavy libraries load on first use only."""

from __future__ import annotations

import json
import subprocess
import sys

LOAD_AND_LIST_MODULES = """
import json, sys
from IPython.testing.globalipapp import start_ipython
shell = start_ipython()
shell.run_line_magic("load_ext", "astro_jupyter")
heavy = ("ipywidgets", "requests", "ruamel.yaml", "filelock")
print(json.dumps({name: name in sys.modules for name in heavy}))
"""


def test_load_ext_imports_no_heavy_library():
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_AND_LIST_MODULES],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])

    assert loaded == {
        "ipywidgets": False,
        "requests": False,
        "ruamel.yaml": False,
        "filelock": False,
    }
