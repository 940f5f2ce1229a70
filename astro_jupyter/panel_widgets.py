"""The widgets of the login panel and the HTML they show, without any behaviour.

:class:`~astro_jupyter.panel.LoginPanel` wires these to a login flow.
Every widget has a CSS class starting with ``astro-`` so that tests and
user styles can find it. Every piece of text put into HTML goes through
:func:`html.escape`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone

import ipywidgets as widgets
from traitlets import Unicode

from .login_types import LoginMode, LoginResult

__all__ = [
    "MODE_LABELS",
    "TOKEN_PLACEHOLDER",
    "PanelWidgets",
    "build_widgets",
    "is_shown",
    "card_html",
    "link_html",
    "message_html",
]

MODE_LABELS = (
    ("Open a browser tab", LoginMode.BROWSER),
    ("Show a login link", LoginMode.LINK),
    ("Paste a token", LoginMode.TOKEN),
)

# Inline styles, because a widget cannot ship a style sheet without a
# frontend extension. They use JupyterLab's theme variables with fallbacks for
# other frontends.
_BUTTON_STYLE = (
    "display:inline-block;padding:6px 14px;border-radius:4px;text-decoration:none;"
    "background:var(--jp-brand-color1,#1976d2);color:var(--jp-ui-inverse-font-color1,#fff);"
    "font-weight:600"
)
TOKEN_PLACEHOLDER = "Paste an access token from the Astro UI"
_ERROR_STYLE = "color:var(--jp-error-color1,#d32f2f)"
_MUTED_STYLE = "color:var(--jp-ui-font-color2,#616161)"


@dataclass
class PanelWidgets:
    """The widgets of one login panel."""

    root: widgets.VBox
    title: widgets.HTML
    mode: widgets.ToggleButtons
    email: widgets.Text
    token: widgets.Password
    login: widgets.Button
    cancel: widgets.Button
    status: widgets.HTML
    link: widgets.HTML
    paste: widgets.Text
    paste_button: widgets.Button
    paste_box: widgets.VBox
    message: widgets.HTML
    card: widgets.HTML
    workspace: widgets.Dropdown
    again: widgets.Button


class _SecretText(widgets.Text):
    """A text field for a pasted callback address, whose value is never echoed to frontends.

    ipywidgets 8 sends each value that a frontend sets back to every frontend
    of the kernel as an ``echo_update`` message, and this value contains an
    authorization code.
    """

    value = Unicode(help="String value").tag(sync=True, echo_update=False)


class _SecretPassword(widgets.Password):
    """A password field for a pasted token, whose value is never echoed to frontends."""

    value = Unicode(help="String value").tag(sync=True, echo_update=False)


def _hidden(widget: widgets.DOMWidget) -> widgets.DOMWidget:
    widget.layout.display = "none"
    return widget


def build_widgets(domain: str, callback_redirect_uri: str) -> PanelWidgets:
    """Build the panel's widgets, with only the form visible."""
    title = widgets.HTML(
        f"<b>Log in to Astro</b> <span style='{_MUTED_STYLE}'>({html.escape(domain)})</span>"
    )
    mode = widgets.ToggleButtons(
        options=[(label, value.value) for label, value in MODE_LABELS],
        value=LoginMode.BROWSER.value,
        tooltips=[
            "Open the sign-in page in a new tab of this browser",
            "Show a link to open in a browser on any device",
            "Log in with an access token copied from the Astro UI",
        ],
        style={"button_width": "auto"},
    )
    email = widgets.Text(
        placeholder="name@example.com",
        description="Email",
        continuous_update=False,
        layout=widgets.Layout(width="24em"),
    )
    # continuous_update=False keeps a half-typed token out of the widget state
    # until the field loses focus. The panel then takes it out at once.
    token = _hidden(
        _SecretPassword(
            placeholder=TOKEN_PLACEHOLDER,
            description="Token",
            continuous_update=False,
            layout=widgets.Layout(width="32em"),
        )
    )
    login = widgets.Button(description="Log in", button_style="primary", icon="sign-in")
    cancel = _hidden(widgets.Button(description="Cancel", icon="times"))
    status = widgets.HTML()
    link = _hidden(widgets.HTML())
    paste = _SecretText(
        placeholder=f"{callback_redirect_uri}?code=…&state=…",
        description="Address",
        continuous_update=False,
        layout=widgets.Layout(width="40em", max_width="100%"),
    )
    # The button keeps its width on narrow screens and wraps below the field.
    paste_button = widgets.Button(
        description="Finish login", icon="check", layout=widgets.Layout(flex="0 0 auto")
    )
    paste_help = widgets.HTML(
        f"<span style='{_MUTED_STYLE}'>If the browser cannot reach this kernel (a remote "
        "JupyterHub, or another program on the port), the sign-in ends on an error page or on "
        "another program's page. Copy that page's whole address from the address bar and "
        "paste it here.</span>"
    )
    paste_row = widgets.HBox([paste, paste_button], layout=widgets.Layout(flex_flow="row wrap"))
    paste_box = _hidden(widgets.VBox([paste_help, paste_row]))
    message = widgets.HTML()
    card = _hidden(widgets.HTML())
    workspace = _hidden(
        widgets.Dropdown(description="Workspace", layout=widgets.Layout(width="32em"))
    )
    again = _hidden(widgets.Button(description="Log in again", icon="refresh"))

    root = widgets.VBox(
        [
            title,
            mode,
            email,
            token,
            widgets.HBox([login, cancel]),
            status,
            link,
            paste_box,
            message,
            card,
            workspace,
            again,
        ]
    )
    for widget, name in (
        (root, "astro-login-panel"),
        (mode, "astro-mode"),
        (email, "astro-email"),
        (token, "astro-token"),
        (login, "astro-login"),
        (cancel, "astro-cancel"),
        (status, "astro-status"),
        (link, "astro-link"),
        (paste, "astro-paste"),
        (paste_button, "astro-paste-finish"),
        (paste_box, "astro-paste-box"),
        (message, "astro-message"),
        (card, "astro-card"),
        (workspace, "astro-workspace"),
        (again, "astro-again"),
    ):
        widget.add_class(name)
    return PanelWidgets(
        root=root,
        title=title,
        mode=mode,
        email=email,
        token=token,
        login=login,
        cancel=cancel,
        status=status,
        link=link,
        paste=paste,
        paste_button=paste_button,
        paste_box=paste_box,
        message=message,
        card=card,
        workspace=workspace,
        again=again,
    )


def is_shown(widget: widgets.DOMWidget) -> bool:
    """Tell whether ``widget`` is set to be shown."""
    return bool(widget.layout.display != "none")


def show(widget: widgets.DOMWidget, visible: bool) -> None:
    """Show or hide ``widget`` without removing it from the layout tree."""
    widget.layout.display = "" if visible else "none"


def link_html(url: str, mode: LoginMode) -> str:
    """Return the HTML that hands the sign-in page to the user.

    In browser mode that is a button-like link: the browser opens the tab as
    the direct result of the click, so pop-up blockers let it through. In link
    mode it is the address itself with a copy button, for another device.
    """
    escaped = html.escape(url, quote=True)
    anchor_attributes = f'href="{escaped}" target="_blank" rel="noopener noreferrer"'
    if mode is LoginMode.BROWSER:
        return (
            f'<a class="astro-open-tab" {anchor_attributes} style="{_BUTTON_STYLE}">'
            "Open the Astro sign-in page</a>"
        )
    # The copy button runs in the browser, because the kernel cannot reach
    # the user's clipboard. It reads the address from its own attribute, so
    # no address text is ever placed inside script source.
    copy_button = (
        f'<button type="button" class="astro-copy" data-url="{escaped}" '
        'onclick="navigator.clipboard.writeText(this.dataset.url).then('
        "() => { this.textContent = 'Copied'; }, "
        "() => { this.textContent = 'Copy failed: select the link instead'; })\">"
        "Copy link</button>"
    )
    return (
        "<div>Open this link in a browser on any device and sign in:</div>"
        f'<div style="word-break:break-all;margin:4px 0"><a class="astro-login-link" '
        f"{anchor_attributes}>{escaped}</a></div>{copy_button}"
    )


def message_html(text: str, *, error: bool = False) -> str:
    """Return one line of feedback, red for an error."""
    if not text:
        return ""
    style = _ERROR_STYLE if error else _MUTED_STYLE
    return f'<span style="{style}">{html.escape(text)}</span>'


def status_html(text: str) -> str:
    """Return the progress line."""
    return html.escape(text)


def _expiry_text(result: LoginResult, now: datetime) -> str:
    minutes = max(int((result.expires_at - now).total_seconds() // 60), 0)
    local = result.expires_at.astimezone()
    text = f"{local:%Y-%m-%d %H:%M %Z} (in {minutes} min)"
    if result.refreshable:
        return text + ", refreshed automatically"
    return text + ", cannot be refreshed: log in again after that"


def card_html(result: LoginResult, notes: list[str], *, now: datetime | None = None) -> str:
    """Return the summary shown after a successful login; it contains no token."""
    now = now or datetime.now(timezone.utc)
    organization = result.organization
    rows = [
        ("Email", result.email),
        ("Domain", result.domain),
        ("Organization", f"{organization.name} ({organization.id})"),
    ]
    if result.workspace is not None and len(result.workspaces) <= 1:
        rows.append(("Workspace", f"{result.workspace.name} ({result.workspace.id})"))
    elif not result.workspaces:
        rows.append(("Workspace", "none yet: create one in the Astro UI"))
    elif result.workspace is None:
        rows.append(("Workspace", "none selected: choose one below"))
    rows.append(("Token expires", _expiry_text(result, now)))
    table = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(name)}</th>"
        f"<td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    extra = "".join(f"<div style='{_MUTED_STYLE}'>{html.escape(note)}</div>" for note in notes)
    return (
        f"<div><b>&#10003; Logged in to {html.escape(result.domain)} as "
        f"{html.escape(result.email)}.</b></div><table>{table}</table>{extra}"
    )
