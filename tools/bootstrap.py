"""Create the repository's virtual environment ``.venv`` and install the project into it.

Shared by ``tools/demo.py`` and ``tools/test.py``. This module uses only the
standard library, because it runs under whatever Python 3 started the tool,
before anything is installed. It never touches the user's other environments.
The one system package it installs is Debian's ``chromium``, for the browser
tests, and only when it runs as root with apt-get available.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

__all__ = [
    "CHROMIUM_PATH",
    "REPO_ROOT",
    "VENV_DIR",
    "ensure_chromium",
    "ensure_venv",
    "reexec_in_venv",
    "venv_environ",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_DIR = REPO_ROOT / ".venv"
MIN_PYTHON = (3, 10)
# Debian's Chromium, which the browser tests in tests/browser drive through
# Playwright. Playwright's own browser download is not used.
CHROMIUM_PATH = Path("/usr/bin/chromium")

# Written after a successful install. It stores a hash of pyproject.toml and the
# interpreter that the venv's python links to, so a later run skips pip (which
# takes about 8 s on a 2-core machine even when nothing changes) until either
# changes. The install is editable, so source edits never need a reinstall.
_STAMP_FILE = VENV_DIR / ".astro_jupyter-installed"


def venv_python() -> Path:
    """Return the path of the virtual environment's Python interpreter."""
    if os.name == "nt":
        return VENV_DIR / "Scripts" / "python.exe"
    return VENV_DIR / "bin" / "python"


def running_in_venv() -> bool:
    """Return whether this interpreter is the one in ``.venv``."""
    return Path(sys.prefix).resolve() == VENV_DIR.resolve()


def venv_environ() -> dict[str, str]:
    """Return a copy of the environment with ``.venv`` activated, as its activate script does."""
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(VENV_DIR)
    env["PATH"] = os.pathsep.join([str(venv_python().parent), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


def ensure_venv() -> Path:
    """Create or reuse ``.venv``, install the project with its test extras, and return its Python.

    Exits the process with a one-line message when Python is too old, the
    environment cannot be created, or pip fails (pip prints its own errors).
    """
    _check_python_version()
    python = venv_python()
    if not python.exists():
        _create_venv()
    _check_venv_python(python)

    stamp = _install_stamp(python)
    if _STAMP_FILE.exists() and _STAMP_FILE.read_text(encoding="utf-8") == stamp:
        print(f"Reusing {VENV_DIR} (pyproject.toml unchanged since the last install).", flush=True)
        return python

    _install_project(python)
    _STAMP_FILE.write_text(stamp, encoding="utf-8")
    return python


def ensure_chromium() -> Path:
    """Return the path of Debian's Chromium, installing the ``chromium`` package if it is missing.

    It runs ``apt-get update`` and ``apt-get install -y chromium`` only when
    this process is root and apt-get exists. Otherwise, and when apt-get fails,
    it exits the process with a one-line message that gives the install command.
    """
    if CHROMIUM_PATH.exists():
        return CHROMIUM_PATH
    apt_get = shutil.which("apt-get")
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if apt_get is None or not is_root:
        sys.exit(
            f"Chromium is missing at {CHROMIUM_PATH}, and the browser tests need it. "
            "Install it as root with: apt-get update && apt-get install -y chromium"
        )

    print(f"Chromium is missing at {CHROMIUM_PATH}; installing it with apt-get ...", flush=True)
    # Without this, a package's configuration prompt would wait for input.
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in ([apt_get, "update"], [apt_get, "install", "-y", "chromium"]):
        result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            command_line = " ".join(["apt-get", *command[1:]])
            sys.exit(
                f"{command_line} failed with exit code {result.returncode}; see its errors above."
            )
    if not CHROMIUM_PATH.exists():
        sys.exit(
            f"apt-get installed the chromium package, but {CHROMIUM_PATH} still does not exist."
        )
    return CHROMIUM_PATH


def reexec_in_venv(script: str) -> None:
    """Run ``script`` again under the ``.venv`` Python with the same arguments, if not there yet.

    Returns only when the current interpreter is the one in ``.venv``. Otherwise
    this process is replaced (POSIX) or exits with the child's exit code.
    """
    if running_in_venv():
        return
    python = ensure_venv()
    argv = [str(python), str(Path(script).resolve()), *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(argv[0], argv, venv_environ())
    completed = subprocess.run(argv, env=venv_environ(), check=False)
    sys.exit(completed.returncode)


def _check_python_version() -> None:
    if sys.version_info < MIN_PYTHON:
        found = ".".join(str(part) for part in sys.version_info[:3])
        required = ".".join(str(part) for part in MIN_PYTHON)
        sys.exit(
            f"Python {required} or newer is required, but this is Python {found}: {sys.executable}"
        )


def _create_venv() -> None:
    print(f"Creating the virtual environment {VENV_DIR} ...", flush=True)
    try:
        venv.EnvBuilder(with_pip=True).create(VENV_DIR)
    except (OSError, subprocess.CalledProcessError) as error:
        # Debian and Ubuntu ship ensurepip separately, so a bare python3 fails here.
        # The half-made folder would be reused next time, so remove it.
        shutil.rmtree(VENV_DIR, ignore_errors=True)
        sys.exit(
            f"Creating {VENV_DIR} failed: {error}. On Debian or Ubuntu, install the "
            "python3-venv package and run this command again."
        )


def _check_venv_python(python: Path) -> None:
    result = subprocess.run(
        [str(python), "-c", "import sys, pip; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(
            f"The virtual environment {VENV_DIR} is broken (its Python or pip does not start). "
            "Delete that folder and run this command again."
        )
    version = tuple(int(part) for part in result.stdout.strip().split("."))
    if version < MIN_PYTHON:
        sys.exit(
            f"{VENV_DIR} was made with Python {result.stdout.strip()}, but the project needs "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer. Delete that folder and run this command "
            "again with a newer python3."
        )


def _install_stamp(python: Path) -> str:
    digest = hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{python.resolve()} {digest}\n"


def _install_project(python: Path) -> None:
    print(
        f"Installing astro_jupyter with its test dependencies into {VENV_DIR} "
        "(pip install -e '.[test]', showing errors only) ...",
        flush=True,
    )
    _STAMP_FILE.unlink(missing_ok=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--quiet", "--editable", ".[test]"],
        cwd=REPO_ROOT,
        env=venv_environ(),
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"pip install failed with exit code {result.returncode}; see its errors above.")
