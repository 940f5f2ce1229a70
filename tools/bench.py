#!/usr/bin/env python3
"""Run the benchmarks in the repository's ``.venv``, creating and installing it first.

Usage: ``python3 tools/bench.py [--quick] [--processes N] [--rounds N] [--output PATH]``

The arguments go to ``benchmarks/run.py`` unchanged (see its ``--help``). A
full run takes about 50 seconds on a quiet 2-core machine and rewrites
``docs/benchmarks.md``. The exit code is that of ``benchmarks/run.py``.
"""

from __future__ import annotations

import subprocess
import sys

import bootstrap

BENCHMARK_SCRIPT = bootstrap.REPO_ROOT / "benchmarks" / "run.py"


def main() -> int:
    python = bootstrap.ensure_venv()
    command = [str(python), str(BENCHMARK_SCRIPT), *sys.argv[1:]]
    try:
        completed = subprocess.run(
            command, cwd=bootstrap.REPO_ROOT, env=bootstrap.venv_environ(), check=False
        )
    except KeyboardInterrupt:
        return 130
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
