"""Tests of the emulator's OAuth server and of follow_login_link.

They cover authorize validation, the approval page, the PKCE token exchange,
refresh token rotation with reuse detection, userinfo, and what the emulator
records as issued. Everything runs over real HTTP on 127.0.0.1, and a one-shot
loopback server takes the place of the login's callback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import TCPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from emulator_http import REQUEST_TIMEOUT_S, Reply, call

from astro_jupyter.emulator import (
    AUDIENCE,
    CLIENT_ID,
    Emulator,
    FollowError,
    NotLoopbackError,
    follow_login_link,
)

# Bound on every HTTP call and thread join in these tests, the same as call()'s.
TIMEOUT_S = REQUEST_TIMEOUT_S


def post_form(url: str, fields: dict[str, str]) -> Reply:
    body = urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return call("POST", url, headers=headers, body=body)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(emu: Emulator, redirect_uri: str, challenge: str, **overrides: str) -> str:
    params = {
        "audience": AUDIENCE,
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "login_hint": "jane@example.com",
        "scope": "openid profile email offline_access",
        "response_type": "code",
        "response_mode": "query",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "state-123",
    }
    params.update(overrides)
    params = {name: value for name, value in params.items() if value is not None}
    return emu.oauth_base_url + "authorize?" + urlencode(params)


def location_query(reply: Reply) -> dict[str, str]:
    return {
        name: values[0]
        for name, values in parse_qs(urlsplit(reply.headers["location"]).query).items()
    }


def exchange(
    emu: Emulator, code: str, verifier: str, redirect_uri: str, /, **overrides: str
) -> Reply:
    fields = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": redirect_uri,
    }
    fields.update(overrides)
    return post_form(emu.oauth_base_url + "oauth/token", fields)


def refresh(emu: Emulator, refresh_token: str) -> Reply:
    fields = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": refresh_token}
    return post_form(emu.oauth_base_url + "oauth/token", fields)


REDIRECT_URI = "http://127.0.0.1:45999/callback"


def approved_code(emu: Emulator, email: str = "jane@example.com") -> tuple[str, str]:
    """Return a fresh code and its verifier, approved at once as ``email``."""
    emu.set_approve_as(email)
    verifier, challenge = pkce_pair()
    reply = call("GET", authorize_url(emu, REDIRECT_URI, challenge))
    assert reply.status == 302
    return location_query(reply)["code"], verifier


def login(emu: Emulator, email: str = "jane@example.com") -> dict:
    code, verifier = approved_code(emu, email)
    reply = exchange(emu, code, verifier, REDIRECT_URI)
    assert reply.status == 200
    return reply.json()


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class _LoopbackHttpServer(HTTPServer):
    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup of the bound address.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class CallbackCatcher:
    """A one-shot loopback HTTP server in place of the login's callback.

    It responds to the first request with a small page, or with a redirect to
    ``redirect_to`` when given, and records the request's path and query.
    """

    def __init__(self, redirect_to: str | None = None) -> None:
        self.request_path: str | None = None
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
                catcher.request_path = self.path
                body = b"Signed in. You can close this tab."
                self.send_response(302 if redirect_to else 200)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = _LoopbackHttpServer(("127.0.0.1", 0), Handler)
        self._server.timeout = TIMEOUT_S
        self._thread = threading.Thread(target=self._server.handle_request, daemon=True)
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/callback"

    @property
    def query(self) -> dict[str, str]:
        assert self.request_path is not None, "the callback was not requested"
        return {
            name: values[0] for name, values in parse_qs(urlsplit(self.request_path).query).items()
        }

    def close(self) -> None:
        self._thread.join(TIMEOUT_S + 1)
        self._server.server_close()


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def callback():
    catcher = CallbackCatcher()
    yield catcher
    catcher.close()


# Authorize


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://example.com:8080/callback",
        "https://localhost:12345/callback",
        "http://localhost/callback",
        "http://localhost:12345/other",
        "http://127.0.0.1:12345/callback?next=x",
        "http://127.0.0.1:12345/callback#x",
        "http://user@127.0.0.1:12345/callback",
        "http://127.0.0.2:12345/callback",
        "http://localhost.example.com:12345/callback",
        "",
    ],
)
def test_authorize_bad_redirect_uri_not_redirected(emu, redirect_uri):
    _, challenge = pkce_pair()

    reply = call("GET", authorize_url(emu, redirect_uri, challenge))

    assert reply.status == 400
    assert "location" not in reply.headers
    assert reply.headers["content-type"].startswith("text/html")
    assert b"redirect_uri" in reply.body


def test_authorize_bad_client_id_not_redirected(emu):
    _, challenge = pkce_pair()

    reply = call("GET", authorize_url(emu, REDIRECT_URI, challenge, client_id="someone-else"))

    assert reply.status == 400
    assert "location" not in reply.headers
    assert b"client_id" in reply.body


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"audience": "someone-else"}, "invalid_request"),
    ],
)
def test_authorize_other_errors_redirect_with_error(emu, overrides, error):
    _, challenge = pkce_pair()

    reply = call("GET", authorize_url(emu, REDIRECT_URI, challenge, **overrides))

    assert reply.status == 302
    assert reply.headers["location"].startswith(REDIRECT_URI + "?")
    query = location_query(reply)
    assert query["error"] == error
    assert query["error_description"]
    assert query["state"] == "state-123"
    assert "code" not in query


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://localhost:12345/callback",
        "http://127.0.0.1:1/callback",
        "http://[::1]:65535/callback",
    ],
)
def test_authorize_accepts_loopback_redirects(emu, redirect_uri):
    emu.set_approve_as("jane@example.com")
    _, challenge = pkce_pair()

    reply = call("GET", authorize_url(emu, redirect_uri, challenge))

    assert reply.status == 302
    assert reply.headers["location"].startswith(redirect_uri + "?")


def test_approve_as_redirects_with_code_and_state(emu):
    emu.set_approve_as("boss@example.com")
    verifier, challenge = pkce_pair()
    url = authorize_url(
        emu,
        REDIRECT_URI,
        challenge,
        login_hint="other@example.com",
        organization="org-x",
        prompt="login",
        state="s p+a/c=e",
    )

    reply = call("GET", url)
    query = location_query(reply)
    tokens = exchange(emu, query["code"], verifier, REDIRECT_URI).json()
    info = call("GET", emu.oauth_base_url + "userinfo", token=tokens["access_token"]).json()

    assert reply.status == 302
    assert query["state"] == "s p+a/c=e"
    assert query["code"] in emu.issued_secrets()
    assert info["email"] == "boss@example.com"


def test_authorize_without_state_sends_none(emu):
    emu.set_approve_as("jane@example.com")
    _, challenge = pkce_pair()

    reply = call("GET", authorize_url(emu, REDIRECT_URI, challenge, state=None))

    assert "state" not in location_query(reply)


def test_approval_page_has_stable_controls(emu):
    _, challenge = pkce_pair()

    reply = call("GET", authorize_url(emu, REDIRECT_URI, challenge, login_hint='a"<b>@example.com'))
    page = reply.body.decode()

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert 'id="approval-form"' in page
    assert f'action="{emu.oauth_base_url}authorize/decision"' in page
    assert 'id="email"' in page
    assert 'id="approve"' in page
    assert 'id="deny"' in page
    assert 'name="request_id"' in page
    assert CLIENT_ID in page
    assert "a&quot;&lt;b&gt;@example.com" in page
    assert "<b>" not in page


# follow_login_link and the approval page


def test_follow_link_approve_delivers_code(emu, callback):
    verifier, challenge = pkce_pair()
    url = authorize_url(emu, callback.redirect_uri, challenge, login_hint="ann@example.com")

    result = follow_login_link(url, timeout_s=TIMEOUT_S)
    callback.close()
    tokens = exchange(emu, callback.query["code"], verifier, callback.redirect_uri).json()
    info = call("GET", emu.oauth_base_url + "userinfo", token=tokens["access_token"]).json()

    assert result.status == 200
    assert result.approval_page_shown
    assert result.text == "Signed in. You can close this tab."
    assert result.url.startswith(callback.redirect_uri + "?")
    assert callback.query["state"] == "state-123"
    assert callback.query["code"] in emu.issued_secrets()
    assert info["email"] == "ann@example.com"
    assert emu.count("authorize") == 1
    assert emu.count("authorize-decision") == 1


def test_follow_link_approve_as_other_email(emu, callback):
    verifier, challenge = pkce_pair()
    url = authorize_url(emu, callback.redirect_uri, challenge, login_hint="ann@example.com")

    follow_login_link(url, email="bob@example.com", timeout_s=TIMEOUT_S)
    callback.close()
    tokens = exchange(emu, callback.query["code"], verifier, callback.redirect_uri).json()
    info = call("GET", emu.oauth_base_url + "userinfo", token=tokens["access_token"]).json()

    assert info["email"] == "bob@example.com"


def test_follow_link_deny_sends_access_denied(emu, callback):
    _, challenge = pkce_pair()
    url = authorize_url(emu, callback.redirect_uri, challenge)

    result = follow_login_link(url, approve=False, timeout_s=TIMEOUT_S)
    callback.close()

    assert result.status == 200
    assert callback.query["error"] == "access_denied"
    assert callback.query["error_description"]
    assert callback.query["state"] == "state-123"
    assert "code" not in callback.query


def test_follow_link_invalid_email_stays_on_page(emu):
    _, challenge = pkce_pair()
    url = authorize_url(emu, REDIRECT_URI, challenge)

    result = follow_login_link(url, email="not-an-email", timeout_s=TIMEOUT_S)

    assert result.status == 400
    assert 'id="approval-form"' in result.text
    assert "Invalid email" in result.text


def test_decision_works_once(emu):
    _, challenge = pkce_pair()
    page = call("GET", authorize_url(emu, REDIRECT_URI, challenge)).body.decode()
    request_id = page.split('name="request_id" value="', 1)[1].split('"', 1)[0]
    decision_url = emu.oauth_base_url + "authorize/decision"

    first = post_form(decision_url, {"request_id": request_id, "decision": "approve"})
    second = post_form(decision_url, {"request_id": request_id, "decision": "approve"})

    assert first.status == 302
    assert "code" in location_query(first)
    assert second.status == 400
    assert "location" not in second.headers


def test_follow_link_deny_with_approve_as_raises(emu):
    emu.set_approve_as("jane@example.com")
    _, challenge = pkce_pair()

    with pytest.raises(FollowError, match="approve_as"):
        follow_login_link(authorize_url(emu, REDIRECT_URI, challenge), approve=False, timeout_s=1)

    assert [record.endpoint for record in emu.requests] == ["authorize"]


def test_follow_link_rejects_non_loopback_link():
    with pytest.raises(NotLoopbackError, match="192.0.2.1"):
        follow_login_link("http://192.0.2.1/authorize?x=1", timeout_s=1)


def test_follow_link_rejects_https_link():
    with pytest.raises(NotLoopbackError, match="http://"):
        follow_login_link("https://127.0.0.1:9/authorize", timeout_s=1)


def test_follow_link_rejects_redirect_off_loopback():
    redirector = CallbackCatcher(redirect_to="http://login.example.com/landing?code=x")
    try:
        with pytest.raises(NotLoopbackError, match="login.example.com"):
            follow_login_link(redirector.redirect_uri + "?code=abc", timeout_s=TIMEOUT_S)
    finally:
        redirector.close()

    assert redirector.request_path == "/callback?code=abc"


def test_follow_result_repr_hides_query(emu, callback):
    _, challenge = pkce_pair()
    url = authorize_url(emu, callback.redirect_uri, challenge)

    result = follow_login_link(url, timeout_s=TIMEOUT_S)
    callback.close()
    code = callback.query["code"]

    assert code in result.url
    assert code not in repr(result)
    assert "<query hidden>" in repr(result)


# Token exchange


def test_token_exchange_returns_tokens(emu):
    tokens = login(emu, "claims@example.com")

    assert tokens["token_type"] == "Bearer"  # noqa: S105 - a token type, not a secret
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == "openid profile email offline_access"
    assert tokens["refresh_token"].startswith("v1.")
    access = jwt_claims(tokens["access_token"])
    assert access["iss"] == emu.oauth_base_url
    assert access["aud"] == AUDIENCE
    assert access["sub"].startswith("user-")
    assert access["exp"] - access["iat"] == 3600
    assert access["scope"] == "openid profile email offline_access"
    identity = jwt_claims(tokens["id_token"])
    assert identity["email"] == "claims@example.com"
    assert identity["aud"] == CLIENT_ID
    assert identity["sub"] == access["sub"]


def test_token_response_not_cached(emu):
    code, verifier = approved_code(emu)

    reply = exchange(emu, code, verifier, REDIRECT_URI)

    assert reply.headers["cache-control"] == "no-store"


def test_pkce_mismatch_rejected(emu):
    code, _ = approved_code(emu)
    other_verifier, _ = pkce_pair()

    reply = exchange(emu, code, other_verifier, REDIRECT_URI)

    assert reply.status == 400
    assert reply.json()["error"] == "invalid_grant"
    assert "code_verifier" in reply.json()["error_description"]


@pytest.mark.parametrize("verifier", ["", "short", "x" * 129, "é" * 50])
def test_malformed_verifier_rejected(emu, verifier):
    code, _ = approved_code(emu)

    reply = exchange(emu, code, verifier, REDIRECT_URI)

    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"


def test_code_reuse_rejected_and_revokes(emu):
    code, verifier = approved_code(emu)
    first = exchange(emu, code, verifier, REDIRECT_URI).json()

    second = exchange(emu, code, verifier, REDIRECT_URI)
    api = call("GET", emu.base_url + "v1/users/self", token=first["access_token"])

    assert second.status == 400
    assert second.json()["error"] == "invalid_grant"
    assert emu.revoked(first["access_token"])
    assert emu.revoked(first["refresh_token"])
    assert api.status == 401


def test_redirect_uri_mismatch_rejected(emu):
    code, verifier = approved_code(emu)

    reply = exchange(emu, code, verifier, "http://127.0.0.1:45998/callback")

    assert reply.status == 400
    assert reply.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"client_id": ""}, "invalid_request"),
        ({"code": ""}, "invalid_request"),
        ({"code": "made-up"}, "invalid_grant"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_token_request_errors(emu, overrides, error):
    code, verifier = approved_code(emu)

    reply = exchange(emu, code, verifier, REDIRECT_URI, **overrides)

    assert reply.status == 400
    assert reply.json()["error"] == error


def test_token_request_must_be_form_encoded(emu):
    code, verifier = approved_code(emu)
    body = json.dumps({"grant_type": "authorization_code", "code": code}).encode()

    reply = call(
        "POST",
        emu.oauth_base_url + "oauth/token",
        headers={"Content-Type": "application/json"},
        body=body,
    )

    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"


def test_no_refresh_token_without_offline_access(emu):
    emu.set_approve_as("jane@example.com")
    verifier, challenge = pkce_pair()
    reply = call("GET", authorize_url(emu, REDIRECT_URI, challenge, scope="openid email"))

    tokens = exchange(emu, location_query(reply)["code"], verifier, REDIRECT_URI).json()

    assert "refresh_token" not in tokens
    assert "id_token" in tokens


# Refresh


def test_refresh_rotates_token(emu):
    tokens = login(emu)

    rotated = refresh(emu, tokens["refresh_token"])
    new = rotated.json()
    api = call("GET", emu.base_url + "v1/users/self", token=new["access_token"])

    assert rotated.status == 200
    assert new["refresh_token"] != tokens["refresh_token"]
    assert new["access_token"] != tokens["access_token"]
    assert new["token_type"] == "Bearer"  # noqa: S105 - a token type, not a secret
    assert api.status == 200
    assert not emu.revoked(tokens["refresh_token"])
    assert emu.count("refresh") == 1
    assert emu.count("token") == 1


def test_refresh_reuse_revokes_family(emu):
    tokens = login(emu)
    new = refresh(emu, tokens["refresh_token"]).json()

    reuse = refresh(emu, tokens["refresh_token"])
    after = refresh(emu, new["refresh_token"])
    api = call("GET", emu.base_url + "v1/users/self", token=new["access_token"])

    assert reuse.status == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert after.status == 400
    assert after.json()["error"] == "invalid_grant"
    assert api.status == 401
    assert emu.revoked(new["refresh_token"])
    assert emu.revoked(new["access_token"])
    assert emu.revoked(tokens["access_token"])


def test_refresh_family_isolated(emu):
    first = login(emu, "one@example.com")
    second = login(emu, "two@example.com")
    refresh(emu, first["refresh_token"])

    refresh(emu, first["refresh_token"])

    assert emu.revoked(first["access_token"])
    assert not emu.revoked(second["access_token"])
    assert refresh(emu, second["refresh_token"]).status == 200


def test_concurrent_refreshes_one_succeeds(emu):
    tokens = login(emu)
    start = threading.Barrier(16, timeout=TIMEOUT_S)
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def refresh_once() -> None:
        start.wait()
        reply = refresh(emu, tokens["refresh_token"])
        with lock:
            statuses.append(reply.status)
            if reply.status != 200:
                errors.append(reply.json()["error"])

    threads = [threading.Thread(target=refresh_once) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)

    assert not any(thread.is_alive() for thread in threads)
    assert statuses.count(200) == 1
    assert statuses.count(400) == 15
    assert set(errors) == {"invalid_grant"}
    assert emu.count("refresh") == 16


def test_refresh_unknown_token_rejected(emu):
    reply = refresh(emu, "v1.made-up")

    assert reply.status == 400
    assert reply.json()["error"] == "invalid_grant"


# Userinfo and issued secrets


def test_userinfo_returns_claims(emu):
    tokens = login(emu, "mary.major@example.com")

    reply = call("GET", emu.oauth_base_url + "userinfo", token=tokens["access_token"])

    info = reply.json()
    assert reply.status == 200
    assert info["email"] == "mary.major@example.com"
    assert info["name"] == "Mary Major"
    assert info["given_name"] == "Mary"
    assert info["family_name"] == "Major"
    assert info["sub"] == jwt_claims(tokens["access_token"])["sub"]


def test_userinfo_rejects_id_token(emu):
    tokens = login(emu)

    reply = call("GET", emu.oauth_base_url + "userinfo", token=tokens["id_token"])

    assert reply.status == 401


def test_userinfo_without_token_is_401(emu):
    reply = call("GET", emu.oauth_base_url + "userinfo")

    assert reply.status == 401
    assert reply.json()["statusCode"] == 401


def test_issued_secrets_cover_everything(emu):
    code, verifier = approved_code(emu)
    tokens = exchange(emu, code, verifier, REDIRECT_URI).json()
    rotated = refresh(emu, tokens["refresh_token"]).json()
    minted = emu.mint_access_token("mint@example.com")
    wrong_verifier, _ = pkce_pair()
    exchange(emu, "made-up-code", wrong_verifier, REDIRECT_URI)

    issued = emu.issued_secrets()

    expected = {
        code,
        verifier,
        wrong_verifier,
        minted,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["id_token"],
        rotated["access_token"],
        rotated["refresh_token"],
        rotated["id_token"],
    }
    assert expected <= issued
    assert len(issued) == len(expected)


def test_no_secret_in_debug_log(emu, caplog, callback):
    verifier, challenge = pkce_pair()
    with caplog.at_level(logging.DEBUG, logger="astro_jupyter.emulator"):
        follow_login_link(authorize_url(emu, callback.redirect_uri, challenge), timeout_s=TIMEOUT_S)
        callback.close()
        tokens = exchange(emu, callback.query["code"], verifier, callback.redirect_uri).json()
        refresh(emu, tokens["refresh_token"])
        call("GET", emu.oauth_base_url + "userinfo", token=tokens["access_token"])

    log_text = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /auth/authorize -> 200" in log_text
    leaked = [secret for secret in emu.issued_secrets() | {challenge} if secret in log_text]
    assert leaked == []
