#!/usr/bin/env python3
"""Run the test suite in the repository's ``.venv``, creating and installing it first.

Usage: ``python3 tools/test.py [PYTEST ARGUMENTS ...]``

pytest runs in the repository root, so give test paths relative to it, for
example ``python3 tools/test.py tests/test_magic_kernel.py -x``. The exit code
is pytest's. pytest's code 5 (no tests collected) is reported as a failure.

The browser tests need Debian's Chromium at ``/usr/bin/chromium``. When it is
missing, this installs it with apt-get if run as root, and otherwise exits
with the command to install it.
"""

from __future__ import annotations

import subprocess
import sys

import bootstrap

# pytest's exit code when it collected no tests.
_NO_TESTS_COLLECTED = 5


def main() -> int:
    python = bootstrap.ensure_venv()
    bootstrap.ensure_chromium()
    command = [str(python), "-m", "pytest", *sys.argv[1:]]
    print("Running:", " ".join(["python", "-m", "pytest", *sys.argv[1:]]), flush=True)
    try:
        completed = subprocess.run(
            command, cwd=bootstrap.REPO_ROOT, env=bootstrap.venv_environ(), check=False
        )
    except KeyboardInterrupt:
        return 130
    if completed.returncode == _NO_TESTS_COLLECTED:
        print("pytest collected no tests; this counts as a failure.", file=sys.stderr)
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
