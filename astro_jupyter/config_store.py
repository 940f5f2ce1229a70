"""The login store shared with the Astro CLI: contexts in ``~/.astro/config.yaml``.

Reads and writes logins in the Astro CLI's own config file, in the format the
Go CLI (through viper) reads and writes, so ``astro`` and the notebook share
one login. A context per domain contains the token, refresh token, expiry, user
and organization. The top-level ``context`` key names the current domain.

Writes hold the CLI's lock on ``config.yaml.lock``, re-read the file under it,
change only the keys of the login, and replace the file atomically with mode
0600. Every other key, comment and quoting style stays as it was.

A domain whose context is missing, or has no ``token`` key at all, falls back
to the login in ``credentials.json`` next to the config, which an earlier CLI
design wrote (see ``credentials_file``). That file is only read: renewed
tokens of such a login are written to ``config.yaml``.

This module does not print, does not import IPython, sends no requests and
does not read the newer CLI's vault. A login kept there reads as signed out
with ``in_vault`` set, and the vault's placeholder is never written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from .config_access import DEFAULT_LOCK_TIMEOUT_S, ConfigFileAccess, config_path
from .config_cache import file_signature
from .config_context import (
    SOURCE_CREDENTIALS_FILE,
    UPDATABLE_FIELDS,
    ContextRecord,
    check_values,
    record_from_context,
    scalar_text,
    write_field,
)
from .config_layout import (
    context_domain,
    current_in_file,
    existing_contexts,
    find_context,
    has_token_key,
    write_current,
    write_record,
)
from .config_yaml import get_value, set_value, yaml_kind
from .credentials_file import CREDENTIALS_FILE_NAME, CredentialsFile
from .domains import normalize_domain
from .errors import InvalidInputError, NotLoggedInError

__all__ = ["ConfigStore", "ContextRecord", "config_path"]

log = logging.getLogger(__name__)


class ConfigStore(ConfigFileAccess):
    """The logins in the Astro CLI's config file, read and written as the CLI does.

    Parameters
    ----------
    path
        The config file. Default: ``config_path(environ)``.
    environ
        The environment for ``ASTRO_HOME``, ``HOME`` and ``ASTRO_DOMAIN``.
        Default: ``os.environ``, read at each call.
    lock_timeout_s
        Maximum wait for the CLI's lock on the config file, in seconds.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self._environ = environ
        super().__init__(path if path is not None else config_path(self._env()), lock_timeout_s)
        self._credentials = CredentialsFile(self.path.with_name(CREDENTIALS_FILE_NAME))

    def __repr__(self) -> str:
        return f"ConfigStore(path={str(self.path)!r})"

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    @property
    def credentials_path(self) -> Path:
        """The ``credentials.json`` next to the config, read as a fallback and never written."""
        return self._credentials.path

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
        """Return the stored login of ``domain``, or None when there is none.

        See :meth:`read_login` for the fallback to ``credentials.json``.

        Raises
        ------
        ConfigError
            The file cannot be read or parsed, or the context is not a mapping.
        """
        return self.read_login(_check_domain(domain))[1]

    def read_login(self, domain: str | None) -> tuple[str | None, ContextRecord | None]:
        """Return a domain and its stored login from one read of the file.

        With ``domain`` None, the current domain is used (see
        :meth:`current_domain`). Either part is None when missing.

        The login falls back to ``credentials.json`` when the file has no
        context for the domain, or a context without a ``token`` key. If
        ``credentials.json`` has an entry for the domain, the record then has
        that entry's tokens, expiry and email, the context's other fields, and
        ``source`` set to ``"credentials.json"``. A blank ``token`` (a logout)
        and the vault placeholder do not fall back.

        While the files are unchanged, this parses nothing. It costs one
        ``stat``, or two when it falls back.

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
                signature, "current", lambda: current_in_file(document.root)
            )
        if domain is None:
            return None, None
        domain = _check_domain(domain)

        def parse_record() -> tuple[ContextRecord | None, bool]:
            """Return the context's record, and whether ``credentials.json`` may replace it."""
            contexts = existing_contexts(document.root, self.path)
            context = None if contexts is None else find_context(contexts, domain, self.path)
            if context is None:
                return None, True
            record = record_from_context(domain, context, self.path)
            return record, not has_token_key(context)

        record, falls_back = self._cache.derived(signature, ("context", domain), parse_record)
        if falls_back:
            record = self._credentials.login(domain, record)
        return domain, record

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

        A context that is not a mapping is skipped with a warning. A context
        without a ``token`` key falls back to ``credentials.json`` as in
        :meth:`read_login`. Logins that only ``credentials.json`` contains are
        not listed, because they have no context.
        """
        contexts = existing_contexts(self._read(file_signature(self.path)).root, self.path)
        if contexts is None:
            return []

        records = []
        for key, context in contexts.items():
            if context is None:
                continue
            # ruamel.yaml loads a mapping key as a CommentedKeyMap, a Mapping but no dict.
            if isinstance(key, (list, tuple, Mapping)):
                kind = yaml_kind(key)
                log.warning("ignoring a context in %s: its key is a %s", self.path, kind)
                continue
            if not isinstance(context, CommentedMap):
                log.warning("ignoring context %s in %s: it is not a mapping", key, self.path)
                continue
            domain = context_domain(key, context)
            if not domain:
                log.warning("ignoring a context in %s: it names no domain", self.path)
                continue
            record = record_from_context(domain, context, self.path)
            if not has_token_key(context):
                # With a record given, login() returns a record, never None.
                record = self._credentials.login(domain, record) or record
            records.append(record)
        return records

    def save_login(self, record: ContextRecord, *, make_current: bool = True) -> None:
        """Write every field of ``record`` into its domain's context.

        The context is created when missing. Keys of the context that
        ``ContextRecord`` has no field for stay as they are, and so does a
        value that already equals the record's. A field that is None is
        written blank, and ``expires_at=None`` as Go's zero time.
        ``record.source`` is not written: a record read from
        ``credentials.json`` is saved to ``config.yaml`` like any other.

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
        record = dataclasses.replace(record, domain=_check_domain(record.domain))
        check_values({name: getattr(record, name) for name in UPDATABLE_FIELDS})
        self._modify(lambda root: write_record(root, record, self.path, make_current=make_current))

    def update_context(self, domain: str, **changes: Any) -> None:
        """Write the named fields into the stored login of ``domain``.

        Takes the ``ContextRecord`` field names except ``domain``,
        ``in_vault`` and ``source``, for example ``workspace=...`` or
        ``token=..., expires_at=...`` after a refresh. A field given as None
        is written blank.

        When the login of ``domain`` comes from ``credentials.json`` (see
        :meth:`read_login`), the whole login with the changes applied is
        written to ``config.yaml``, creating the context when missing, so
        that ``config.yaml`` from then on contains it. ``credentials.json`` is
        never written.

        Raises
        ------
        TypeError
            A name is not an updatable ``ContextRecord`` field.
        NotLoggedInError
            Neither the file nor ``credentials.json`` has a login for ``domain``.
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
            contexts = existing_contexts(root, self.path)
            context = None if contexts is None else find_context(contexts, domain, self.path)
            if context is None or not has_token_key(context):
                stored = None
                if context is not None:
                    stored = record_from_context(domain, context, self.path)
                login = self._credentials.login(domain, stored)
                if login is not None and login.source == SOURCE_CREDENTIALS_FILE:
                    changed = dataclasses.replace(login, **changes)
                    write_record(root, changed, self.path, make_current=False)
                    return
            if context is None:
                raise NotLoggedInError(
                    f"Cannot update the Astro login of {domain}: {self.path} has no context for "
                    "it. Log in first.",
                    path=str(self.path),
                )
            for name, value in changes.items():
                write_field(context, name, value)

        self._modify(change)

    def save_refreshed_tokens(
        self,
        domain: str,
        *,
        spent_refresh_token: str,
        token: str,
        refresh_token: str | None,
        expires_at: datetime,
        lock_timeout_s: float | None = None,
    ) -> bool:
        """Write the tokens of a refresh, unless the login changed during the refresh.

        The write happens only while the stored login of ``domain`` still has
        ``spent_refresh_token``. A logout or a new login that landed while the
        refresh request was under way therefore wins, and nothing is written.

        Returns
        -------
        bool
            Whether the tokens were written.

        Raises
        ------
        ConfigError
            The file cannot be read, parsed or written. It is then unchanged.
        ConfigLockTimeoutError
            The config lock was held for longer than ``lock_timeout_s``
            (default: the store's ``lock_timeout_s``).
        """
        changes: dict[str, Any] = {
            "token": token,
            "refresh_token": refresh_token,
            "expires_at": expires_at,
        }
        check_values(changes)
        domain = _check_domain(domain)
        written = False

        def change(root: CommentedMap) -> None:
            nonlocal written
            contexts = existing_contexts(root, self.path)
            context = None if contexts is None else find_context(contexts, domain, self.path)
            stored = None if context is None else record_from_context(domain, context, self.path)
            if context is None or not has_token_key(context):
                login = self._credentials.login(domain, stored)
                if login is None or login.refresh_token != spent_refresh_token:
                    return
                changed = dataclasses.replace(login, **changes)
                write_record(root, changed, self.path, make_current=False)
                written = True
                return
            if stored is None or stored.refresh_token != spent_refresh_token:
                return
            for name, value in changes.items():
                write_field(context, name, value)
            written = True

        self._modify(change, lock_timeout_s)
        return written

    def set_current_context(self, domain: str) -> None:
        """Make ``domain`` the current context, as ``astro context switch`` does.

        Sets the top-level ``context`` key to the domain of an existing
        context and changes nothing else.

        Raises
        ------
        NotLoggedInError
            The file has no context for ``domain``. The message lists the
            domains of the contexts it has. The file is then unchanged.
        ConfigError
            The file cannot be read, parsed or written. It is then unchanged.
        """
        domain = _check_domain(domain)

        def change(root: CommentedMap) -> None:
            contexts = existing_contexts(root, self.path)
            context = None if contexts is None else find_context(contexts, domain, self.path)
            if context is None:
                known = [
                    context_domain(key, value)
                    for key, value in (contexts or {}).items()
                    if isinstance(value, CommentedMap)
                ]
                listing = ", ".join(known) if known else "none"
                raise NotLoggedInError(
                    f"Cannot switch to the Astro context {domain}: {self.path} has no context for "
                    f"it (known contexts: {listing}). Log in to {domain} first, or pick a known "
                    "context.",
                    path=str(self.path),
                )
            write_current(root, domain)

        self._modify(change)

    def logout(self, domain: str) -> None:
        """Sign ``domain`` out of the shared login.

        Like ``astro logout``, blanks ``token`` and ``user_email`` of its context
        and empties the top-level ``context`` when it names ``domain``. It also
        blanks ``refreshtoken``, so the login cannot be renewed. Nothing is
        written when there is nothing to change, so a missing file stays missing.

        A login that only ``credentials.json`` contains gets a new context with
        a blank ``token``, because a blank token key is what stops the
        fallback. ``credentials.json`` itself stays as it is.

        Raises
        ------
        ConfigError
            The file cannot be read, parsed or written. It is then unchanged.
        """
        domain = _check_domain(domain)

        def change(root: CommentedMap) -> None:
            contexts = existing_contexts(root, self.path)
            context = None if contexts is None else find_context(contexts, domain, self.path)
            if context is not None:
                for name in ("token", "refresh_token", "user_email"):
                    write_field(context, name, None)
            elif self._credentials.entry(domain) is not None:
                write_record(root, ContextRecord(domain=domain), self.path, make_current=False)
            current = scalar_text(get_value(root, "context"))
            if current is not None and current.strip().lower() == domain:
                set_value(root, "context", "")

        self._modify(change)


def _check_domain(domain: str) -> str:
    if not isinstance(domain, str) or not domain.strip():
        raise InvalidInputError(f"Invalid Astro domain {domain!r}: it must not be empty.")
    return domain.strip().lower()
