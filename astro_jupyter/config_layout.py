"""The layout of logins in a parsed ``config.yaml``: the ``contexts`` mapping and ``context`` key.

Finds, creates and fills the context of a domain (key: the domain with every
``.`` replaced by ``_``) in the top-level mapping that ``config_yaml`` loads,
and reads or sets the top-level ``context`` key that names the current domain.
Keys are matched ignoring case, as viper does.

This module does not read or write files and takes no locks: ``config_store``
does that, and calls these functions on a document it holds under the lock.
"""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from .config_context import UPDATABLE_FIELDS, ContextRecord, new_context, scalar_text, write_field
from .config_yaml import find_key, get_value, set_value, yaml_kind
from .domains import context_key
from .errors import ConfigError

__all__ = [
    "context_domain",
    "contexts_for_write",
    "current_in_file",
    "existing_contexts",
    "find_context",
    "has_token_key",
    "write_current",
    "write_record",
]


def existing_contexts(root: CommentedMap, path: Path) -> CommentedMap | None:
    """Return the ``contexts`` mapping, or None when it is missing or null.

    Raises
    ------
    ConfigError
        ``contexts`` is not a mapping. The message names ``path``.
    """
    contexts = get_value(root, "contexts")
    if contexts is not None and not isinstance(contexts, CommentedMap):
        raise ConfigError(
            f"Invalid {path}: 'contexts' is a {yaml_kind(contexts)}, but the Astro "
            "CLI expects a mapping of contexts. Fix or remove the file. It was not changed.",
            path=str(path),
        )
    return contexts


def contexts_for_write(root: CommentedMap, path: Path) -> CommentedMap:
    """Return the ``contexts`` mapping, adding an empty one when it is missing or null."""
    contexts = existing_contexts(root, path)
    if contexts is None:
        contexts = CommentedMap()
        # A null "Contexts:" keeps its spelling, because the CLI reads it either way.
        root[find_key(root, "contexts") or "contexts"] = contexts
    return contexts


def find_context(contexts: CommentedMap, domain: str, path: Path) -> CommentedMap | None:
    """Return the context of ``domain``, or None when it is missing or null.

    Raises
    ------
    ConfigError
        The context is not a mapping. The message names ``path``.
    """
    key = find_key(contexts, context_key(domain))
    context = None if key is None else contexts[key]
    if context is None:
        return None
    if not isinstance(context, CommentedMap):
        raise ConfigError(
            f"Invalid {path}: the context {key} is a {yaml_kind(context)}, not a "
            "mapping. Fix or remove that context. The file was not changed.",
            path=str(path),
        )
    return context


def context_domain(key: object, context: CommentedMap) -> str:
    """Return the domain of a context: its ``domain`` key, else the domain its key encodes."""
    domain = scalar_text(get_value(context, "domain")) or ""
    if not domain.strip():
        # Domains have no "_", so the key gives the domain back.
        domain = str(key).replace("_", ".")
    return domain.strip().lower()


def has_token_key(context: CommentedMap) -> bool:
    """Return whether the context has a ``token`` key, blank or not, in any case."""
    return find_key(context, "token") is not None


def current_in_file(root: CommentedMap) -> str | None:
    """Return the domain that the top-level ``context`` key names, or None when it is blank.

    The value is lower-cased, and a context key written there by hand
    (``astronomer_io``) is read as its domain, because no domain has a ``_``.
    """
    current = scalar_text(get_value(root, "context"))
    if not current or not current.strip():
        return None
    return current.strip().lower().replace("_", ".")


def write_current(root: CommentedMap, domain: str) -> None:
    """Set the top-level ``context`` key to ``domain``, keeping the text of an equal value."""
    existing = get_value(root, "context")
    same = scalar_text(existing) == domain
    set_value(root, "context", existing if same else domain)


def write_record(
    root: CommentedMap, record: ContextRecord, path: Path, *, make_current: bool
) -> None:
    """Write every field of ``record`` into its domain's context, creating it when missing.

    The caller checks the values first (``check_values``) and rejects vault
    placeholders. ``record.source`` is not written.
    """
    domain = record.domain
    # "context" goes first so that a new file has viper's sorted key order.
    if make_current:
        write_current(root, domain)
    contexts = contexts_for_write(root, path)
    context = find_context(contexts, domain, path)
    if context is None:
        context = new_context(contexts, context_key(domain))
    write_field(context, "domain", domain)
    for name in UPDATABLE_FIELDS:
        write_field(context, name, getattr(record, name))
