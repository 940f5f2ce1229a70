"""Tab completion for the arguments of the astro_jupyter magics.

Completions come from ``config.yaml`` alone: the domains of its contexts and
the workspace ids saved in a context (``workspace`` and
``last_used_workspace``). The file stores no workspace names, so none are
offered. Completing never sends a request and waits at most
:data:`LOCK_WAIT_S` for the Astro CLI's lock on the file. A file that cannot
be read gives no completions, never an error.

The completers use IPython's ``complete_command`` hook, as IPython's own ``%cd``
and ``%run`` do. When one returns matches, IPython shows them instead of file
names. The config modules, and with them the YAML library, are imported at the
first completion, not when the extension loads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import AstroJupyterError

if TYPE_CHECKING:
    from .config_store import ConfigStore

__all__ = ["LOCK_WAIT_S", "register_completers"]

# Long enough for the Astro CLI to finish a write, short enough that a held
# lock never freezes the notebook's completion menu.
LOCK_WAIT_S = 0.2

_LOGIN_OPTIONS = ("-e", "--email", "-l", "--link", "-t", "--token", "--timeout", "--no-widget")
_LOGIN_VALUE_OPTIONS = frozenset({"-e", "--email", "-t", "--token", "--timeout"})
_ACTIONS = ("list", "switch")

log = logging.getLogger(__name__)


def register_completers(shell: Any) -> None:
    """Register the completers of ``%astro_login`` and the context magics with ``shell``."""
    completers: dict[str, Callable[[Any, Any], list[str]]] = {
        "%astro_login": _complete_login,
        "%astro_logout": _complete_domain_only,
        "%astro_whoami": _complete_domain_only,
        "%astro_context": _complete_context,
        "%astro_workspace": _complete_workspace,
    }
    # set_hook binds each completer to the shell, so it is called with the shell first.
    for magic, completer in completers.items():
        shell.set_hook("complete_command", completer, str_key=magic)


def _arguments_before(event: Any) -> list[str]:
    """Return the words after the magic's name that come before the word being completed."""
    text: str = event.text_until_cursor
    words = text.split()
    if words and not text[-1:].isspace():
        words = words[:-1]
    return words[1:]


def _complete_login(shell: Any, event: Any) -> list[str]:
    arguments = _arguments_before(event)
    if event.symbol.startswith("-"):
        return list(_LOGIN_OPTIONS)
    if arguments and arguments[-1] in _LOGIN_VALUE_OPTIONS:
        return []
    return _context_domains()


def _complete_domain_only(shell: Any, event: Any) -> list[str]:
    return [] if _arguments_before(event) else _context_domains()


def _complete_context(shell: Any, event: Any) -> list[str]:
    arguments = _arguments_before(event)
    if not arguments:
        return list(_ACTIONS)
    if arguments == ["switch"]:
        return _context_domains()
    return []


def _complete_workspace(shell: Any, event: Any) -> list[str]:
    arguments = _arguments_before(event)
    if arguments and arguments[-1] == "--domain":
        return _context_domains()
    if event.symbol.startswith("-"):
        return ["--domain"]

    domain = None
    positional = []
    for index, word in enumerate(arguments):
        if word == "--domain":
            continue
        if index > 0 and arguments[index - 1] == "--domain":
            domain = word
            continue
        positional.append(word)
    if not positional:
        return list(_ACTIONS)
    if positional == ["switch"]:
        return _saved_workspace_ids(domain)
    return []


def _context_domains() -> list[str]:
    """Return the domain of every context in ``config.yaml``, the current one first."""
    try:
        store = _store()
        current = store.current_domain()
        domains = [record.domain for record in store.list_contexts()]
    except (AstroJupyterError, OSError) as error:
        log.debug("no domain completions: %s", error)
        return []
    if current in domains:
        domains.remove(current)
        domains.insert(0, current)
    return list(dict.fromkeys(domains))


def _saved_workspace_ids(domain: str | None) -> list[str]:
    """Return the workspace ids saved in the context of ``domain`` (default: the current one)."""
    from .domains import normalize_domain

    try:
        if domain is not None:
            domain = normalize_domain(domain, allow_unknown=True)
        record = _store().read_login(domain)[1]
    except (AstroJupyterError, OSError) as error:
        log.debug("no workspace completions: %s", error)
        return []
    if record is None:
        return []
    saved = [record.workspace, record.last_used_workspace]
    return list(dict.fromkeys(workspace for workspace in saved if workspace))


def _store() -> ConfigStore:
    from .config_store import ConfigStore

    return ConfigStore(lock_timeout_s=LOCK_WAIT_S)
