"""Access to the Astro CLI's config file: cached reads and locked, atomic changes.

``ConfigFileAccess`` parses ``config.yaml`` once per version of the file, once
that version is a few seconds old (see ``config_cache``). It reads the file
under the CLI's lock on ``config.yaml.lock`` when it can, and applies a change
to the parsed document under that lock before replacing the file atomically.
It also takes the renewal lock on ``config.yaml.renew.lock`` that serialises
token refreshes.
``config_path`` resolves the file's path as the CLI does.

When ``config.yaml`` is a symbolic link, the file it points to is read and
replaced, and the link stays. Each lock is then taken twice, in this order:
beside the link, where the Astro CLI takes it, and beside the target, so that
two links to one file, or a link and the file's own path, share a lock. The
renewal locks are always taken before the config locks, and of each kind the
lock beside the link before the lock beside the target, so two processes
cannot wait for each other in a cycle (unless a link is changed to point
elsewhere while they wait).

This module does not know which keys contain a login: ``config_store`` builds
the login API on top of it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from .config_cache import FileSignature, ParsedFileCache
from .config_files import (
    ensure_folder,
    hold_lock,
    read_text,
    remove_stale_temporaries,
    replace_atomically,
    resolve_file,
)
from .config_yaml import ConfigDocument, load_document
from .errors import ConfigError, ConfigLockTimeoutError, InvalidInputError

__all__ = ["DEFAULT_LOCK_TIMEOUT_S", "ConfigFileAccess", "config_path"]

log = logging.getLogger(__name__)

# The Astro CLI waits up to 10 s for config.yaml.lock.
DEFAULT_LOCK_TIMEOUT_S = 10.0


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Return the path of the Astro CLI's config file, as the CLI resolves it.

    That is ``$ASTRO_HOME/.astro/config.yaml`` when ``ASTRO_HOME`` is set and
    not empty, else ``.astro/config.yaml`` under ``HOME`` (or the account's
    home folder when ``environ`` has no ``HOME``). A relative path is made
    absolute now, so a later ``os.chdir`` in the notebook does not move it.
    """
    astro_home = environ.get("ASTRO_HOME", "")
    if astro_home:
        base = Path(astro_home)
    else:
        home = environ.get("HOME", "")
        base = Path(home) if home else Path.home()
    return (base / ".astro" / "config.yaml").absolute()


class ConfigFileAccess:
    """Cached reads and locked, atomic changes of one Astro CLI config file.

    Parameters
    ----------
    path
        The config file.
    lock_timeout_s
        Maximum wait for the CLI's lock on the config file, in seconds.

    Notes
    -----
    Reads also take the lock when they can, because the Astro CLI rewrites
    the file in place and a read during that rewrite would see part of it.
    """

    def __init__(self, path: Path, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        if not lock_timeout_s >= 0:
            raise InvalidInputError(
                f"Invalid lock_timeout_s {lock_timeout_s!r}: expected a number of seconds >= 0."
            )
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._cache = ParsedFileCache()
        # SHA-256 digests of refresh tokens this process spent without saving
        # what replaced them; sending one again would only be rejected.
        self._spent_refresh_digests: set[str] = set()

    @property
    def lock_path(self) -> Path:
        """The sidecar lock file that the Astro CLI locks while it writes, beside ``path``."""
        return _sidecar(self.path, ".lock")

    @property
    def renewal_lock_path(self) -> Path:
        """The sidecar lock file that serialises token refreshes across processes."""
        return _sidecar(self.path, ".renew.lock")

    def renewal_lock_paths(self) -> list[Path]:
        """Return the renewal lock files that :meth:`renewal_lock` takes, in order.

        That is :attr:`renewal_lock_path`, plus the one beside the file that
        ``path`` links to when ``path`` is a symbolic link.

        Raises
        ------
        ConfigError
            ``path`` is a dangling symbolic link or a loop of links.
        """
        return _lock_paths(self.path, resolve_file(self.path), ".renew.lock")

    @contextmanager
    def renewal_lock(self, timeout_s: float | None = None) -> Iterator[None]:
        """Hold the lock that serialises token refreshes, across processes.

        A caller holds it from re-reading the context, through the refresh
        request, to saving the new tokens, so two processes never spend the
        same rotating refresh token. It is an exclusive ``flock(2)`` on
        ``config.yaml.renew.lock``, separate from the config write lock.

        Parameters
        ----------
        timeout_s
            Maximum wait for the lock, in seconds. Default: ``lock_timeout_s``.

        Raises
        ------
        ConfigLockTimeoutError
            Another process held the lock for longer than the wait.
        """
        timeout = self.lock_timeout_s if timeout_s is None else timeout_s
        ensure_folder(self.path.parent)
        holder = "another process is refreshing the Astro login"
        with ExitStack() as stack:
            stack.enter_context(hold_lock(self.renewal_lock_path, timeout, holder=holder))
            for lock_path in self.renewal_lock_paths()[1:]:
                stack.enter_context(hold_lock(lock_path, timeout, holder=holder))
            yield

    def _read(self, signature: FileSignature | None) -> ConfigDocument:
        """Return the parsed file, from the cache when ``signature`` shows it unchanged.

        Callers must not change the returned document: it may be shared.
        """
        cached: ConfigDocument | None = self._cache.document(signature)
        if cached is not None:
            return cached

        # A missing folder means no file. Reads never create the folder.
        if not self.path.parent.is_dir():
            return load_document("", self.path)

        with ExitStack() as stack:
            try:
                target = stack.enter_context(self._config_lock())
            except ConfigLockTimeoutError:
                raise
            except ConfigError as error:
                # A read-only folder cannot hold a new lock file, but the
                # config in it can still be read.
                if not _is_access_denied(error.__cause__):
                    raise
                log.debug("reading %s without the lock: %s", self.path, error)
                target = resolve_file(self.path)
            text = read_text(target)
        log.debug("read %s", self.path)
        document = load_document(text or "", self.path)
        self._cache.store(signature, document)
        return document

    def mark_refresh_token_spent(self, refresh_token: str) -> None:
        """Remember that ``refresh_token`` was spent, keeping only its digest."""
        self._spent_refresh_digests.add(hashlib.sha256(refresh_token.encode()).hexdigest())

    def is_refresh_token_spent(self, refresh_token: str) -> bool:
        """Tell whether :meth:`mark_refresh_token_spent` was called for ``refresh_token``."""
        return hashlib.sha256(refresh_token.encode()).hexdigest() in self._spent_refresh_digests

    def forget_cached(self) -> None:
        """Drop the parsed file, so the next read parses it again.

        Callers about to spend a refresh token use this, because a file
        system with coarse file times can keep a signature across two writes.
        """
        self._cache.clear()

    def _modify(
        self, change: Callable[[CommentedMap], None], lock_timeout_s: float | None = None
    ) -> None:
        if not self.path.parent.is_dir() and not _changes_empty_file(change, self.path):
            # A logout with no file leaves no folder and lock file behind.
            log.debug("left %s missing", self.path)
            return

        ensure_folder(self.path.parent)
        with self._config_lock(lock_timeout_s) as target:
            remove_stale_temporaries(target)
            text = read_text(target)
            document = load_document(text or "", self.path)
            before = document.dump()
            change(document.root)
            after = document.dump()
            if after == before:
                log.debug("left %s unchanged", self.path)
                return
            self._cache.clear()
            replace_atomically(target, after, shown_path=self.path)
        log.debug("wrote %s", self.path)

    @contextmanager
    def _config_lock(self, timeout_s: float | None = None) -> Iterator[Path]:
        """Hold the config write lock or locks, and yield the file that ``path`` resolves to.

        The link is resolved under the CLI's lock, so a link changed by
        another writer is seen before the lock beside the target is taken.
        """
        timeout = self.lock_timeout_s if timeout_s is None else timeout_s
        holder = "another process, maybe `astro`, is writing the config"
        with ExitStack() as stack:
            stack.enter_context(hold_lock(self.lock_path, timeout, holder=holder))
            target = resolve_file(self.path)
            for lock_path in _lock_paths(self.path, target, ".lock")[1:]:
                stack.enter_context(hold_lock(lock_path, timeout, holder=holder))
            yield target


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _lock_paths(path: Path, target: Path, suffix: str) -> list[Path]:
    """Return the lock beside ``path``, then the one beside ``target`` when that is another."""
    beside_path = _sidecar(path, suffix)
    beside_target = _sidecar(target, suffix)
    # The folder of path may itself be a link to the folder of target.
    if Path(os.path.realpath(path.parent)) / beside_path.name == beside_target:
        return [beside_path]
    return [beside_path, beside_target]


def _is_access_denied(error: BaseException | None) -> bool:
    return isinstance(error, PermissionError) or (
        isinstance(error, OSError) and error.errno == errno.EROFS
    )


def _changes_empty_file(change: Callable[[CommentedMap], None], path: Path) -> bool:
    document = load_document("", path)
    change(document.root)
    return bool(document.root)
