"""The login store shared with the Astro CLI: contexts in ``~/.astro/config.yaml``.

Reads and writes logins in the Astro CLI's own config file, in the format the
Go CLI (through viper) reads and writes, so ``astro`` and the notebook share
one login. A context per domain contains the token, refresh token, expiry, user
and organization. The top-level ``context`` key names the current domain.

Writes hold the CLI's lock on ``config.yaml.lock``, re-read the file under it,
change only the keys of the login, and replace the file atomically with mode
0600. Every other key, comment and quoting style stays as it was.

This module does not print, does not import IPython, sends no requests and
does not read the newer CLI's vault. A login kept there reads as signed out
with ``in_vault`` set, and the vault's placeholder is never written.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from .config_cache import FileSignature, ParsedFileCache, file_signature
from .config_context import (
    UPDATABLE_FIELDS,
    ContextRecord,
    check_values,
    new_context,
    record_from_context,
    scalar_text,
    write_field,
)
from .config_files import ensure_folder, hold_lock, read_text, replace_atomically
from .config_yaml import ConfigDocument, find_key, get_value, load_document, set_value
from .domains import context_key, normalize_domain
from .errors import ConfigError, ConfigLockTimeoutError, InvalidInputError, NotLoggedInError

__all__ = ["ConfigStore", "ContextRecord", "config_path"]

log = logging.getLogger(__name__)

_DEFAULT_LOCK_TIMEOUT_S = 10.0


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


class ConfigStore:
    """The Astro CLI's config file, read and written as the CLI does.

    Parameters
    ----------
    path
        The config file. Default: ``config_path(environ)``.
    environ
        The environment for ``ASTRO_HOME``, ``HOME`` and ``ASTRO_DOMAIN``.
        Default: ``os.environ``, read at each call.
    lock_timeout_s
        Maximum wait for the CLI's lock on the config file, in seconds.

    Notes
    -----
    Reads also take the lock when they can, because the Astro CLI rewrites
    the file in place and a read during that rewrite would see part of it.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        lock_timeout_s: float = _DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        if not lock_timeout_s >= 0:
            raise InvalidInputError(
                f"Invalid lock_timeout_s {lock_timeout_s!r}: expected a number of seconds >= 0."
            )
        self._environ = environ
        self.path = Path(path) if path is not None else config_path(self._env())
        self.lock_timeout_s = lock_timeout_s
        self._cache = ParsedFileCache()

    def __repr__(self) -> str:
        return f"ConfigStore(path={str(self.path)!r})"

    @property
    def lock_path(self) -> Path:
        """The sidecar lock file that the Astro CLI locks while it writes."""
        # NOTE: when config.yaml is a symbolic link, this lock sits next to the
        # link. That assumes the CLI does not resolve the link either.
        return self.path.with_name(self.path.name + ".lock")

    @property
    def renewal_lock_path(self) -> Path:
        """The sidecar lock file that serialises token refreshes across processes."""
        return self.path.with_name(self.path.name + ".renew.lock")

    def current_domain(self) -> str | None:
        """Return the current Astro domain, or None when there is none.

        ``ASTRO_DOMAIN`` wins when set, normalised without scheme, ``cloud.``
        prefix or trailing ``/``. Otherwise the file's ``context`` key names it.

        Raises
        ------
        InvalidInputError
            ``ASTRO_DOMAIN`` is not a host name.
        ConfigError
            The file cannot be read or parsed.
        """
        return self.read_login(None)[0]

    def read_context(self, domain: str) -> ContextRecord | None:
        """Return the stored login of ``domain``, or None when the file has no such context.

        Raises
        ------
        ConfigError
            The file cannot be read or parsed, or the context is not a mapping.
        """
        return self.read_login(_check_domain(domain))[1]

    def read_login(self, domain: str | None) -> tuple[str | None, ContextRecord | None]:
        """Return a domain and its stored login from one read of the file.

        With ``domain`` None, the current domain is used (see
        :meth:`current_domain`). Either part is None when missing. While the
        file is unchanged, this parses nothing and costs one ``stat``.

        Raises
        ------
        InvalidInputError
            ``ASTRO_DOMAIN`` is not a host name.
        ConfigError
            The file cannot be read or parsed, or the context is not a mapping.
        """
        signature = file_signature(self.path)
        document = self._read(signature)
        if domain is None:
            domain = self._environment_domain() or self._cache.derived(
                signature, "current", lambda: _current_in_file(document.root)
            )
        if domain is None:
            return None, None
        domain = _check_domain(domain)

        def parse_record() -> ContextRecord | None:
            contexts = self._existing_contexts(document.root)
            if contexts is None:
                return None
            context = self._find_context(contexts, domain)
            return None if context is None else record_from_context(domain, context, self.path)

        return domain, self._cache.derived(signature, ("context", domain), parse_record)

    def _environment_domain(self) -> str | None:
        from_environment = self._env().get("ASTRO_DOMAIN", "").strip()
        if not from_environment:
            return None
        try:
            # Any well-formed host name is accepted, so that a local
            # control plane can be named here too.
            return normalize_domain(from_environment, allow_unknown=True)
        except InvalidInputError:
            raise InvalidInputError(
                f"Invalid ASTRO_DOMAIN {from_environment!r}: expected a host name such as "
                "astronomer.io. Fix or unset the environment variable."
            ) from None

    def list_contexts(self) -> list[ContextRecord]:
        """Return the stored login of every context, in file order.

        A context that is not a mapping is skipped with a warning.
        """
        contexts = self._existing_contexts(self._read(file_signature(self.path)).root)
        if contexts is None:
            return []

        records = []
        for key, context in contexts.items():
            if context is None:
                continue
            if not isinstance(context, CommentedMap):
                log.warning("ignoring context %s in %s: it is not a mapping", key, self.path)
                continue
            domain = scalar_text(get_value(context, "domain")) or ""
            if not domain.strip():
                # Domains have no "_", so the key gives the domain back.
                domain = str(key).replace("_", ".")
            records.append(record_from_context(domain.strip().lower(), context, self.path))
        return records

    def save_login(self, record: ContextRecord, *, make_current: bool = True) -> None:
        """Write every field of ``record`` into its domain's context.

        The context is created when missing. Keys of the context that
        ``ContextRecord`` has no field for stay as they are, and so does a
        value that already equals the record's. A field that is None is
        written blank, and ``expires_at=None`` as Go's zero time.

        Parameters
        ----------
        record
            The login to store. It must not be a vault placeholder.
        make_current
            Also set the top-level ``context`` key to the record's domain.

        Raises
        ------
        InvalidInputError
            The record has ``in_vault`` set, or a token with whitespace or a
            ``Bearer `` prefix.
        ConfigError
            The file cannot be read, parsed or written. It is then unchanged.
        ConfigLockTimeoutError
            Another process held the config lock longer than ``lock_timeout_s``.
        """
        if record.in_vault:
            raise InvalidInputError(
                f"Cannot save the login of {record.domain}: it is kept in the Astro CLI's vault "
                "and has no token to write. Log in to get one."
            )
        domain = _check_domain(record.domain)
        values = {name: getattr(record, name) for name in UPDATABLE_FIELDS}
        check_values(values)

        def change(root: CommentedMap) -> None:
            # "context" goes first so that a new file has viper's sorted key order.
            if make_current:
                _write_current(root, domain)
            contexts = self._contexts_for_write(root)
            context = self._find_context(contexts, domain)
            if context is None:
                context = new_context(contexts, context_key(domain))
            write_field(context, "domain", domain)
            for name, value in values.items():
                write_field(context, name, value)

        self._modify(change)

    def update_context(self, domain: str, **changes: Any) -> None:
        """Write only the named fields into the existing context of ``domain``.

        Takes the ``ContextRecord`` field names except ``domain`` and
        ``in_vault``, for example ``workspace=...`` or ``token=...,
        expires_at=...`` after a refresh. A field given as None is written blank.

        Raises
        ------
        TypeError
            A name is not an updatable ``ContextRecord`` field.
        NotLoggedInError
            The file has no context for ``domain``.
        InvalidInputError
            A token has whitespace or a ``Bearer `` prefix, or ``expires_at``
            is naive.
        ConfigError
            The file cannot be read, parsed or written. It is then unchanged.
        """
        unknown = sorted(set(changes) - set(UPDATABLE_FIELDS))
        if unknown:
            raise TypeError(
                f"update_context() got unexpected field(s) {', '.join(unknown)}. "
                f"Expected any of: {', '.join(UPDATABLE_FIELDS)}"
            )
        domain = _check_domain(domain)
        check_values(changes)

        def change(root: CommentedMap) -> None:
            contexts = self._existing_contexts(root)
            context = None if contexts is None else self._find_context(contexts, domain)
            if context is None:
                raise NotLoggedInError(
                    f"Cannot update the Astro login of {domain}: {self.path} has no context for "
                    "it. Log in first.",
                    path=str(self.path),
                )
            for name, value in changes.items():
                write_field(context, name, value)

        self._modify(change)

    def logout(self, domain: str) -> None:
        """Sign ``domain`` out of the shared login.

        Like ``astro logout``, blanks ``token`` and ``user_email`` of its context
        and empties the top-level ``context`` when it names ``domain``. It also
        blanks ``refreshtoken``, so the login cannot be renewed. Nothing is
        written when there is nothing to change, so a missing file stays missing.

        Raises
        ------
        ConfigError
            The file cannot be read, parsed or written. It is then unchanged.
        """
        domain = _check_domain(domain)

        def change(root: CommentedMap) -> None:
            contexts = self._existing_contexts(root)
            context = None if contexts is None else self._find_context(contexts, domain)
            if context is not None:
                for name in ("token", "refresh_token", "user_email"):
                    write_field(context, name, None)
            current = scalar_text(get_value(root, "context"))
            if current is not None and current.strip().lower() == domain:
                set_value(root, "context", "")

        self._modify(change)

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
        with hold_lock(
            self.renewal_lock_path,
            timeout,
            holder="another process is refreshing the Astro login",
        ):
            yield

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _read(self, signature: FileSignature | None) -> ConfigDocument:
        """Return the parsed file, from the cache when ``signature`` shows it unchanged.

        Callers must not change the returned document: it may be shared.
        """
        cached = self._cache.document(signature)
        if cached is not None:
            return cached

        # A missing folder means no file. Reads never create the folder.
        if not self.path.parent.is_dir():
            return load_document("", self.path)

        with ExitStack() as stack:
            try:
                stack.enter_context(self._config_lock())
            except ConfigLockTimeoutError:
                raise
            except ConfigError as error:
                # A read-only folder cannot hold a new lock file, but the
                # config in it can still be read.
                if not _is_access_denied(error.__cause__):
                    raise
                log.debug("reading %s without the lock: %s", self.path, error)
            text = read_text(self.path)
        log.debug("read %s", self.path)
        document = load_document(text or "", self.path)
        self._cache.store(signature, document)
        return document

    def _modify(self, change: Callable[[CommentedMap], None]) -> None:
        if not self.path.parent.is_dir() and not _changes_empty_file(change, self.path):
            # A logout with no file leaves no folder and lock file behind.
            log.debug("left %s missing", self.path)
            return

        ensure_folder(self.path.parent)
        with self._config_lock():
            text = read_text(self.path)
            document = load_document(text or "", self.path)
            before = document.dump()
            change(document.root)
            after = document.dump()
            if after == before:
                log.debug("left %s unchanged", self.path)
                return
            self._cache.clear()
            replace_atomically(self.path, after)
        log.debug("wrote %s", self.path)

    def _config_lock(self) -> AbstractContextManager[None]:
        return hold_lock(
            self.lock_path,
            self.lock_timeout_s,
            holder="another process, maybe `astro`, is writing the config",
        )

    def _existing_contexts(self, root: CommentedMap) -> CommentedMap | None:
        """Return the ``contexts`` mapping, or None when it is missing or null."""
        contexts = get_value(root, "contexts")
        if contexts is not None and not isinstance(contexts, CommentedMap):
            raise ConfigError(
                f"Invalid {self.path}: 'contexts' is a {type(contexts).__name__}, but the Astro "
                "CLI expects a mapping of contexts. Fix or remove the file. It was not changed.",
                path=str(self.path),
            )
        return contexts

    def _contexts_for_write(self, root: CommentedMap) -> CommentedMap:
        """Return the ``contexts`` mapping, adding an empty one when it is missing or null."""
        contexts = self._existing_contexts(root)
        if contexts is None:
            contexts = CommentedMap()
            # A null "Contexts:" keeps its spelling, because the CLI reads it either way.
            root[find_key(root, "contexts") or "contexts"] = contexts
        return contexts

    def _find_context(self, contexts: CommentedMap, domain: str) -> CommentedMap | None:
        key = find_key(contexts, context_key(domain))
        context = None if key is None else contexts[key]
        if context is None:
            return None
        if not isinstance(context, CommentedMap):
            raise ConfigError(
                f"Invalid {self.path}: the context {key} is a {type(context).__name__}, not a "
                "mapping. Fix or remove that context. The file was not changed.",
                path=str(self.path),
            )
        return context


def _check_domain(domain: str) -> str:
    if not isinstance(domain, str) or not domain.strip():
        raise InvalidInputError(f"Invalid Astro domain {domain!r}: it must not be empty.")
    return domain.strip().lower()


def _is_access_denied(error: BaseException | None) -> bool:
    return isinstance(error, PermissionError) or (
        isinstance(error, OSError) and error.errno == errno.EROFS
    )


def _changes_empty_file(change: Callable[[CommentedMap], None], path: Path) -> bool:
    document = load_document("", path)
    change(document.root)
    return bool(document.root)


def _current_in_file(root: CommentedMap) -> str | None:
    current = scalar_text(get_value(root, "context"))
    return current.strip() if current and current.strip() else None


def _write_current(root: CommentedMap, domain: str) -> None:
    existing = get_value(root, "context")
    same = scalar_text(existing) == domain
    set_value(root, "context", existing if same else domain)
