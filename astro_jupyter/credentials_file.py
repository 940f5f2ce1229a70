"""Logins read from ``credentials.json``, the fallback file of an earlier Astro CLI design.

An earlier, unreleased design of the Astro CLI kept tokens in the OS keychain
under the service ``astro-cli`` and, as a fallback, in a ``credentials.json``
with mode 0600 next to ``config.yaml``. That file is a JSON object from
domain to ``{"token", "refreshtoken", "user_email", "expires_at"}``, where
``expires_at`` is an RFC 3339 timestamp. ``config_store`` reads the entry of
a domain only when ``config.yaml`` has no context for it, or a context
without a ``token`` key.

The file is parsed again only when its stat signature changes. A file or an
entry that cannot be used is skipped with a WARNING that names the file, once
per version of the file, and never raises.

This module never writes, creates or changes the mode of ``credentials.json``,
and it does not read the OS keychain. Tokens renewed from such a login are
written to ``config.yaml`` by ``config_store``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .config_cache import FileSignature, ParsedFileCache, file_signature
from .config_context import GO_ZERO_TIME, SOURCE_CREDENTIALS_FILE, ContextRecord, parse_timestamp
from .config_files import read_text
from .domains import normalize_domain
from .errors import ConfigError, InvalidInputError

__all__ = ["CREDENTIALS_FILE_NAME", "CredentialsEntry", "CredentialsFile"]

log = logging.getLogger(__name__)

CREDENTIALS_FILE_NAME = "credentials.json"

# Entry key -> CredentialsEntry field. Every value is a string or null.
_ENTRY_KEYS = {
    "token": "token",
    "refreshtoken": "refresh_token",
    "user_email": "user_email",
    "expires_at": "expires_at",
}

_NOT_REPORTED = object()


@dataclass(frozen=True, repr=False)
class CredentialsEntry:
    """The login that ``credentials.json`` contains for one domain.

    Attributes
    ----------
    domain
        The normalised Astro domain of the entry's key.
    token
        The access token without a ``Bearer `` prefix, or None when blank.
    refresh_token
        The refresh token (key ``refreshtoken``), or None when blank.
    user_email
        The account's email, or None when blank.
    expires_at
        The expiry of ``token`` as an aware UTC datetime, or None when unknown.
    """

    domain: str
    token: str | None = None
    refresh_token: str | None = None
    user_email: str | None = None
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        # Tokens are secrets: the repr shows only whether each one is set.
        return (
            f"CredentialsEntry(domain={self.domain!r}, "
            f"token={'<set>' if self.token else None}, "
            f"refresh_token={'<set>' if self.refresh_token else None}, "
            f"user_email={self.user_email!r}, expires_at={self.expires_at!r})"
        )

    def to_record(self, stored: ContextRecord | None) -> ContextRecord:
        """Return this login as a record, keeping the other fields of the domain's context.

        ``stored`` is the record read from ``config.yaml`` for the same domain,
        or None when there is no context. Its organization and workspace
        fields are kept, and its ``user_email`` when the entry has none.
        """
        base = stored if stored is not None else ContextRecord(domain=self.domain)
        return dataclasses.replace(
            base,
            token=self.token,
            refresh_token=self.refresh_token,
            expires_at=self.expires_at,
            user_email=self.user_email or base.user_email,
            in_vault=False,
            source=SOURCE_CREDENTIALS_FILE,
        )


class CredentialsFile:
    """The read-only ``credentials.json`` next to one ``config.yaml``, safe to use across threads.

    Parameters
    ----------
    path
        The file. It may be missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache = ParsedFileCache()
        self._lock = threading.Lock()
        self._reported: object = _NOT_REPORTED

    def __repr__(self) -> str:
        return f"CredentialsFile(path={str(self.path)!r})"

    def entry(self, domain: str) -> CredentialsEntry | None:
        """Return the entry of a normalised ``domain``, or None when the file has no usable one.

        While the file is unchanged, this parses nothing and costs one ``stat``.
        """
        return self._entries().get(domain)

    def login(self, domain: str, stored: ContextRecord | None) -> ContextRecord | None:
        """Return the domain's login from this file on top of ``stored``, else ``stored``."""
        entry = self.entry(domain)
        return stored if entry is None else entry.to_record(stored)

    def _entries(self) -> dict[str, CredentialsEntry]:
        signature = file_signature(self.path)
        cached: dict[str, CredentialsEntry] | None = self._cache.document(signature)
        if cached is not None:
            return cached

        entries, problems = _parse_file(self.path)
        self._report(signature, problems)
        self._cache.store(signature, entries)
        return entries

    def _report(self, signature: FileSignature | None, problems: list[str]) -> None:
        # A file changed within the cache's settle window is parsed on every
        # read, so the warnings are logged once per signature, not per parse.
        with self._lock:
            if signature == self._reported:
                return
            self._reported = signature
        for problem in problems:
            log.warning("%s", problem)


def _parse_file(path: Path) -> tuple[dict[str, CredentialsEntry], list[str]]:
    """Return the usable entries of the file and a warning for each part that is not."""
    try:
        text = read_text(path)
    except ConfigError as error:
        return {}, [f"ignoring {path}: {error.message}"]
    if text is None:
        return {}, []
    log.debug("read %s", path)

    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # The decoder's message names the position only, never the text there.
        return {}, [f"ignoring {path}: it is not valid JSON ({error.msg} at line {error.lineno})"]
    if not isinstance(data, dict):
        return {}, [
            f"ignoring {path}: its top level is {_kind(data)}, but it must be an object "
            "that maps domains to logins"
        ]

    entries: dict[str, CredentialsEntry] = {}
    problems: list[str] = []
    for key, value in data.items():
        entry = _parse_entry(path, key, value, problems)
        if entry is None:
            continue
        if entry.domain in entries:
            problems.append(
                f"ignoring a second entry for {entry.domain} in {path}: the first one is used"
            )
            continue
        entries[entry.domain] = entry
    return entries, problems


def _parse_entry(
    path: Path, key: str, value: Any, problems: list[str]
) -> CredentialsEntry | None:
    try:
        domain = normalize_domain(key, allow_unknown=True)
    except InvalidInputError:
        problems.append(f"ignoring the entry {key[:80]!r} in {path}: it is not an Astro domain")
        return None
    where = f"the entry for {domain} in {path}"
    if not isinstance(value, dict):
        problems.append(f"ignoring {where}: it is {_kind(value)}, not an object")
        return None

    fields: dict[str, str | None] = {}
    for entry_key, name in _ENTRY_KEYS.items():
        text = value.get(entry_key)
        if text is not None and not isinstance(text, str):
            problems.append(f"ignoring {where}: {entry_key!r} is {_kind(text)}, not a string")
            return None
        fields[name] = text.strip() if text and text.strip() else None

    token = _without_scheme(fields["token"])
    refresh_token = fields["refresh_token"]
    for name, secret in (("token", token), ("refreshtoken", refresh_token)):
        if secret is not None and any(char.isspace() for char in secret):
            problems.append(f"ignoring {where}: {name!r} contains whitespace")
            return None
    if token is None and refresh_token is None:
        return None

    expires_text = fields["expires_at"]
    expires_at = parse_timestamp(expires_text)
    if expires_text and expires_at is None and expires_text != GO_ZERO_TIME:
        problems.append(
            f"ignoring 'expires_at' of {where}: it is not an RFC 3339 timestamp, so the "
            "token counts as expired"
        )
    return CredentialsEntry(
        domain=domain,
        token=token,
        refresh_token=refresh_token,
        user_email=fields["user_email"],
        expires_at=expires_at,
    )


def _without_scheme(token: str | None) -> str | None:
    # The scheme name is case-insensitive (RFC 7235 section 2.1).
    if token is not None and token[:7].lower() == "bearer ":
        token = token[7:].strip()
    elif token is not None and token.lower() == "bearer":
        token = ""
    return token or None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
