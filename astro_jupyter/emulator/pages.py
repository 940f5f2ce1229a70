"""HTML pages of the emulated sign-in: the approval form and the error page.

The pages are small, self-contained and escape every value they show. Element
ids and classes are stable, because browser tests and ``follow_login_link``
find the form by them:

- ``form#approval-form`` posts to the decision endpoint;
- ``input#email`` (name ``email``) is the address to sign in as;
- ``button#approve.approve`` and ``button#deny.deny`` (name ``decision``,
  values ``approve`` and ``deny``) submit it;
- ``input[name=request_id]`` contains the id of the pending authorize request.

The pages contain no script and load nothing from other hosts.
"""

from __future__ import annotations

from html import escape

__all__ = [
    "APPROVAL_FORM_ID",
    "approval_page",
    "error_page",
]

APPROVAL_FORM_ID = "approval-form"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; }
dt { font-weight: 600; }
dd { margin: 0 0 .5rem 0; overflow-wrap: anywhere; }
input[type=email] { width: 100%; padding: .4rem; font-size: 1rem; box-sizing: border-box; }
.buttons { margin-top: 1rem; display: flex; gap: .5rem; }
button { padding: .5rem 1.2rem; font-size: 1rem; }
.error { color: #a00; }
.note { color: #555; font-size: .9rem; }
"""


def _document(title: str, content: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{content}\n</body></html>\n"
    )


def approval_page(
    *,
    action_url: str,
    request_id: str,
    client_id: str,
    redirect_host: str,
    scope: str,
    login_hint: str,
    organization: str | None,
    message: str | None = None,
) -> str:
    """Return the page on which the user approves or denies a sign-in request.

    Parameters
    ----------
    action_url
        The decision endpoint the form posts to.
    request_id
        The id of the pending authorize request.
    client_id
        The OAuth client that sent the request.
    redirect_host
        ``host:port`` of the redirect URI, where the browser goes next.
    scope
        The requested scopes, space-separated.
    login_hint
        The email that prefills the email field.
    organization
        The ``organization`` parameter of the request, if any.
    message
        An error to show above the form, such as a rejected email.
    """
    details = [
        ("Application (client_id)", client_id),
        ("Returns to", redirect_host),
        ("Scopes", scope),
    ]
    if organization:
        details.append(("Organization", organization))
    detail_items = "\n".join(
        f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>" for label, value in details
    )
    error = f'<p class="error" id="error">{escape(message)}</p>' if message else ""
    content = f"""<h1>Sign in to the Astro emulator</h1>
<p>An application asks to sign you in and act on your behalf.</p>
<dl>
{detail_items}
</dl>
{error}
<form id="{APPROVAL_FORM_ID}" method="post" action="{escape(action_url)}">
<input type="hidden" name="request_id" value="{escape(request_id)}">
<label for="email">Sign in as</label>
<input type="email" id="email" name="email" value="{escape(login_hint)}"
 placeholder="user@example.com" autocomplete="email">
<div class="buttons">
<button type="submit" id="approve" class="approve" name="decision" value="approve">Approve</button>
<button type="submit" id="deny" class="deny" name="decision" value="deny">Deny</button>
</div>
</form>
<p class="note">This is a local test server. No password is needed.</p>"""
    return _document("Sign in to the Astro emulator", content)


def error_page(title: str, message: str) -> str:
    """Return a page that explains why a sign-in request was rejected."""
    content = f'<h1 class="error">{escape(title)}</h1>\n<p id="error-message">{escape(message)}</p>'
    return _document(title, content)
