"""File access for the Astro CLI's config: reads, the CLI's lock and atomic replaces.

``hold_lock`` takes an exclusive ``flock(2)`` lock on a sidecar file, the kind
of lock the Astro CLI takes on ``config.yaml.lock`` while it writes, so the two
never interleave writes. ``replace_atomically`` writes a temporary file in the
same folder, syncs it to disk and renames it over the old file, so a crash
leaves either the old or the new file and never a truncated one. Every OS
error becomes a one-line ``ConfigError`` that names the path and a fix.

This module does not parse YAML and does not know the config's keys.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import ConfigError, ConfigLockTimeoutError

__all__ = [
    "CONFIG_FILE_MODE",
    "CONFIG_FOLDER_MODE",
    "ensure_folder",
    "hold_lock",
    "read_text",
    "replace_atomically",
]

log = logging.getLogger(__name__)

# The Astro CLI creates its folder with 0775 and the file with 0600. The file
# contains tokens, so every write sets 0600 again, even on a file that had 0644.
CONFIG_FOLDER_MODE = 0o775
CONFIG_FILE_MODE = 0o600

_ELSEWHERE = ", or set ASTRO_HOME to another folder"


def read_text(path: Path) -> str | None:
    """Return the text of the file at ``path``, or None when it does not exist.

    A symbolic link is followed.

    Raises
    ------
    ConfigError
        The path is a folder or another non-regular file, cannot be read, or is
        not UTF-8 text.
    """
    try:
        # O_NONBLOCK keeps a FIFO at this path from blocking the open. It has
        # no effect on a regular file.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _access_error("read", path, error) from error

    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(
                f"Cannot read {path}: it is a folder, not a file. Move that folder "
                f"away{_ELSEWHERE}.",
                path=str(path),
            )
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"Cannot read {path}: it is not a regular file. Replace it with the Astro CLI's "
                f"config file{_ELSEWHERE}.",
                path=str(path),
            )
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read()
    finally:
        os.close(descriptor)

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"Cannot parse {path}: byte {error.start} is not valid UTF-8. Fix or remove the "
            "file. It was not changed.",
            path=str(path),
        ) from None


def ensure_folder(folder: Path) -> None:
    """Create ``folder`` and its parents with mode 0775 (less the umask) when missing.

    Raises
    ------
    ConfigError
        The folder cannot be created, or a file is in its place.
    """
    try:
        folder.mkdir(mode=CONFIG_FOLDER_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(
            f"Cannot create the folder {folder}: a file is in its place. Move that file "
            f"away{_ELSEWHERE}.",
            path=str(folder),
        ) from None
    except OSError as error:
        raise _access_error("create the folder", folder, error) from error


@contextmanager
def hold_lock(lock_path: Path, timeout_s: float, *, holder: str) -> Iterator[None]:
    """Hold an exclusive ``flock(2)`` lock on ``lock_path`` for the ``with`` block.

    Parameters
    ----------
    lock_path
        The lock file. It is created with mode 0600 when missing and stays in
        place afterwards, so every process locks the same inode.
    timeout_s
        Maximum wait for the lock, in seconds.
    holder
        Who probably holds the lock, for the timeout message, such as
        ``"another process, maybe `astro`, is writing the config"``.

    Raises
    ------
    ConfigLockTimeoutError
        The lock was not free within ``timeout_s``.
    ConfigError
        The lock file cannot be created or opened.
    """
    # preserve_lock_file also turns off filelock's fallback to a lock made of
    # marker files, which the Astro CLI would not see.
    lock = FileLock(lock_path, timeout=timeout_s, mode=CONFIG_FILE_MODE, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigLockTimeoutError(
            f"Timed out after {timeout_s:g} s waiting for the lock {lock_path}: {holder}. "
            "Try again when it has finished.",
            path=str(lock_path),
        ) from None
    except OSError as error:
        raise _access_error("lock", lock_path, error) from error

    try:
        yield
    finally:
        lock.release()


def replace_atomically(path: Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` in one rename, with mode 0600.

    The temporary file is written in the same folder, synced and renamed over
    the file, then the folder is synced. When ``path`` is a symbolic link, the
    file it points to is replaced and the link stays. No temporary file
    remains, also when a step fails.

    Raises
    ------
    ConfigError
        A step failed. The old file is then unchanged.
    """
    target = Path(os.path.realpath(path))
    folder = target.parent
    try:
        descriptor, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=folder
        )
    except OSError as error:
        raise _write_error(path, folder, error) from error

    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), CONFIG_FILE_MODE)
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, target)
    except OSError as error:
        _remove_temporary(temp_name)
        raise _write_error(path, folder, error) from error
    except BaseException:
        _remove_temporary(temp_name)
        raise

    _sync_folder(folder)


def _remove_temporary(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove the temporary file %s: %s", name, error.strerror)


def _sync_folder(folder: Path) -> None:
    # The rename is durable only once the folder entry is on disk. The file is
    # already replaced here, so a failure is logged and not raised.
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        log.warning("could not open %s to sync it: %s", folder, error.strerror)
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        log.warning("could not sync the folder %s: %s", folder, error.strerror)
    finally:
        os.close(descriptor)


def _access_error(action: str, path: Path, error: OSError) -> ConfigError:
    if isinstance(error, PermissionError):
        reason = "permission denied"
        fix = f"Give your user access to it and to its folder{_ELSEWHERE}."
    elif isinstance(error, IsADirectoryError):
        reason = "it is a folder, not a file"
        fix = f"Move that folder away{_ELSEWHERE}."
    else:
        reason = error.strerror or type(error).__name__
        fix = f"Check the path{_ELSEWHERE}."
    return ConfigError(f"Cannot {action} {path}: {reason}. {fix}", path=str(path))


def _write_error(path: Path, folder: Path, error: OSError) -> ConfigError:
    if isinstance(error, PermissionError):
        reason = f"permission denied in the folder {folder}"
        fix = f"Make the folder writable (chmod u+w {folder}){_ELSEWHERE}."
    else:
        reason = error.strerror or str(error) or type(error).__name__
        fix = f"Check the folder {folder} and its disk{_ELSEWHERE}."
    return ConfigError(
        f"Cannot write {path}: {reason}. The file was not changed. {fix}", path=str(path)
    )
