"""Add, remove or show the autoload entry in an environment's IPython kernel config.

Run ``python -m astro_jupyter.kernel_config enable|disable|status [--prefix PATH]``.

IPython kernels read ``{prefix}/etc/ipython/ipython_kernel_config.json`` (and
``.py``) but no ``.d`` folder, so one file serves every package that wants
kernels to load something. The wheel ships that file with only this package's
entry in ``IPKernelApp.extra_extensions``. pip (checked with pip 23.2) installs
a wheel's data file over an existing one without a warning, and uninstalling
either package deletes it. ``enable`` therefore merges the entry into the JSON
that is there and keeps every other key. ``disable`` removes only this
package's entry.

This module only edits that one JSON file. It does not import IPython and does
not read or change ``ipython_kernel_config.py``, which can also set
``extra_extensions``.

NOTE: pip's record of the installed wheel lists the JSON file, so uninstalling
astro_jupyter deletes it even after ``enable`` merged another package's keys
into it, and upgrading it writes the shipped file in its place. Either way the
other package's entries are gone until that package is reinstalled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .autoload import AUTOLOAD_ENV, autoload_enabled
from .errors import ConfigError

__all__ = [
    "AUTOLOAD_EXTENSION",
    "disable",
    "enable",
    "is_enabled",
    "kernel_config_path",
    "main",
]

AUTOLOAD_EXTENSION = "astro_jupyter.autoload"

# Every user of the environment's kernels must be able to read the file.
_NEW_FILE_MODE = 0o644


def kernel_config_path(prefix: str | os.PathLike[str] | None = None) -> Path:
    """Return the JSON kernel config of the environment at ``prefix`` (default: this one)."""
    return Path(prefix if prefix is not None else sys.prefix) / "etc" / "ipython" / (
        "ipython_kernel_config.json"
    )


def _read(path: Path) -> dict[str, Any]:
    """Return the parsed file, or an empty config when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(
            f"Cannot read {path}: {error.strerror or error}. Check the path and its permissions.",
            path=str(path),
        ) from error
    try:
        # A UnicodeDecodeError is a ValueError too.
        text = data.decode("utf-8")
        if not text.strip():
            return {}
        config = json.loads(text)
    except ValueError as error:
        raise ConfigError(
            f"Cannot parse {path} as JSON ({error}). The file was not changed; fix it by hand.",
            path=str(path),
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path} is not a JSON object. The file was not changed; fix it by hand.",
            path=str(path),
        )
    return config


def _extensions(config: dict[str, Any], path: Path) -> list[Any]:
    """Return ``IPKernelApp.extra_extensions`` of ``config``, or an empty list when unset."""
    app = config.get("IPKernelApp", {})
    if not isinstance(app, dict):
        raise ConfigError(
            f"IPKernelApp in {path} is not a JSON object. The file was not changed; "
            "fix it by hand.",
            path=str(path),
        )
    extensions = app.get("extra_extensions", [])
    if not isinstance(extensions, list):
        raise ConfigError(
            f"IPKernelApp.extra_extensions in {path} is not a list. The file was not changed; "
            "fix it by hand.",
            path=str(path),
        )
    return extensions


def _write(path: Path, config: dict[str, Any]) -> None:
    """Replace ``path`` with ``config`` in one rename, keeping the old file's mode."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    text = json.dumps(config, indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise ConfigError(
            f"Cannot write {path}: {error.strerror or error}. The file was not changed.",
            path=str(path),
        ) from error
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ConfigError(
                f"Cannot write {path}: {error.strerror or error}. The file was not changed.",
                path=str(path),
            ) from error
        raise


def is_enabled(path: Path) -> bool:
    """Tell whether the JSON kernel config at ``path`` lists the autoload extension."""
    return AUTOLOAD_EXTENSION in _extensions(_read(path), path)


def enable(path: Path) -> bool:
    """Add the autoload extension to the kernel config at ``path``, keeping every other key.

    Returns False when it was listed already, and the file is then untouched.

    Raises
    ------
    ConfigError
        The file cannot be read, parsed or written. It is then unchanged.
    """
    config = _read(path)
    extensions = _extensions(config, path)
    if AUTOLOAD_EXTENSION in extensions:
        return False
    app = config.setdefault("IPKernelApp", {})
    app["extra_extensions"] = [*extensions, AUTOLOAD_EXTENSION]
    _write(path, config)
    return True


def disable(path: Path) -> bool:
    """Remove the autoload extension from the kernel config at ``path``, and nothing else.

    Empty ``extra_extensions`` and ``IPKernelApp`` entries left behind are
    removed. The file itself stays, possibly as ``{}``, because pip deletes it
    when this package is uninstalled. Returns False when the extension was not
    listed, and the file is then untouched.

    Raises
    ------
    ConfigError
        The file cannot be read, parsed or written. It is then unchanged.
    """
    config = _read(path)
    extensions = _extensions(config, path)
    if AUTOLOAD_EXTENSION not in extensions:
        return False
    remaining = [name for name in extensions if name != AUTOLOAD_EXTENSION]
    app = config["IPKernelApp"]
    if remaining:
        app["extra_extensions"] = remaining
    else:
        del app["extra_extensions"]
        if not app:
            del config["IPKernelApp"]
    _write(path, config)
    return True


def _status_lines(path: Path) -> list[str]:
    listed = is_enabled(path)
    lines = [
        f"{path}: {'lists' if listed else 'does not list'} {AUTOLOAD_EXTENSION} "
        "in IPKernelApp.extra_extensions."
    ]
    python_config = path.with_suffix(".py")
    if python_config.exists():
        lines.append(f"Also present: {python_config}, which can change extra_extensions.")
    if listed and not autoload_enabled():
        lines.append(f"${AUTOLOAD_ENV} turns autoload off in this shell's environment.")
    lines.append(
        "A user's own IPKernelApp.extra_extensions setting (in ~/.ipython/profile_default/) "
        "replaces this list."
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m astro_jupyter.kernel_config",
        description=(
            "Turn loading astro_jupyter in every IPython kernel of an environment on or off, "
            "by editing that environment's etc/ipython/ipython_kernel_config.json."
        ),
    )
    parser.add_argument(
        "action",
        choices=["enable", "disable", "status"],
        help="enable: add the entry; disable: remove only this entry; status: show the file.",
    )
    parser.add_argument(
        "--prefix",
        default=sys.prefix,
        help="The environment's folder (default: this Python's sys.prefix, %(default)s).",
    )
    args = parser.parse_args(argv)
    # A mistyped --prefix would otherwise get a new etc/ipython folder that no
    # kernel reads, and the command would report success.
    if not os.path.isdir(args.prefix):
        print(f"error: --prefix {args.prefix!r} is not a folder; pass an environment's folder "
              "(its sys.prefix).", file=sys.stderr)
        return 1
    path = kernel_config_path(args.prefix)
    try:
        if args.action == "enable":
            if enable(path):
                print(f"Added {AUTOLOAD_EXTENSION} to {path}; new kernels load astro_jupyter.")
            else:
                print(f"{AUTOLOAD_EXTENSION} is already listed in {path}; nothing to do.")
        elif args.action == "disable":
            if disable(path):
                print(f"Removed {AUTOLOAD_EXTENSION} from {path}; new kernels do not load it.")
            else:
                print(f"{AUTOLOAD_EXTENSION} is not listed in {path}; nothing to do.")
        else:
            print("\n".join(_status_lines(path)))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
