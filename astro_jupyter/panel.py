"""The login panel: an ipywidgets view over :class:`~astro_jupyter.login_flow.LoginFlow`.

The panel never blocks the kernel. Clicks start or cancel a flow that runs in
a background thread, and the flow's events update the widgets from that
thread (ipywidgets sends those updates with no cell running). Values that are
secrets, a pasted token or a pasted callback address, are taken out of their
widget as soon as the kernel reads them, so a notebook saved with widget state
after that does not contain them. While a cell runs, the kernel reads no widget
input, so those fields are disabled until the cell ends.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from .config_store import ConfigStore
from .emails import validate_email
from .errors import AstroJupyterError, InvalidInputError, LoginCancelledError, excerpt
from .login_flow import LoginFlow
from .login_notes import result_notes
from .login_types import LoginEvent, LoginMode, LoginOptions, LoginResult, LoginStep
from .panel_widgets import (
    TOKEN_PLACEHOLDER,
    build_widgets,
    card_html,
    is_shown,
    link_html,
    message_html,
    show,
    status_html,
)
from .settings import AstroLogin

__all__ = ["LoginPanel", "new_login_panel"]

_TICK_S = 1.0


class _PanelState(enum.Enum):
    FORM = "form"
    RUNNING = "running"
    DONE = "done"


class LoginPanel:
    """An interactive login to one Astro domain, shown as widgets.

    Parameters
    ----------
    settings
        The settings; their :attr:`~AstroLogin.logins` tracker makes sure a
        new login replaces the one in progress.
    store
        The config file the login is saved to.
    options
        The resolved domain, API URL, port and timeouts.
    email
        The account to prefill; the panel starts at once when it is given (or
        saved) and ``mode`` is not token mode.
    mode
        The way in selected at first.
    token
        An access token to log in with at once (token mode only).
    """

    def __init__(
        self,
        settings: AstroLogin,
        store: ConfigStore,
        options: LoginOptions,
        *,
        email: str | None = None,
        mode: LoginMode = LoginMode.BROWSER,
        token: str | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self.options = options
        self._lock = threading.RLock()
        self._state = _PanelState.FORM
        self._flow: LoginFlow | None = None
        self._switching_to_token = False
        self._pending_token: str | None = None
        self._result: LoginResult | None = None
        self._waiting_event: LoginEvent | None = None
        self._cell_running = False
        self._cancel_requested = False
        self._listening_port: int | None = None
        self._filling_workspaces = False

        redirect_uri = f"http://localhost:{options.callback_port or 'PORT'}/callback"
        self.widgets = build_widgets(options.domain, redirect_uri)
        self._paste_placeholder = self.widgets.paste.placeholder
        self.widgets.email.value = email or ""
        self.widgets.mode.value = mode.value
        self._show_mode_fields()
        self._connect()

        if mode is LoginMode.TOKEN and token:
            self._pending_token = token
            self._start()
        elif mode is not LoginMode.TOKEN and email:
            self._start()

    def __repr__(self) -> str:
        return f"LoginPanel(domain={self.options.domain!r}, state={self._state.value!r})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.widgets.root._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = (
            f"Astro login panel for {self.options.domain}; it needs a frontend that shows "
            "ipywidgets. Use %astro_login --no-widget for the text form."
        )
        return bundle

    # Public state

    @property
    def flow(self) -> LoginFlow | None:
        """The login started by this panel last, if any."""
        return self._flow

    @property
    def result(self) -> LoginResult | None:
        """The result of this panel's successful login, if it has one."""
        return self._result

    @property
    def mode(self) -> LoginMode:
        """The way in selected in the panel."""
        return LoginMode(self.widgets.mode.value)

    # Cells running in the kernel

    def watch_cell_runs(self, shell: Any, *, cell_running: bool = True) -> None:
        """Disable the token and address fields while a cell runs in ``shell``.

        While a cell runs, the kernel handles no widget messages, so it could
        not take a pasted secret out of its field, and a notebook saved then
        would contain it. ``cell_running`` is the state at the time of the
        call: true when the panel is made inside a cell, as it usually is.
        """
        self._cell_running = cell_running
        self._update_secret_fields()
        shell.events.register("pre_run_cell", self._on_cell_start)
        shell.events.register("post_run_cell", self._on_cell_end)

    def _on_cell_start(self, _info: object = None) -> None:
        with self._lock:
            self._cell_running = True
            self._update_secret_fields()

    def _on_cell_end(self, _result: object = None) -> None:
        with self._lock:
            self._cell_running = False
            self._update_secret_fields()

    def _update_secret_fields(self) -> None:
        """Apply the cell-running state to the secret fields that are shown.

        Hidden fields are left alone, so old panels, most of them ended, send
        no widget messages on every cell. A field gets the state when shown.
        """
        if is_shown(self.widgets.token):
            self._set_token_field()
        if is_shown(self.widgets.paste_box):
            self._set_paste_fields()

    def _set_token_field(self) -> None:
        token = self.widgets.token
        token.disabled = self._cell_running or self._state is _PanelState.RUNNING
        if self._cell_running:
            token.placeholder = "Paste a token once no cell is running"
        else:
            token.placeholder = TOKEN_PLACEHOLDER

    def _set_paste_fields(self) -> None:
        w = self.widgets
        w.paste.disabled = self._cell_running
        w.paste_button.disabled = self._cell_running
        if self._cell_running:
            w.paste.placeholder = "Paste the address once no cell is running"
        else:
            w.paste.placeholder = self._paste_placeholder

    # Wiring

    def _connect(self) -> None:
        w = self.widgets
        w.login.on_click(lambda _button: self._start())
        w.cancel.on_click(lambda _button: self.cancel())
        w.again.on_click(lambda _button: self._back_to_form(""))
        w.paste_button.on_click(lambda _button: self._take_pasted_address())
        w.mode.observe(self._on_mode_change, names="value")
        w.token.observe(self._on_token_value, names="value")
        w.paste.observe(lambda _change: self._take_pasted_address(), names="value")
        w.workspace.observe(self._on_workspace_change, names="value")

    def _show_mode_fields(self) -> None:
        token_mode = self.mode is LoginMode.TOKEN
        if token_mode:
            self._set_token_field()
        show(self.widgets.email, not token_mode)
        show(self.widgets.token, token_mode)

    # Starting and stopping

    def _start(self) -> None:
        with self._lock:
            if self._state is _PanelState.RUNNING:
                return
            w = self.widgets
            try:
                flow = self._new_flow()
            except AstroJupyterError as error:
                w.message.value = message_html(str(error), error=True)
                return
            self._flow = flow
            self._state = _PanelState.RUNNING
            self._waiting_event = None
            self._cancel_requested = False
            self._listening_port = None
            w.message.value = ""
            w.email.disabled = True
            self._update_secret_fields()
            show(w.login, False)
            show(w.cancel, True)
            show(w.card, False)
            show(w.workspace, False)
            show(w.again, False)
            w.status.value = status_html("Starting the login.")
        flow.subscribe(self._on_event)
        self._settings.logins.begin(flow)
        flow.start()
        threading.Thread(
            target=self._tick, args=(flow,), name="astro-login-panel-timer", daemon=True
        ).start()

    def _new_flow(self) -> LoginFlow:
        if self.mode is LoginMode.TOKEN:
            token, self._pending_token = self._pending_token, None
            if not token:
                raise InvalidInputError(
                    "Paste an access token from the Astro UI into the Token field first."
                )
            return LoginFlow(self.options, self._store, mode=LoginMode.TOKEN, token=token)
        email = validate_email(self.widgets.email.value)
        self.widgets.email.value = email
        # The panel never opens a browser on the kernel's machine: the tab
        # opens from the link in the browser that shows the notebook.
        return LoginFlow(
            self.options, self._store, mode=LoginMode.LINK, email=email, paste_back=True
        )

    def cancel(self) -> None:
        """Cancel the login in progress, which frees the callback port."""
        flow = self._flow
        if flow is not None and not flow.done:
            self._cancel_requested = True
            flow.cancel()

    def _back_to_form(self, message: str, *, error: bool = False) -> None:
        with self._lock:
            w = self.widgets
            self._state = _PanelState.FORM
            self._waiting_event = None
            w.email.disabled = False
            self._update_secret_fields()
            w.login.description = "Try again" if error else "Log in"
            show(w.login, True)
            show(w.cancel, False)
            self._hide_sign_in()
            show(w.card, False)
            show(w.workspace, False)
            show(w.again, False)
            w.status.value = ""
            w.message.value = message_html(message, error=error)
            self._show_mode_fields()

    # Events from the flow's thread

    def _on_event(self, event: LoginEvent) -> None:
        with self._lock:
            if event.step is LoginStep.WAITING_FOR_BROWSER:
                self._waiting_event = event
                if event.callback_listening:
                    self._listening_port = urlsplit(event.redirect_uri or "").port
                self._show_waiting()
            elif event.step.is_final:
                self._finish(event)
            else:
                self._waiting_event = None
                self._hide_sign_in()
                self.widgets.status.value = status_html(event.message)

    def _show_waiting(self) -> None:
        event = self._waiting_event
        if event is None or not event.authorize_url:
            return
        w = self.widgets
        if event.redirect_uri:
            self._paste_placeholder = f"{event.redirect_uri}?code=…&state=…"
        self._set_paste_fields()
        w.link.value = link_html(event.authorize_url, self.mode)
        show(w.link, True)
        show(w.paste_box, True)
        self._update_countdown()

    def _hide_sign_in(self) -> None:
        """Hide the sign-in link and the address field, and drop the link's address."""
        show(self.widgets.link, False)
        self.widgets.link.value = ""
        show(self.widgets.paste_box, False)

    def _update_countdown(self) -> None:
        event = self._waiting_event
        if event is None or event.deadline_monotonic is None:
            return
        left = max(int(event.deadline_monotonic - time.monotonic()), 0)
        countdown = f"{left // 60}:{left % 60:02d} left"
        if event.callback_listening is False:
            port = urlsplit(event.redirect_uri or "").port
            text = (
                f"Port {port} is in use by another program, such as another notebook's login, "
                f"so the browser cannot come back to this kernel: paste its address below. "
                f"{countdown}."
            )
        else:
            text = f"Waiting for the sign-in in the browser: {countdown}."
        self.widgets.status.value = status_html(text)

    def _tick(self, flow: LoginFlow) -> None:
        # Ends at most one tick after the login ends.
        stopped = threading.Event()
        while not flow.done and not stopped.wait(_TICK_S):
            with self._lock:
                if self._flow is not flow:
                    return
                if flow.step is LoginStep.WAITING_FOR_BROWSER:
                    self._update_countdown()

    def _finish(self, event: LoginEvent) -> None:
        flow = self._flow
        if flow is None:
            return
        try:
            result = flow.wait(0)
        except LoginCancelledError as error:
            if self._switching_to_token:
                self._switching_to_token = False
                self._back_to_form("Paste an access token from the Astro UI, then click Log in.")
            elif self._cancel_requested and self._listening_port:
                self._back_to_form(
                    f"Login cancelled; nothing was saved and port {self._listening_port} is "
                    "free again."
                )
            else:
                # Replaced by a newer login, which may be listening on the same port now.
                self._back_to_form(f"{str(error).rstrip('.')}; nothing was saved.")
            return
        except (AstroJupyterError, TimeoutError) as error:
            self._back_to_form(str(error), error=True)
            return
        except Exception:
            self._back_to_form(event.message, error=True)
            return
        self._show_result(result)

    def _show_result(self, result: LoginResult) -> None:
        w = self.widgets
        self._result = result
        self._state = _PanelState.DONE
        self._waiting_event = None
        show(w.cancel, False)
        self._hide_sign_in()
        show(w.email, False)
        show(w.token, False)
        w.status.value = ""
        w.message.value = ""
        self._show_card(result)
        w.again.description = "Log in again"
        show(w.again, True)

    def _show_card(self, result: LoginResult) -> None:
        w = self.widgets
        w.card.value = card_html(result, result_notes(result))
        show(w.card, True)
        if len(result.workspaces) <= 1:
            return
        options = [
            (f"{workspace.name} ({workspace.id})", workspace.id) for workspace in result.workspaces
        ]
        if result.workspace is None:
            # A Dropdown shows no entry for the value None, so the entry
            # for "none selected" has an empty id instead.
            options.insert(0, ("None selected: choose a workspace", ""))
        self._filling_workspaces = True
        try:
            w.workspace.options = options
            w.workspace.value = result.workspace.id if result.workspace else ""
        finally:
            self._filling_workspaces = False
        show(w.workspace, True)

    # User input in the kernel's thread

    def _on_mode_change(self, change: dict[str, Any]) -> None:
        new_mode = LoginMode(change["new"])
        with self._lock:
            if self._state is _PanelState.RUNNING:
                if new_mode is LoginMode.TOKEN:
                    self._switching_to_token = True
                    self.cancel()
                else:
                    self._show_waiting()
                return
            if self._state is _PanelState.DONE:
                # The summary stays; the new way in applies after "Log in again".
                return
            self.widgets.message.value = ""
            self._show_mode_fields()

    def _on_token_value(self, change: dict[str, Any]) -> None:
        value = change["new"]
        if not value:
            return
        # Taken out of the widget at once, so saved widget state never contains it.
        self.widgets.token.value = ""
        self._pending_token = value
        self.widgets.message.value = message_html(
            f"Token received ({len(value.strip())} characters); click Log in."
        )

    def _take_pasted_address(self) -> None:
        address = self.widgets.paste.value
        if not address:
            return
        # Out of the widget at once: the address contains the authorization code.
        self.widgets.paste.value = ""
        flow = self._flow
        if flow is None or flow.done:
            self.widgets.message.value = message_html(
                "No login is waiting for the browser; click Log in first.", error=True
            )
            return
        try:
            flow.deliver_redirect(address)
        except InvalidInputError as error:
            self.widgets.message.value = message_html(str(error), error=True)
            return
        self.widgets.message.value = message_html("Address received; finishing the login.")

    def _on_workspace_change(self, change: dict[str, Any]) -> None:
        result = self._result
        workspace_id = change["new"]
        if result is None or self._filling_workspaces or self._state is not _PanelState.DONE:
            return
        chosen = next((w for w in result.workspaces if w.id == workspace_id), None)
        if chosen is None or chosen == result.workspace:
            # "None selected" cannot be chosen back: the saved workspace stays.
            self._show_card(result)
            return
        try:
            self._store.update_context(
                result.domain, workspace=chosen.id, last_used_workspace=chosen.id
            )
        except AstroJupyterError as error:
            self._show_card(result)
            self.widgets.message.value = message_html(str(error), error=True)
            return
        self._result = _with_workspace(result, chosen)
        self._show_card(self._result)
        self.widgets.message.value = message_html(f"Workspace set to {chosen.name} ({chosen.id}).")


def _with_workspace(result: LoginResult, workspace: Any) -> LoginResult:
    return dataclasses.replace(result, workspace=workspace)


def new_login_panel(
    domain: str | None = None,
    *,
    email: str | None = None,
    mode: str = "browser",
    timeout: float | None = None,
    token: str | None = None,
) -> LoginPanel:
    """Build a panel for ``domain`` with the process's settings and config file.

    Raises
    ------
    InvalidInputError
        The domain, email, mode or timeout is invalid.
    """
    from .credentials import default_store
    from .login_setup import login_options, saved_email

    try:
        login_mode = LoginMode(mode)
    except ValueError:
        choices = ", ".join(repr(item.value) for item in LoginMode)
        raise InvalidInputError(
            f"Invalid mode {excerpt(mode)!r}: expected one of {choices}."
        ) from None
    settings = AstroLogin.instance()
    store = default_store()
    options = login_options(settings, store, domain, timeout, timeout_name="timeout")
    if email is not None:
        email = validate_email(email)
    else:
        email = saved_email(store, options.domain)
    panel = LoginPanel(settings, store, options, email=email, mode=login_mode, token=token)
    shell = _kernel_shell()
    if shell is not None:
        panel.watch_cell_runs(shell)
    return panel


def _kernel_shell() -> Any:
    """Return the IPython shell when this process is a kernel with a frontend, else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if getattr(shell, "kernel", None) is not None else None
