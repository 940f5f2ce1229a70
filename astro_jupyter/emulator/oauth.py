"""Handlers of the emulated OAuth server: authorize, the approval decision, token, userinfo.

The authorize endpoint validates the request, then either approves it at once
(when ``approve_as`` is set) or serves the approval page. The token endpoint
redeems codes and rotates refresh tokens through the token store. These
handlers do not read sockets, apply faults or log: the server does that.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

from .backend import AUDIENCE, CLIENT_ID, DEFAULT_SCOPE, AuthorizeRequest, Backend
from .messages import (
    HttpError,
    InvalidParameterError,
    Request,
    Response,
    api_error,
    html_response,
    json_response,
    oauth_error,
    redirect,
)
from .pages import approval_page, error_page
from .state import User
from .tokens import InvalidAccessTokenError, TokenRequestError

__all__ = [
    "authenticate",
    "authorize",
    "decide",
    "token",
    "token_endpoint_name",
    "userinfo",
    "validate_redirect_uri",
]

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# An S256 challenge is the unpadded base64url form of a 32-byte hash (RFC 7636 section 4.2).
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def validate_redirect_uri(uri: str) -> str | None:
    """Return why ``uri`` is not an accepted redirect URI, or ``None`` when it is.

    Accepted are ``http://localhost:<port>/callback``, ``http://127.0.0.1:<port>/callback``
    and ``http://[::1]:<port>/callback`` with any port, as RFC 8252 section 7.3
    allows for loopback redirects of native apps.
    """
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return "redirect_uri is not a valid URL."
    host = parts.hostname or ""
    if parts.scheme != "http" or host not in _LOOPBACK_NAMES:
        return "redirect_uri must be http:// on localhost, 127.0.0.1 or [::1]."
    if port is None or port == 0:
        return "redirect_uri must name a port, such as http://localhost:12345/callback."
    netloc_host = f"[{host}]" if host == "::1" else host
    if parts.netloc != f"{netloc_host}:{port}":
        return "redirect_uri must not contain user information or an unusual port form."
    if parts.path != "/callback" or parts.query or parts.fragment:
        return "redirect_uri must have the path /callback and no query or fragment."
    return None


def _with_params(redirect_uri: str, params: dict[str, str | None]) -> str:
    present = {name: value for name, value in params.items() if value is not None}
    return f"{redirect_uri}?{urlencode(present)}"


def _reject_page(message: str) -> Response:
    return html_response(400, error_page("Invalid sign-in request", message))


def _parse_authorize_request(query: dict[str, str]) -> AuthorizeRequest:
    """Return the validated request, or raise ``HttpError`` with the error response.

    RFC 6749 section 4.1.2.1: a request with an invalid client_id or redirect_uri
    gets an error page and is never redirected. Other errors are sent to the
    redirect URI as ``error=...``, with the state.
    """
    client_id = query.get("client_id", "")
    if client_id != CLIENT_ID:
        raise HttpError(_reject_page(f"Unknown client_id {client_id!r}: expected {CLIENT_ID!r}."))
    redirect_uri = query.get("redirect_uri", "")
    problem = validate_redirect_uri(redirect_uri)
    if problem:
        raise HttpError(_reject_page(problem))

    state = query.get("state")

    def fail(error: str, description: str) -> HttpError:
        params = {"error": error, "error_description": description, "state": state}
        return HttpError(redirect(_with_params(redirect_uri, params)))

    if query.get("response_type") != "code":
        raise fail("unsupported_response_type", "response_type must be code.")
    if query.get("response_mode", "query") != "query":
        raise fail("invalid_request", "response_mode must be query.")
    if query.get("code_challenge_method") != "S256":
        raise fail("invalid_request", "code_challenge_method must be S256.")
    if not _S256_CHALLENGE.match(query.get("code_challenge", "")):
        raise fail("invalid_request", "code_challenge must be 43 base64url characters.")
    if query.get("audience", AUDIENCE) != AUDIENCE:
        raise fail("invalid_request", f"Unknown audience: expected {AUDIENCE!r}.")

    return AuthorizeRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=query["code_challenge"],
        scope=query.get("scope") or DEFAULT_SCOPE,
        login_hint=query.get("login_hint", ""),
        organization=query.get("organization") or None,
    )


def _approve(backend: Backend, request: AuthorizeRequest, email: str) -> Response:
    user = backend.directory.ensure_user(email)
    code = backend.tokens.issue_code(
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        code_challenge=request.code_challenge,
        scope=request.scope,
        user=user,
    )
    return redirect(_with_params(request.redirect_uri, {"code": code, "state": request.state}))


def _render_approval(
    backend: Backend,
    request_id: str,
    request: AuthorizeRequest,
    *,
    email: str,
    message: str | None = None,
) -> str:
    return approval_page(
        action_url=backend.oauth_base_url + "authorize/decision",
        request_id=request_id,
        client_id=request.client_id,
        redirect_host=urlsplit(request.redirect_uri).netloc,
        scope=request.scope,
        login_hint=email,
        organization=request.organization,
        message=message,
    )


def authorize(backend: Backend, request: Request) -> Response:
    """Handle ``GET <domainUrl>authorize``.

    With ``approve_as`` set, the user signs in as that email whatever
    ``login_hint`` contains, and the browser goes straight back with a code.
    Otherwise the handler serves the approval page. ``organization`` and ``prompt`` are
    accepted; ``organization`` is shown on the page.
    """
    try:
        query = request.query()
    except InvalidParameterError as exc:
        return _reject_page(str(exc))
    authorize_request = _parse_authorize_request(query)

    approve_as = backend.approve_as
    if approve_as:
        return _approve(backend, authorize_request, approve_as)

    request_id = backend.pending.add(authorize_request)
    page = _render_approval(
        backend, request_id, authorize_request, email=authorize_request.login_hint
    )
    return html_response(200, page)


def decide(backend: Backend, request: Request) -> Response:
    """Handle the approval form: ``POST <domainUrl>authorize/decision``."""
    try:
        form = request.form()
    except InvalidParameterError as exc:
        return _reject_page(str(exc))
    request_id = form.get("request_id", "")
    authorize_request = backend.pending.get(request_id)
    if authorize_request is None:
        return _reject_page(
            "This sign-in request is unknown, expired or already decided. Start the login again."
        )

    decision = form.get("decision")
    if decision == "deny":
        backend.pending.pop(request_id)
        params = {
            "error": "access_denied",
            "error_description": "The user denied the sign-in request.",
            "state": authorize_request.state,
        }
        return redirect(_with_params(authorize_request.redirect_uri, params))
    if decision != "approve":
        return _reject_page(f"Invalid decision {decision!r}: expected approve or deny.")

    email = form.get("email", "").strip() or authorize_request.login_hint
    try:
        backend.directory.ensure_user(email)
    except ValueError as exc:
        page = _render_approval(
            backend, request_id, authorize_request, email=email, message=str(exc)
        )
        return html_response(400, page)
    if backend.pending.pop(request_id) is None:
        return _reject_page("This sign-in request was decided in another window.")
    return _approve(backend, authorize_request, email)


def token_endpoint_name(request: Request) -> str:
    """Return ``"refresh"`` for a refresh_token grant and ``"token"`` for anything else."""
    try:
        grant_type = request.form().get("grant_type")
    except InvalidParameterError:
        return "token"
    return "refresh" if grant_type == "refresh_token" else "token"


def token(backend: Backend, request: Request) -> Response:
    """Handle ``POST <domainUrl>oauth/token``: authorization_code and refresh_token grants."""
    try:
        form = request.form()
    except InvalidParameterError as exc:
        return oauth_error("invalid_request", str(exc))
    client_id = form.get("client_id")
    if not client_id:
        return oauth_error("invalid_request", "client_id is missing.")
    if client_id != CLIENT_ID:
        return oauth_error("invalid_client", f"Unknown client_id {client_id!r}.")

    grant_type = form.get("grant_type")
    try:
        if grant_type == "authorization_code":
            missing = [name for name in ("code", "redirect_uri") if not form.get(name)]
            if missing:
                return oauth_error("invalid_request", f"Missing parameters: {', '.join(missing)}.")
            payload = backend.tokens.exchange_code(
                client_id=client_id,
                code=form["code"],
                redirect_uri=form["redirect_uri"],
                code_verifier=form.get("code_verifier", ""),
            )
        elif grant_type == "refresh_token":
            if not form.get("refresh_token"):
                return oauth_error("invalid_request", "refresh_token is missing.")
            payload = backend.tokens.refresh(
                client_id=client_id, refresh_token=form["refresh_token"]
            )
        else:
            return oauth_error(
                "unsupported_grant_type",
                f"Unsupported grant_type {grant_type!r}: "
                "expected authorization_code or refresh_token.",
            )
    except TokenRequestError as exc:
        return oauth_error(exc.error, exc.description)
    return json_response(200, payload, (("Cache-Control", "no-store"), ("Pragma", "no-cache")))


def userinfo(backend: Backend, request: Request) -> Response:
    """Handle ``GET <domainUrl>userinfo`` with a bearer access token."""
    user = authenticate(backend, request)
    return json_response(200, user.userinfo())


def authenticate(backend: Backend, request: Request) -> User:
    """Return the user of the request's bearer access token.

    Raises
    ------
    HttpError
        401 with an API error body when the token is missing, invalid, expired or revoked.
    """
    bearer = request.bearer_token()
    if bearer is None:
        message = "Missing bearer token: send the header 'Authorization: Bearer <access token>'."
        raise HttpError(api_error(401, message, request.request_id))
    try:
        claims = backend.tokens.verify_access_token(bearer)
    except InvalidAccessTokenError as exc:
        raise HttpError(api_error(401, str(exc), request.request_id)) from exc
    user = backend.directory.user_by_id(str(claims.get("sub")))
    if user is None:
        raise HttpError(api_error(401, "The token's user does not exist.", request.request_id))
    return user
