"""A scripted browser that opens a printed login link and submits the approval form.

``follow_login_link`` plays the part of a person in tests and in the demo: it
opens the authorize URL, approves or denies on the emulator's approval page,
and follows every redirect, including the one to the loopback callback. It
connects only to loopback addresses and names ``localhost`` itself, so it never
sends a request off the machine. It runs no scripts, keeps no cookies and
does not parse any page but the approval form.
"""

from __future__ import annotations

import http.client
import ipaddress
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from .pages import APPROVAL_FORM_ID

# The path of the loopback callback that login links redirect to.
CALLBACK_PATH = "/callback"

__all__ = ["FollowError", "FollowResult", "NotLoopbackError", "follow_login_link"]

MAX_REDIRECTS = 10
MAX_PAGE_BYTES = 1 << 20
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class FollowError(RuntimeError):
    """The login link could not be followed to the end."""


class NotLoopbackError(FollowError):
    """A URL on the way points off the machine, so it was not requested."""


@dataclass(frozen=True)
class FollowResult:
    """The page where the scripted browser stopped.

    ``url`` and ``history`` may carry an authorization code in their queries,
    so ``repr`` shows them without queries.

    Attributes
    ----------
    url
        The last URL requested.
    status
        Its HTTP status.
    text
        Its body, decoded as UTF-8 with replacement characters.
    history
        Every URL requested, in order, ``url`` included.
    approval_page_shown
        Whether the emulator's approval form was submitted on the way.
    """

    url: str
    status: int
    text: str
    history: tuple[str, ...] = field(default=())
    approval_page_shown: bool = False

    def __repr__(self) -> str:
        return (
            f"FollowResult(url={_without_query(self.url)!r}, status={self.status}, "
            f"text=<{len(self.text)} characters>, requests={len(self.history)}, "
            f"approval_page_shown={self.approval_page_shown})"
        )

    @property
    def query(self) -> dict[str, str]:
        """The query parameters of the final URL, first value of each."""
        return {name: values[0] for name, values in parse_qs(urlsplit(self.url).query).items()}


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    suffix = "?<query hidden>" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{suffix}"


class _FormParser(HTMLParser):
    """Collect the action and input values of the approval form."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = False
        self.action = ""
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and attributes.get("id") == APPROVAL_FORM_ID:
            self.found, self._inside = True, True
            self.action = attributes.get("action", "")
        elif tag == "input" and self._inside and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def _connect_addresses(host: str) -> list[str]:
    """Return the loopback addresses to try for ``host``, or raise ``NotLoopbackError``."""
    if host == "localhost":
        # Treat localhost as loopback without asking a resolver, so no lookup can send it elsewhere.
        return ["127.0.0.1", "::1"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise NotLoopbackError(
            f"Refusing to follow a link to {host!r}: only loopback addresses "
            "(localhost, 127.0.0.0/8, ::1) are followed."
        )
    return [address.compressed]


def _request(
    method: str, url: str, body: bytes | None, deadline: float
) -> tuple[int, str | None, str]:
    """Send one request and return status, Location header and page text."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise NotLoopbackError(
            f"Refusing to follow {_without_query(url)!r}: only http:// loopback URLs are followed."
        )
    addresses = _connect_addresses(parts.hostname)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = {"Host": parts.netloc, "User-Agent": "astro-emulator-browser", "Accept": "text/html"}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"

    last_error: OSError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection = http.client.HTTPConnection(address, parts.port or 80, timeout=remaining)
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(MAX_PAGE_BYTES)
            return response.status, response.getheader("Location"), data.decode("utf-8", "replace")
        except ConnectionRefusedError as exc:
            last_error = exc
        except TimeoutError as exc:
            raise FollowError(f"Timed out waiting for {_without_query(url)!r}.") from exc
        finally:
            connection.close()
    if last_error is None:
        raise FollowError(f"Timed out before requesting {_without_query(url)!r}.")
    raise FollowError(f"Connection refused by {_without_query(url)!r}.") from last_error


def follow_login_link(
    url: str,
    *,
    approve: bool = True,
    email: str | None = None,
    timeout_s: float = 10,
    reach_callback: bool = True,
) -> FollowResult:
    """Open a login link as a browser would and return the page where it ends.

    GETs the authorize URL. If the emulator shows its approval page, submits
    Approve (signing in as ``email`` when given, else the prefilled
    ``login_hint``) or Deny. Then follows redirects to the end, through the
    loopback callback that the link names.

    With ``reach_callback=False`` it plays a browser on another machine, which
    cannot reach the kernel's loopback callback: it stops at the redirect to
    the callback without requesting it and returns that address with status 0,
    as the user would find it in the address bar.

    Parameters
    ----------
    url
        The authorize URL, as a login prints it.
    approve
        Click Approve (``True``) or Deny (``False``).
    email
        Email to type into the approval page instead of the prefilled one.
    timeout_s
        Maximum seconds for the whole walk.
    reach_callback
        Whether to request the loopback callback at the end.

    Raises
    ------
    NotLoopbackError
        A URL on the way is not an http:// URL on a loopback address; it was not requested.
    FollowError
        A timeout, a refused connection, too many redirects, or ``approve=False``
        or ``email`` given while the link redirects at once without an approval
        page (the emulator's ``approve_as`` is set).
    """
    deadline = time.monotonic() + timeout_s
    history: list[str] = []
    approval_page_shown = False
    method, body = "GET", None
    while True:
        if len(history) > MAX_REDIRECTS:
            raise FollowError(f"Stopped after {MAX_REDIRECTS} redirects.")
        history.append(url)
        status, location, text = _request(method, url, body, deadline)
        method, body = "GET", None

        if status in _REDIRECT_STATUSES and location:
            if len(history) == 1 and (not approve or email is not None):
                # The authorize URL redirected without asking, so it carries a code.
                # Stop here rather than deliver a login that the caller meant to deny.
                raise FollowError(
                    "The login link redirected without an approval page (the emulator's "
                    "approve_as is set?), so Deny or another email could not be chosen; "
                    "call set_approve_as(None) first."
                )
            url = urljoin(url, location)
            if not reach_callback and urlsplit(url).path == CALLBACK_PATH:
                return FollowResult(url, 0, "", tuple(history), approval_page_shown)
            continue
        form = _FormParser()
        form.feed(text)
        if status == 200 and form.found and not approval_page_shown:
            approval_page_shown = True
            fields = dict(form.fields)
            fields["decision"] = "approve" if approve else "deny"
            if email is not None:
                fields["email"] = email
            url, method = urljoin(url, form.action), "POST"
            body = urlencode(fields).encode("ascii")
            continue
        break

    return FollowResult(url, status, text, tuple(history), approval_page_shown)
