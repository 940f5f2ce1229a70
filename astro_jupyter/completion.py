"""Tab completion for the arguments of the astro_jupyter magics.

Completions come from ``config.yaml`` alone: the domains of its contexts and
the workspace ids saved in a context (``workspace`` and
``last_used_workspace``). The file stores no workspace names, so none are
offered. Completing never sends a request and waits at most
:data:`LOCK_WAIT_S` for the Astro CLI's lock on the file. A file that cannot
be read gives no completions, never an error.

The completions come from one matcher in IPython's ``Completer.custom_matchers``
(the matcher API version 2 of IPython 8.6 and later). When it has matches it
suppresses every other matcher, Jedi's included. IPython's older
``complete_command`` hook cannot do that: Jedi's matches stay beside its
results, so after ``%astro_login -`` a kernel offered ``-abs`` and about 200
other names before ``-e``. The config modules, and with them the YAML library,
are imported at the first completion, not when the extension loads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from IPython.core.completer import SimpleCompletion, completion_matcher

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


_MATCHER_ID = "astro_jupyter.magic_arguments"


def register_completers(shell: Any) -> None:
    """Add the matcher for the arguments of the astro_jupyter magics to ``shell``'s completer.

    Loading the extension again adds nothing.
    """
    completer = getattr(shell, "Completer", None)
    if completer is None:
        return
    matchers = completer.custom_matchers
    if any(getattr(matcher, "matcher_identifier", None) == _MATCHER_ID for matcher in matchers):
        return
    matchers.append(_magic_arguments_matcher(shell))


def _magic_arguments_matcher(shell: Any) -> Callable[[Any], dict[str, Any]]:
    completers: dict[str, Callable[[Any, Any], list[str]]] = {
        "%astro_login": _complete_login,
        "%astro_logout": _complete_domain_only,
        "%astro_whoami": _complete_domain_only,
        "%astro_context": _complete_context,
        "%astro_workspace": _complete_workspace,
    }

    @completion_matcher(identifier=_MATCHER_ID, api_version=2)
    def match(context: Any) -> dict[str, Any]:
        text = context.text_until_cursor
        words = text.split(None, 1)
        # With automagic on, "astro_login" without the % runs the magic too.
        command = words[0] if words else ""
        complete = completers.get(command) or completers.get("%" + command)
        # The matcher completes arguments only, so the magic's name must be whole.
        if complete is None or len(words) < 2 and not text[-1:].isspace():
            return {"completions": []}

        event = SimpleNamespace(
            line=context.line_with_cursor,
            symbol=context.token,
            command=command,
            text_until_cursor=text,
        )
        matches = [name for name in complete(shell, event) if name.startswith(context.token)]
        if not matches:
            return {"completions": []}
        return {
            "completions": [SimpleCompletion(name, type="astro") for name in matches],
            "suppress": True,
            "ordered": True,
        }

    matcher: Callable[[Any], dict[str, Any]] = match
    return matcher


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
