"""One login context of ``config.yaml``: ``ContextRecord`` and the CLI's field format.

Converts between a ``ContextRecord`` and the text the Go CLI stores in a
context: the access token with its ``Bearer `` prefix, the expiry as a Go
``time.Time`` in RFC 3339 form, and blanks for missing values. It also
recognises the newer CLI's vault placeholder.

This module does not read or write files and does not know where contexts
sit in the file: ``config_layout`` and ``config_store`` do that.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from .config_yaml import find_key, get_value, set_value
from .errors import InvalidInputError

__all__ = [
    "ContextRecord",
    "FIELD_KEYS",
    "GO_ZERO_TIME",
    "SOURCE_CONFIG_FILE",
    "SOURCE_CREDENTIALS_FILE",
    "UPDATABLE_FIELDS",
    "check_values",
    "format_timestamp",
    "new_context",
    "parse_timestamp",
    "parse_token",
    "read_fields",
    "record_from_context",
    "scalar_text",
    "write_field",
]

log = logging.getLogger(__name__)

# ContextRecord field -> key in a context of config.yaml, as viper writes it.
FIELD_KEYS = {
    "domain": "domain",
    "token": "token",
    "refresh_token": "refreshtoken",
    "expires_at": "expiresin",
    "user_email": "user_email",
    "organization": "organization",
    "organization_product": "organization_product",
    "workspace": "workspace",
    "last_used_workspace": "last_used_workspace",
}
UPDATABLE_FIELDS = tuple(name for name in FIELD_KEYS if name != "domain")

# Go's zero time.Time as go-yaml writes it. It is written for an unknown
# expiry, so that the key always contains a time that Go can parse.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# Values of ContextRecord.source: the file a login was read from.
SOURCE_CONFIG_FILE = "config.yaml"
SOURCE_CREDENTIALS_FILE = "credentials.json"

_BEARER = "Bearer "

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))?$"
)


@dataclass(frozen=True, repr=False)
class ContextRecord:
    """One context of ``config.yaml``: the login stored for one Astro domain.

    Attributes
    ----------
    domain
        The normalised Astro domain, such as ``astronomer.io``.
    token
        The access token without the ``Bearer `` prefix, or None when blank.
    refresh_token
        The refresh token (key ``refreshtoken``), or None when blank.
    expires_at
        The expiry of ``token`` (key ``expiresin``) as an aware UTC datetime,
        or None when unknown.
    user_email, organization, organization_product, workspace, last_used_workspace
        The same-named keys, or None when blank.
    in_vault
        True when the file contains the newer CLI's vault placeholder: a
        ``token`` of just ``"Bearer "`` and an empty ``refreshtoken``. The login
        is then in a vault this package cannot read, and ``token`` is None.
    source
        The file the tokens were read from: ``"config.yaml"``, or
        ``"credentials.json"`` for a login that only that older fallback
        file contains. It is never written to a file.
    """

    domain: str
    token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    user_email: str | None = None
    organization: str | None = None
    organization_product: str | None = None
    workspace: str | None = None
    last_used_workspace: str | None = None
    in_vault: bool = False
    source: str = SOURCE_CONFIG_FILE

    def __post_init__(self) -> None:
        if not isinstance(self.domain, str) or not self.domain.strip():
            raise InvalidInputError(f"Invalid Astro domain {self.domain!r}: it must not be empty.")
        if self.source not in (SOURCE_CONFIG_FILE, SOURCE_CREDENTIALS_FILE):
            raise InvalidInputError(
                f"Invalid source {self.source!r}: expected {SOURCE_CONFIG_FILE!r} or "
                f"{SOURCE_CREDENTIALS_FILE!r}."
            )
        if self.expires_at is not None:
            if not isinstance(self.expires_at, datetime) or self.expires_at.utcoffset() is None:
                raise InvalidInputError(
                    "Invalid expires_at: expected a timezone-aware datetime or None."
                )
            object.__setattr__(self, "expires_at", self.expires_at.astimezone(timezone.utc))

    @property
    def is_logged_in(self) -> bool:
        """Whether the record has an access token that this package can use."""
        return self.token is not None and not self.in_vault

    def __repr__(self) -> str:
        # Tokens are secrets: the repr shows only whether each one is set.
        parts = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("token", "refresh_token"):
                rendered = "None" if value is None else "<set>"
            else:
                rendered = repr(value)
            parts.append(f"{field.name}={rendered}")
        return f"ContextRecord({', '.join(parts)})"


def record_from_context(domain: str, context: CommentedMap, path: Path) -> ContextRecord:
    """Return the login stored in ``context``, read as the Astro CLI reads it.

    ``path`` names the file in the warning about an expiry that does not parse.
    """
    text = read_fields(context)
    token, in_vault = parse_token(text["token"], text["refresh_token"])
    expires_at = parse_timestamp(text["expires_at"])
    if text["expires_at"] and expires_at is None and text["expires_at"] != GO_ZERO_TIME:
        log.warning(
            "ignoring expiresin of %s in %s: it is not an RFC 3339 timestamp",
            domain,
            path,
        )
    return ContextRecord(
        domain=domain,
        token=token,
        refresh_token=text["refresh_token"] or None,
        expires_at=expires_at,
        user_email=text["user_email"] or None,
        organization=text["organization"] or None,
        organization_product=text["organization_product"] or None,
        workspace=text["workspace"] or None,
        last_used_workspace=text["last_used_workspace"] or None,
        in_vault=in_vault,
    )


def scalar_text(value: Any) -> str | None:
    """Return a scalar from the file as text, or None for null, a mapping or a list."""
    if value is None or isinstance(value, (Mapping, list)):
        return None
    return str(value)


def read_fields(context: CommentedMap) -> dict[str, str | None]:
    """Return the text of every field key in ``context``, matched ignoring case."""
    return {name: scalar_text(get_value(context, key)) for name, key in FIELD_KEYS.items()}


def parse_token(token: str | None, refresh_token: str | None) -> tuple[str | None, bool]:
    """Return the access token without its scheme, and whether it is the vault placeholder.

    The newer CLI leaves just the scheme, ``"Bearer "``, with an empty refresh
    token when the login is in its vault. The bare scheme is never returned as
    a token, because sending it would fail with a confusing 401.
    """
    if not token or not token.strip():
        return None, False
    token = token.strip()
    if token == _BEARER.strip():
        return None, not refresh_token
    if token.startswith(_BEARER):
        token = token[len(_BEARER) :].strip()
    return token or None, False


def parse_timestamp(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp, such as Go writes, into an aware UTC datetime.

    Digits of the fraction beyond microseconds are dropped. A timestamp without
    an offset is read as UTC. Go's zero time, and text that
    does not parse, return None.
    """
    if not text:
        return None
    match = _RFC3339.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, sign, offset_hours, offset_minutes = (
        match.groups()
    )
    if (year, month, day) == ("0001", "01", "01"):
        return None

    microsecond = int((fraction or "0")[:6].ljust(6, "0"))
    offset = timezone.utc
    if sign:
        minutes = int(offset_hours) * 60 + int(offset_minutes)
        offset = timezone(timedelta(minutes=-minutes if sign == "-" else minutes))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            microsecond,
            tzinfo=offset,
        )
    except ValueError:
        return None
    return moment.astimezone(timezone.utc)


def format_timestamp(moment: datetime | None) -> str:
    """Format a datetime in UTC as Go's ``time.RFC3339Nano`` layout does.

    Go drops trailing zeros of the fraction, and the whole fraction when it is
    zero. A Python datetime has microseconds, so at most 6 digits are written.
    None becomes Go's zero time.
    """
    if moment is None:
        return GO_ZERO_TIME
    moment = moment.astimezone(timezone.utc)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def check_values(values: Mapping[str, Any]) -> None:
    """Raise InvalidInputError unless every value can be written to its config key.

    Messages about tokens name the field only, because the value is a secret.
    """
    for name, value in values.items():
        if value is None:
            continue
        if name == "expires_at":
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise InvalidInputError(
                    "Invalid expires_at: expected a timezone-aware datetime or None."
                )
            continue
        if not isinstance(value, str):
            raise InvalidInputError(f"Invalid {name}: expected a string or None.")
        if name == "token" and value[: len(_BEARER)].lower() == _BEARER.lower():
            raise InvalidInputError(
                "Invalid token: pass the raw access token, without the 'Bearer ' prefix."
            )
        if name in ("token", "refresh_token") and any(char.isspace() for char in value):
            raise InvalidInputError(f"Invalid {name}: a token must not contain whitespace.")


def new_context(contexts: CommentedMap, key: str) -> CommentedMap:
    """Add an empty context under ``key`` and return it."""
    # go-yaml writes map keys in sorted order, so a new context has them sorted too.
    context = CommentedMap((field_key, "") for field_key in sorted(FIELD_KEYS.values()))
    contexts[key] = context
    return context


def write_field(context: CommentedMap, name: str, value: Any) -> None:
    """Set the key of field ``name`` in ``context``, in lower case.

    An existing value that already means ``value`` is kept with its exact
    text, such as an expiry with nanoseconds or an offset.
    """
    key = FIELD_KEYS[name]
    new_text = _config_text(name, value)
    existing_key = find_key(context, key)
    if existing_key is not None and _same_value(name, context[existing_key], new_text):
        set_value(context, key, context[existing_key])
    else:
        set_value(context, key, new_text)


def _config_text(name: str, value: Any) -> str:
    if name == "expires_at":
        return format_timestamp(value)
    if name == "token":
        # An empty token must stay blank: "Bearer " alone is the vault
        # placeholder, which this package never writes.
        return f"{_BEARER}{value}" if value else ""
    return value or ""


def _same_value(name: str, existing: Any, new_text: str) -> bool:
    if isinstance(existing, (Mapping, list)):
        return False
    existing_text = scalar_text(existing) or ""
    if name == "expires_at" and new_text != GO_ZERO_TIME:
        # Go writes nanoseconds that a Python datetime cannot hold, so an
        # unchanged expiry is recognised by its value and not by its text.
        return parse_timestamp(existing_text) == parse_timestamp(new_text)
    return existing_text == new_text
