"""The ``%astro_login`` magic: the login panel, or a text view over :class:`LoginFlow`.

Where the frontend can show widgets, the magic shows the login panel
(:mod:`astro_jupyter.panel`) and returns at once. Otherwise, and with
``--no-widget``, it prompts for what is missing (email, token) where the
frontend can prompt, starts one login flow and shows the sign-in link. The text
form waits on the kernel's main thread, so a kernel interrupt cancels the
login and frees the callback port. Every expected failure is shown as a
one-line ``UsageError`` unless ``AstroLogin.show_traceback`` is on; anything
else keeps its traceback.
"""

from __future__ import annotations

import builtins
import getpass
import html
import os
import queue
from typing import TYPE_CHECKING, Any

from IPython.core.error import StdinNotImplementedError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from .emails import validate_email
from .errors import AstroJupyterError, InvalidInputError, LoginCancelledError
from .magic_errors import usage_errors
from .magic_parsing import parse_magic_arguments
from .settings import AstroLogin

if TYPE_CHECKING:
    from .config_store import ConfigStore
    from .login_flow import LoginEvent, LoginFlow, LoginResult
    from .login_types import LoginOptions

__all__ = ["AstroMagics"]

# argparse's marker for "-t given without a value": a value no user can type.
_ASK_FOR_TOKEN = object()
_TOKEN_ENV = "ASTRO_JUPYTER_TOKEN"
_EVENT_POLL_S = 0.2
_CANCEL_GRACE_S = 10.0


@magics_class
class AstroMagics(Magics):
    """Magics that log in to Astro and share the login with the Astro CLI."""

    def __init__(self, shell: Any, settings: AstroLogin) -> None:
        super().__init__(shell)
        self.settings = settings
        self._warned_token_in_source = False

    @magic_arguments()
    @argument(
        "domain",
        nargs="?",
        help=(
            "Astro domain to log in to, e.g. astronomer.io (the default: $ASTRO_DOMAIN, "
            "else the current context of ~/.astro/config.yaml, else astronomer.io)."
        ),
    )
    @argument("-e", "--email", help="Your Astro account email; default: the context's saved one.")
    @argument(
        "-l",
        "--link",
        action="store_true",
        help="Only show the sign-in link, for a browser on another machine; open no browser.",
    )
    @argument(
        "-t",
        "--token",
        nargs="?",
        const=_ASK_FOR_TOKEN,
        default=None,
        metavar="TOKEN",
        help=(
            "Log in with an access token copied from the Astro UI instead of a browser. "
            f"Without a value, ask for it hidden, else read ${_TOKEN_ENV}."
        ),
    )
    @argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="Seconds to wait for the browser (default: AstroLogin.callback_timeout_s).",
    )
    @argument(
        "--no-widget",
        action="store_true",
        help=(
            "Use the text form, which waits in the cell, even where the login panel could be "
            "shown."
        ),
    )
    @line_magic
    def astro_login(self, line: str) -> None:
        """Log in to Astro and save the login where the Astro CLI reads it.

        In JupyterLab, Notebook 7 and other frontends that show widgets, this
        shows the login panel: choose to open a browser tab, show a link for a
        browser on another device (with a field to paste the address the
        browser ends on), or paste a token. The panel starts at once when the
        email is known, and the cell does not wait; a later cell can call
        ``astro_jupyter.wait_for_login()``.

        Elsewhere (``--no-widget``, terminal IPython, headless kernels), the
        text form opens the sign-in page in your browser when the kernel runs
        on your computer, always shows the link too, waits, and prints who is
        logged in with which organization and workspace.

        Examples
        --------
        In [1]: %load_ext astro_jupyter

        In [2]: %astro_login -e ada@example.com --no-widget
        Logging in to astronomer.io as ada@example.com.
        Open this link to sign in: https://auth.astronomer.io/authorize?...
        Logged in to astronomer.io as ada@example.com.
        Organization: Example Org (clx0org)
        Workspace: Data Engineering (clx0ws)

        In [3]: %astro_login -l          # a browser on another device
        In [4]: %astro_login -t          # paste a token from the Astro UI, hidden

        In [5]: %astro_login -e not-an-email
        UsageError: Invalid email 'not-an-email': expected an address such as name@example.com.
        """
        args = parse_magic_arguments(self.astro_login, line)
        with usage_errors(self.settings):
            self._login(args)

    def _login(self, args: Any) -> None:
        # Imported here so that loading the extension stays cheap: these pull
        # in requests and the YAML library.
        from .config_store import ConfigStore
        from .login_flow import LoginFlow, LoginMode
        from .login_setup import login_options

        if isinstance(args.token, str) and args.token.lower() == "bearer" and args.domain:
            # "-t Bearer <token>" unquoted, as copied from config.yaml: argparse
            # takes "Bearer" as the token and the token as the domain.
            args.token, args.domain = f"Bearer {args.domain}", None

        store = ConfigStore()
        options = login_options(self.settings, store, args.domain, args.timeout)
        domain = options.domain

        if self._shows_panel(args):
            self._show_panel(args, store, options)
            return

        if args.token is not None:
            flow = LoginFlow(options, store, mode=LoginMode.TOKEN, token=self._token_from(args))
            print(f"Logging in to {domain} with an access token.")
        else:
            email = args.email or self._email_from(store, domain)
            mode = LoginMode.LINK if args.link else LoginMode.BROWSER
            flow = LoginFlow(options, store, mode=mode, email=email)
            print(f"Logging in to {domain} as {email}.")

        result = self._run(flow)
        self._report(result)
        if result.workspace is None and result.workspaces:
            self._choose_workspace(store, result)

    # The panel

    def _shows_panel(self, args: Any) -> bool:
        from .widget_frontend import frontend_shows_widgets

        return not args.no_widget and self.settings.widget and frontend_shows_widgets(self.shell)

    def _show_panel(self, args: Any, store: ConfigStore, options: LoginOptions) -> None:
        from .login_setup import saved_email
        from .login_types import LoginMode
        from .panel import LoginPanel

        token = None
        if args.token is not None:
            mode = LoginMode.TOKEN
            if args.token is not _ASK_FOR_TOKEN:
                token = self._token_from(args)
        else:
            mode = LoginMode.LINK if args.link else LoginMode.BROWSER
        email = validate_email(args.email) if args.email else saved_email(store, options.domain)
        panel = LoginPanel(self.settings, store, options, email=email, mode=mode, token=token)
        panel.watch_cell_runs(self.shell)
        display(panel)

    # Asking for what is missing

    def _can_prompt(self) -> bool:
        kernel = getattr(self.shell, "kernel", None)
        if kernel is not None:
            return bool(getattr(kernel, "_allow_stdin", False))
        return True

    def _email_from(self, store: ConfigStore, domain: str) -> str:
        from .login_setup import saved_email

        saved = saved_email(store, domain)
        if saved:
            print(f"Using the saved account {saved} for {domain}.")
            return saved
        missing = (
            f"No email given and none saved for {domain}; "
            "pass it with -e, e.g. %astro_login -e name@example.com."
        )
        if not self._can_prompt():
            raise InvalidInputError(missing)
        try:
            typed = builtins.input("Your Astro account email: ")
        except (StdinNotImplementedError, EOFError, OSError):
            raise InvalidInputError(missing) from None
        try:
            return validate_email(typed)
        except InvalidInputError:
            # Not echoed, because what was typed could be a token pasted by mistake.
            raise InvalidInputError(
                "The email entered is not an address such as name@example.com; run the login "
                "again, or pass it with -e."
            ) from None

    def _token_from(self, args: Any) -> str:
        if args.token is not _ASK_FOR_TOKEN:
            if not self._warned_token_in_source:
                self._warned_token_in_source = True
                print(
                    "Warning: a token typed into a cell is saved in the notebook and in IPython's "
                    "history; prefer %astro_login -t without a value, or "
                    f"${_TOKEN_ENV}."
                )
            return str(args.token)
        if self._can_prompt():
            try:
                return getpass.getpass("Astro access token (hidden): ")
            except (StdinNotImplementedError, EOFError, OSError):
                pass
        token = os.environ.get(_TOKEN_ENV, "")
        if token.strip():
            print(f"Using the access token from ${_TOKEN_ENV}.")
            return token
        raise InvalidInputError(
            f"No token given: this kernel cannot prompt and ${_TOKEN_ENV} is not set; "
            "set it or pass the token after -t."
        )

    # Running and reporting

    def _run(self, flow: LoginFlow) -> LoginResult:
        from .login_flow import LoginStep

        events: queue.Queue[LoginEvent] = queue.Queue()
        flow.subscribe(events.put)
        self.settings.logins.begin(flow)
        flow.start()
        try:
            while not flow.done or not events.empty():
                try:
                    event = events.get(timeout=_EVENT_POLL_S)
                except queue.Empty:
                    continue
                if event.step is LoginStep.WAITING_FOR_BROWSER and event.authorize_url:
                    self._show_link(flow, event)
        except KeyboardInterrupt:
            flow.cancel()
            try:
                # A login interrupted while saving finishes: report it as done.
                return flow.wait(_CANCEL_GRACE_S)
            except LoginCancelledError:
                raise InvalidInputError(
                    "Login cancelled by a kernel interrupt; nothing was saved and the callback "
                    "port is free again."
                ) from None
            except (AstroJupyterError, TimeoutError):
                raise InvalidInputError(
                    "Login interrupted; the callback port is free again. Check %astro_whoami "
                    "for what was saved."
                ) from None
        return flow.wait(0)

    def _show_link(self, flow: LoginFlow, event: LoginEvent) -> None:
        from .local_browser import browser_unavailable_reason, open_in_browser
        from .login_flow import LoginMode

        url = event.authorize_url or ""
        escaped = html.escape(url, quote=True)
        display(
            {
                "text/html": (
                    '<p>Open this link to sign in to Astro: <a href="'
                    f'{escaped}" target="_blank" rel="noopener noreferrer">{escaped}</a></p>'
                ),
                "text/plain": f"Open this link to sign in to Astro:\n{url}",
            },
            raw=True,
        )
        if flow.mode is LoginMode.BROWSER and self.settings.open_browser:
            reason = browser_unavailable_reason()
            if reason is None:
                open_in_browser(url)
                print("Opened the sign-in page in your browser.")
            else:
                print(f"Not opening a browser: {reason}. Open the link above instead.")
        print(event.message)

    def _report(self, result: LoginResult) -> None:
        from .login_notes import result_notes

        print(f"Logged in to {result.domain} as {result.email}.")
        organization = result.organization
        print(f"Organization: {organization.name} ({organization.id})")
        if result.workspace is not None:
            print(f"Workspace: {result.workspace.name} ({result.workspace.id})")
        elif not result.workspaces:
            print(
                "Workspace: none; this organization has no workspace yet. Create one in the "
                "Astro UI, then select it with %astro_workspace switch NAME."
            )
        for note in result_notes(result):
            print(note)
        if not result.refreshable:
            print(
                "This login cannot be refreshed; log in again after "
                f"{result.expires_at.astimezone():%Y-%m-%d %H:%M %Z}."
            )

    def _choose_workspace(self, store: ConfigStore, result: LoginResult) -> None:
        listing = "\n".join(
            f"  {number}. {workspace.name} ({workspace.id})"
            for number, workspace in enumerate(result.workspaces, start=1)
        )
        print(f"This organization has {len(result.workspaces)} workspaces:\n{listing}")
        how_later = (
            "Select one later with %astro_workspace switch NAME "
            "(or `astro workspace switch` in a terminal)."
        )
        if not self._can_prompt():
            print(f"Workspace: none selected. {how_later}")
            return
        try:
            answer = builtins.input(f"Workspace number (1-{len(result.workspaces)}): ").strip()
        except (StdinNotImplementedError, EOFError, OSError):
            print(f"Workspace: none selected. {how_later}")
            return
        if not answer.isdigit() or not 1 <= int(answer) <= len(result.workspaces):
            # The input is not echoed, because a token pasted here by mistake
            # must not be printed into the notebook.
            print(
                f"Workspace: none selected (the answer is not a number from 1 to "
                f"{len(result.workspaces)}). {how_later}"
            )
            return
        chosen = result.workspaces[int(answer) - 1]
        store.update_context(result.domain, workspace=chosen.id, last_used_workspace=chosen.id)
        print(f"Workspace: {chosen.name} ({chosen.id})")
