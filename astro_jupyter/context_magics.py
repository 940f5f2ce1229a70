"""Magics for the stored login: ``%astro_logout``, ``%astro_whoami``, ``%astro_context`` and
``%astro_workspace``.

Each magic parses its arguments, calls the config store, the credentials or
the API session once, and prints the outcome. Expected failures become one-line
``UsageError`` messages. Heavy modules are imported on first use so that
loading the extension stays cheap.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .errors import InvalidInputError, excerpt
from .magic_errors import usage_errors
from .magic_parsing import parse_magic_arguments
from .settings import AstroLogin

__all__ = ["ContextMagics"]


@magics_class
class ContextMagics(Magics):
    """Magics that show and change the login shared with the Astro CLI."""

    def __init__(self, shell: Any, settings: AstroLogin) -> None:
        super().__init__(shell)
        self.settings = settings

    def _domain(self, text: str | None) -> str | None:
        return self.settings.resolve_domain(text) if text else None

    @magic_arguments()
    @argument("domain", nargs="?", help="Astro domain to log out of (default: the current one).")
    @line_magic
    def astro_logout(self, line: str) -> None:
        """Log out of Astro here and in the Astro CLI.

        As ``astro logout`` does, blanks the context's token and email and
        clears the current context. It also blanks the refresh token, so the
        login cannot be renewed.

        Examples
        --------
        In [1]: %astro_logout
        Logged out of astronomer.io: its token, refresh token and email are blanked in
        /home/ada/.astro/config.yaml, for the Astro CLI too.
        """
        args = parse_magic_arguments(self.astro_logout, line)
        with usage_errors(self.settings):
            from .credentials import default_store

            store = default_store()
            domain = self._domain(args.domain) or store.current_domain()
            if not domain:
                print("Not logged in to any Astro domain; nothing to do.")
                return
            record = store.read_context(domain)
            if record is None or not (record.token or record.refresh_token or record.in_vault):
                print(f"Not logged in to {domain}; nothing to do.")
                return
            store.logout(domain)
        print(
            f"Logged out of {domain}: its token, refresh token and email are blanked in "
            f"{store.path}, for the Astro CLI too."
        )

    @magic_arguments()
    @argument("domain", nargs="?", help="Astro domain to describe (default: the current one).")
    @line_magic
    def astro_whoami(self, line: str) -> None:
        """Show who is logged in: email, domain, organization, workspace and token expiry.

        Examples
        --------
        In [1]: %astro_whoami
        Email:        ada@example.com
        Domain:       astronomer.io
        Organization: clx0org
        Workspace:    clx0ws
        Expires:      2026-12-04 22:47 UTC (in 47 minutes)
        Credentials:  a refreshable login saved in config.yaml
        """
        args = parse_magic_arguments(self.astro_whoami, line)
        with usage_errors(self.settings):
            from .credentials import whoami

            identity = whoami(self._domain(args.domain))

        from .durations import describe_expiry

        expires = "unknown"
        if identity.expires_at is not None:
            expires = describe_expiry(identity.expires_at, datetime.now(timezone.utc))
        print(f"Email:        {identity.email or 'unknown (an API token has none)'}")
        print(f"Domain:       {identity.domain or 'none'}")
        print(f"Organization: {identity.organization or 'none'}")
        print(f"Workspace:    {identity.workspace or 'none'}")
        print(f"Expires:      {expires}")
        print(f"Credentials:  {identity.source.describe()}")

    @magic_arguments()
    @argument("action", nargs="?", choices=["list", "switch"], help="list (default) or switch.")
    @argument("domain", nargs="?", help="With switch: the domain to make current.")
    @line_magic
    def astro_context(self, line: str) -> None:
        """List the Astro contexts in config.yaml, or switch the current one.

        Examples
        --------
        In [1]: %astro_context
        * astronomer.io     ada@example.com   logged in
          localhost         ada@example.com   logged out

        In [2]: %astro_context switch localhost
        Current context: localhost (for the Astro CLI too).
        """
        args = parse_magic_arguments(self.astro_context, line)
        with usage_errors(self.settings):
            from .credentials import default_store

            store = default_store()
            if args.action == "switch":
                if not args.domain:
                    raise InvalidInputError("Missing domain: use %astro_context switch DOMAIN.")
                domain = self.settings.resolve_domain(args.domain)
                store.set_current_context(domain)
                print(f"Current context: {domain} (for the Astro CLI too).")
                overriding = os.environ.get("ASTRO_DOMAIN", "").strip()
                if overriding:
                    print(
                        f"Note: $ASTRO_DOMAIN={overriding} still chooses the context in this "
                        "kernel and for the CLI; unset it to use the switch."
                    )
                return
            if args.domain:
                raise InvalidInputError(
                    f"Unexpected {args.domain!r}: use %astro_context or "
                    "%astro_context switch DOMAIN."
                )
            current = store.current_domain()
            records = store.list_contexts()

        if not records:
            print(f"No Astro contexts in {store.path}; log in with %astro_login.")
            return
        if os.environ.get("ASTRO_DOMAIN", "").strip():
            print(f"The current context is {current}, set by $ASTRO_DOMAIN over config.yaml.")
        width = max(len(record.domain) for record in records)
        email_width = max(len(record.user_email or "-") for record in records)
        for record in records:
            marker = "*" if record.domain == current else " "
            state = "logged in" if record.is_logged_in else (
                "in the Astro CLI's vault" if record.in_vault else "logged out"
            )
            email = record.user_email or "-"
            print(f"{marker} {record.domain:<{width}}  {email:<{email_width}}  {state}")

    @magic_arguments()
    @argument("action", nargs="?", choices=["list", "switch"], help="list (default) or switch.")
    @argument(
        "workspace",
        nargs="*",
        help="With switch: a workspace id or its name (quotes are not needed around spaces).",
    )
    @argument("--domain", help="Astro domain whose context to use (default: the current one).")
    @line_magic
    def astro_workspace(self, line: str) -> None:
        """List the workspaces of the context's organization, or switch to one.

        The choice is saved as the context's ``workspace`` and
        ``last_used_workspace``, which the Astro CLI uses too.

        Examples
        --------
        In [1]: %astro_workspace
        * Data Engineering  clx0ws1
          Analytics         clx0ws2

        In [2]: %astro_workspace switch Analytics
        Workspace: Analytics (clx0ws2)
        """
        args = parse_magic_arguments(self.astro_workspace, line)
        with usage_errors(self.settings):
            from .api_session import AstroSession
            from .credentials import default_store

            requested = " ".join(args.workspace).strip()
            with AstroSession(self._domain(args.domain)) as api:
                workspaces = api.list_workspaces()
                if args.action == "switch":
                    chosen = _match_workspace(workspaces, requested)
                    default_store().update_context(
                        api.domain, workspace=chosen["id"], last_used_workspace=chosen["id"]
                    )
                    print(f"Workspace: {chosen.get('name', chosen['id'])} ({chosen['id']})")
                    return
                if requested:
                    raise InvalidInputError(
                        f"Unexpected {requested!r}: use %astro_workspace or "
                        "%astro_workspace switch ID_OR_NAME."
                    )
                current = api.workspace_id

        if not workspaces:
            print("This organization has no workspace yet; create one in the Astro UI.")
            return
        width = max(len(str(workspace.get("name", ""))) for workspace in workspaces)
        for workspace in workspaces:
            marker = "*" if workspace["id"] == current else " "
            print(f"{marker} {str(workspace.get('name', '')):<{width}}  {workspace['id']}")


def _match_workspace(
    workspaces: list[dict[str, Any]], requested: str | None
) -> dict[str, Any]:
    """Find a workspace by id, else by exact name, else by name ignoring case."""
    if not requested:
        raise InvalidInputError("Missing workspace: use %astro_workspace switch ID_OR_NAME.")
    for workspace in workspaces:
        if workspace.get("id") == requested:
            return workspace
    exact_then_any_case = (
        lambda name: name == requested,
        lambda name: name.casefold() == requested.casefold(),
    )
    for compare in exact_then_any_case:
        matches = [w for w in workspaces if compare(str(w.get("name", "")))]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(w["id"] for w in matches)
            raise InvalidInputError(
                f"Several workspaces are named {requested!r} ({ids}); switch by id instead."
            )
    names = ", ".join(str(w.get("name", w.get("id"))) for w in workspaces) or "none"
    raise InvalidInputError(
        f"No workspace {excerpt(requested)!r} in this organization; known: {names}."
    )
