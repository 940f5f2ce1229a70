"""File access for the Astro CLI's config: reads, the CLI's lock and atomic replaces.

``hold_lock`` takes an exclusive ``flock(2)`` lock on a sidecar file, the kind
of lock the Astro CLI takes on ``config.yaml.lock`` while it writes, so the two
never interleave writes. ``replace_atomically`` writes a temporary file in the
same folder, syncs it to disk and renames it over the old file, so a crash
leaves either the old or the new file and never a truncated one. Every OS
error becomes a one-line ``ConfigError`` that names the path and a fix.

A config file may be a symbolic link, as when dotfiles are kept in a
repository: ``resolve_file`` finds the file it points to, which is the file
that gets replaced, so the link stays a link. Lock files and temporary files
are never followed through a link, so a link planted in their place cannot
redirect a write.

This module does not parse YAML and does not know the config's keys.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import ConfigError, ConfigLockTimeoutError

__all__ = [
    "CONFIG_FILE_MODE",
    "CONFIG_FOLDER_MODE",
    "MAX_FILE_BYTES",
    "ensure_folder",
    "hold_lock",
    "read_text",
    "remove_stale_temporaries",
    "replace_atomically",
    "resolve_file",
]

log = logging.getLogger(__name__)

# The Astro CLI creates its folder with 0775 and the file with 0600. The file
# contains tokens, so every write sets 0600 again, even on a file that had 0644.
CONFIG_FOLDER_MODE = 0o775
CONFIG_FILE_MODE = 0o600

# A CLI-written config with a few contexts is under 10 KiB, so this leaves a
# hundredfold margin. ruamel.yaml 0.19's round-trip parser takes seconds per
# MiB (about 10 s for 60,000 one-line keys on a 2-core VM), so a larger file is
# rejected before parsing rather than stalling every read.
MAX_FILE_BYTES = 1024 * 1024

_ELSEWHERE = ", or set ASTRO_HOME to another folder"

# Temporary files are ".<name>.<16 hex digits>.tmp" in the folder of the file.
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_TOKEN_BYTES = 8


def read_text(path: Path) -> str | None:
    """Return the text of the file at ``path``, or None when it does not exist.

    A symbolic link is followed.

    Raises
    ------
    ConfigError
        The path is a folder or another non-regular file, cannot be read, or is
        not UTF-8 text, or is larger than ``MAX_FILE_BYTES``.
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
        # A file growing while it is read is cut at the limit and rejected too.
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(
                f"Cannot read {path}: it is larger than {MAX_FILE_BYTES // 1024} KiB, far larger "
                "than an Astro config, so it was not parsed. Fix or remove the file. It was not "
                "changed.",
                path=str(path),
            )
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


def resolve_file(path: Path) -> Path:
    """Return the absolute path of the file at ``path``, with every symbolic link resolved.

    A missing file is not an error: its path is returned with the links in
    its folder resolved.

    Raises
    ------
    ConfigError
        ``path`` is a symbolic link whose target does not exist, or a loop of links.
    """
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        is_link = False
    except OSError as error:
        raise _access_error("read", path, error) from error
    if not is_link:
        return Path(os.path.realpath(path))

    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        raise ConfigError(
            f"Cannot use {path}: it is a symbolic link to {_link_text(path)}, which does not "
            "exist. Create that file or remove the link.",
            path=str(path),
        ) from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(
                f"Cannot use {path}: it is a symbolic link that leads back to itself (a loop "
                "of links). Remove the link.",
                path=str(path),
            ) from None
        raise _access_error("read", path, error) from error


def _link_text(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "a missing file"


@contextmanager
def hold_lock(lock_path: Path, timeout_s: float, *, holder: str) -> Iterator[None]:
    """Hold an exclusive ``flock(2)`` lock on ``lock_path`` for the ``with`` block.

    Parameters
    ----------
    lock_path
        The lock file. It is created with mode 0600 when missing and stays in
        place afterwards, so every process locks the same inode. It is never
        truncated, and a symbolic link in its place is rejected, never followed.
    timeout_s
        Maximum wait for the lock, in seconds.
    holder
        Who probably holds the lock, for the timeout message, such as
        ``"another process, maybe `astro`, is writing the config"``.

    Raises
    ------
    ConfigLockTimeoutError
        The lock was not free within ``timeout_s``. Nothing was written.
    ConfigError
        The lock file cannot be created or opened, or is not a regular file.
    """
    _check_lock_file(lock_path)
    # preserve_lock_file also turns off filelock's fallback to a lock made of
    # marker files, which the Astro CLI would not see. filelock opens the file
    # with O_NOFOLLOW since 3.20.1, which rejects a link planted between the
    # check above and the open.
    lock = FileLock(lock_path, timeout=timeout_s, mode=CONFIG_FILE_MODE, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigLockTimeoutError(
            f"Timed out after {timeout_s:g} s waiting for the lock {lock_path}: {holder}. "
            "Nothing was written. Try again when it has finished.",
            path=str(lock_path),
        ) from None
    except OSError as error:
        raise _access_error("lock", lock_path, error) from error

    try:
        yield
    finally:
        lock.release()


def _check_lock_file(lock_path: Path) -> None:
    try:
        status = os.lstat(lock_path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise _access_error("lock", lock_path, error) from error
    mode = status.st_mode
    if stat.S_ISLNK(mode):
        raise ConfigError(
            f"Cannot lock {lock_path}: it is a symbolic link (to {_link_text(lock_path)}), and "
            "a lock file must be a regular file. Remove the link; the next write creates the "
            "file.",
            path=str(lock_path),
        )
    if not stat.S_ISREG(mode):
        raise ConfigError(
            f"Cannot lock {lock_path}: it is not a regular file. Move it away; the next write "
            "creates the file.",
            path=str(lock_path),
        )
    if status.st_nlink > 1:
        # filelock 3.x opens an existing lock file with O_TRUNC and sets its
        # mode, which would empty and chmod every other name of the same file.
        raise ConfigError(
            f"Cannot lock {lock_path}: it is a hard link to a file with another name. Remove "
            "it; the next write creates the file.",
            path=str(lock_path),
        )


def _writable(target: Path) -> bool:
    """Tell whether this account may write ``target`` and someone may at all."""
    if not os.access(target, os.W_OK):
        return False
    return bool(os.stat(target).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def replace_atomically(target: Path, text: str, *, shown_path: Path | None = None) -> None:
    """Replace the file ``target`` with ``text`` in one rename, with mode 0600.

    ``target`` must be the file itself, not a symbolic link (see
    ``resolve_file``). The temporary file is created exclusively under an
    unpredictable name in the same folder, written, synced and renamed over
    ``target``, then the folder is synced. A read-only file is not replaced.
    A file owned by another account keeps its owner and group, or, when that
    cannot be arranged, is not replaced either. A file of this account keeps
    its group when the account may set it. No temporary file remains, also
    when a step fails. Messages name ``shown_path``, the path the user gave,
    when given.

    Raises
    ------
    ConfigError
        A step failed. The old file is then unchanged.
    """
    path = shown_path or target
    folder = target.parent
    # A rename would replace a read-only file as long as the folder is
    # writable, but the Astro CLI, which writes in place, could not. Root
    # passes os.access for any file, so a file with no write bit at all is
    # read-only for root too: someone made it so on purpose.
    if os.path.lexists(target) and not _writable(target):
        raise ConfigError(
            f"Cannot write {path}: the file is read-only for this account. Have its owner make "
            f"it writable (chmod u+w {target}){_ELSEWHERE}. The file was not changed.",
            path=str(path),
        )
    owner = _owner_to_keep(target)
    try:
        descriptor, temp_name = _create_temporary(target)
    except OSError as error:
        raise _write_error(path, folder, error) from error

    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), CONFIG_FILE_MODE)
            if owner is not None:
                _keep_owner(file.fileno(), owner, path)
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


def _owner_to_keep(target: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(target)
    except OSError:
        return None
    if (status.st_uid, status.st_gid) == (os.geteuid(), os.getegid()):
        return None
    return status.st_uid, status.st_gid


def _keep_owner(descriptor: int, owner: tuple[int, int], path: Path) -> None:
    try:
        os.fchown(descriptor, *owner)
    except PermissionError:
        if owner[0] == os.geteuid():
            # The user's own file in a group the user is not in, as after
            # "sudo cp" and "chown user": it gets the user's group instead.
            log.debug("could not keep the group %d of %s", owner[1], path)
            return
        raise ConfigError(
            f"Cannot write {path}: it belongs to another account (uid {owner[0]}, gid "
            f"{owner[1]}), and replacing it would make it yours. Write it as that account, or "
            "copy it to a file of your own and set ASTRO_HOME. The file was not changed.",
            path=str(path),
        ) from None


def _create_temporary(target: Path) -> tuple[int, str]:
    # O_EXCL with O_NOFOLLOW fails on any existing entry, a link included, so
    # a file or link planted under a guessed name is never written through.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _attempt in range(100):
        token = secrets.token_hex(_TEMPORARY_TOKEN_BYTES)
        name = str(target.with_name(f".{target.name}.{token}{_TEMPORARY_SUFFIX}"))
        try:
            return os.open(name, flags, CONFIG_FILE_MODE), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name for a temporary file", str(target.parent))


def remove_stale_temporaries(target: Path) -> int:
    """Delete temporary files that an interrupted write of ``target`` left, and count them.

    Call it only while holding the lock that every writer of ``target``
    holds: writers create temporary files only under that lock, so any one
    found then belongs to a writer that died. They are removed because they
    contain tokens. Only regular files with this module's name pattern are
    touched.
    """
    pattern = re.compile(
        re.escape(f".{target.name}.")
        + f"[0-9a-f]{{{2 * _TEMPORARY_TOKEN_BYTES}}}"
        + re.escape(_TEMPORARY_SUFFIX)
    )
    removed = 0
    try:
        names = os.listdir(target.parent)
    except OSError:
        return 0
    for name in names:
        if not pattern.fullmatch(name):
            continue
        stale = target.parent / name
        try:
            if not stat.S_ISREG(os.lstat(stale).st_mode):
                continue
            os.unlink(stale)
        except OSError as error:
            log.warning("could not remove the stale temporary file %s: %s", stale, error.strerror)
            continue
        log.info("removed %s, left by a write that was interrupted", stale)
        removed += 1
    return removed


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
    elif error.errno == errno.ELOOP:
        reason = "it is a symbolic link, which is not followed here"
        fix = "Remove the link."
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
