"""Tests of LoginFlow against the emulator, over real HTTP on loopback."""

from __future__ import annotations

import logging
import socket
import threading
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import LinkFollower, port_is_free

from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.emulator import Emulator
from astro_jupyter.errors import (
    ApiError,
    CallbackError,
    CallbackPortBusyError,
    ConfigError,
    InvalidInputError,
    LoginCancelledError,
    LoginTimeoutError,
    OAuthError,
)
from astro_jupyter.login_flow import LoginFlow, LoginMode, LoginOptions, LoginStep

EMAIL = "ada@example.com"


@pytest.fixture
def store(astro_config_path):
    return ConfigStore(astro_config_path)


@pytest.fixture
def options(emulator):
    return LoginOptions(
        domain="localhost", api_base_url=emulator.base_url, callback_port=0, callback_timeout_s=10
    )


def test_link_login_saves_context(emulator, store, options):
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    with LinkFollower(flow):
        result = flow.start().wait(20)

    assert result.email == EMAIL
    assert not result.email_differs
    assert result.refreshable
    saved = store.read_context("localhost")
    assert saved is not None
    assert saved.token
    assert saved.refresh_token
    assert saved.user_email == EMAIL
    assert saved.organization == result.organization.id
    assert saved.expires_at is not None
    assert saved.expires_at > datetime.now(timezone.utc) + timedelta(minutes=50)
    assert store.current_domain() == "localhost"


def test_flow_steps_in_order(emulator, store, options):
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    with LinkFollower(flow):
        flow.start().wait(20)
    steps = [event.step for event in flow.events]
    assert steps == [
        LoginStep.AUTH_CONFIG,
        LoginStep.ORGANIZATION_LOOKUP,
        LoginStep.WAITING_FOR_BROWSER,
        LoginStep.TOKEN_EXCHANGE,
        LoginStep.USER_INFO,
        LoginStep.SESSION_CHECK,
        LoginStep.SAVING,
        LoginStep.DONE,
    ]
    assert flow.done


def test_authorize_url_parameters(emulator, store, options):
    organization_id = emulator.add_organization("Acme", workspaces=("Only",))
    emulator.add_user("grace+astro@example.com", organizations=(organization_id,))
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email="grace+astro@example.com")
    with LinkFollower(flow):
        flow.start().wait(20)

    url = flow.authorize_url
    assert url is not None
    assert url.startswith(emulator.oauth_base_url + "authorize?")
    assert "grace%2Bastro%40example.com" in url
    params = parse_qs(urlsplit(url).query)
    assert params["login_hint"] == ["grace+astro@example.com"]
    assert params["organization"] == [organization_id]
    assert params["code_challenge_method"] == ["S256"]
    assert params["scope"] == ["openid profile email offline_access"]
    assert params["response_type"] == ["code"]
    assert params["response_mode"] == ["query"]
    assert len(params["state"][0]) >= 40
    assert params["redirect_uri"][0].startswith("http://localhost:")


def test_other_account_is_reported(emulator, store, options):
    emulator.set_approve_as("grace@example.com")
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    with LinkFollower(flow):
        result = flow.start().wait(20)
    assert result.email == "grace@example.com"
    assert result.requested_email == EMAIL
    assert result.email_differs
    assert store.read_context("localhost").user_email == "grace@example.com"


def test_deny_fails_and_saves_nothing(emulator, store, options, astro_config_path):
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    with LinkFollower(flow, approve=False), pytest.raises(CallbackError) as caught:
        flow.start().wait(20)
    assert caught.value.oauth_error == "access_denied"
    assert flow.step is LoginStep.FAILED
    assert not astro_config_path.exists()
    assert emulator.count("token") == 0


def test_bad_email_sends_nothing(emulator, store, options):
    for email in ("", "not-an-email"):
        with pytest.raises(InvalidInputError):
            LoginFlow(options, store, mode=LoginMode.LINK, email=email)
    assert emulator.requests == []


def test_token_login_uses_jwt_expiry(emulator, store, options):
    token = emulator.mint_access_token(EMAIL, ttl_s=1800)
    result = LoginFlow(options, store, mode=LoginMode.TOKEN, token=token).run()
    assert result.email == EMAIL
    assert not result.refreshable
    remaining = result.expires_at - datetime.now(timezone.utc)
    assert timedelta(minutes=28) < remaining <= timedelta(minutes=30)
    saved = store.read_context("localhost")
    assert saved.token == token
    assert saved.refresh_token is None


@pytest.mark.parametrize("token", ["", "abc", "a.b.c"])
def test_token_login_rejects_non_jwt(emulator, store, options, token):
    with pytest.raises(InvalidInputError):
        LoginFlow(options, store, mode=LoginMode.TOKEN, token=token)
    assert emulator.requests == []


def test_token_login_rejected_token(emulator, store, options, astro_config_path):
    other = Emulator(port=0).start()
    try:
        foreign = other.mint_access_token(EMAIL)
    finally:
        other.stop()
    with pytest.raises(ApiError) as caught:
        LoginFlow(options, store, mode=LoginMode.TOKEN, token=foreign).run()
    assert caught.value.step == "User info"
    assert caught.value.status == 401
    assert not astro_config_path.exists()


def test_legacy_auth_config_fallback(emulator, store, options):
    emulator.fail("auth-config", status=404, body={"message": "Not Found"})
    token = emulator.mint_access_token(EMAIL)
    LoginFlow(options, store, mode=LoginMode.TOKEN, token=token).run()
    assert emulator.count("legacy-auth-config") == 1


@pytest.mark.parametrize(
    ("endpoint", "fault", "expected"),
    [
        ("auth-config", {"status": 200, "body": b"<html>not json"}, "Auth config failed"),
        ("auth-config", {"status": 200, "body": {"clientId": "x", "domainUrl": "http://127.0.0.1:9/"}},
         "no 'audience' field"),
        ("userinfo", {"status": 200, "body": {"sub": "u1"}}, "no email address"),
        ("self", {"status": 500, "body": {"message": "database on fire"}}, "database on fire"),
        ("self", {"status": 401, "body": {"message": "token expired"}}, "HTTP 401: token expired"),
        ("organizations", {"status": 403, "body": {"message": "forbidden"}}, "HTTP 403"),
        ("workspaces", {"status": 500}, "Workspaces failed"),
    ],
    ids=["auth-not-json", "auth-missing-field", "userinfo-no-email", "self-500",
         "self-401", "organizations-403", "workspaces-500"],
)
def test_server_faults_fail_cleanly(emulator, store, options, astro_config_path, endpoint, fault,
                                    expected):
    token = emulator.mint_access_token(EMAIL)
    emulator.fail(endpoint, **fault)
    with pytest.raises(ApiError) as caught:
        LoginFlow(options, store, mode=LoginMode.TOKEN, token=token).run()
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert token not in message
    assert not astro_config_path.exists()


def test_invalid_grant_at_exchange(emulator, store, options, astro_config_path):
    emulator.fail("token", status=400, body={"error": "invalid_grant", "error_description": "bad"})
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    with LinkFollower(flow), pytest.raises(OAuthError) as caught:
        flow.start().wait(20)
    assert caught.value.oauth_error == "invalid_grant"
    assert "Token exchange failed" in str(caught.value)
    assert not astro_config_path.exists()


def test_unreachable_api_names_step(store):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    options = LoginOptions(domain="localhost", api_base_url=f"http://127.0.0.1:{port}/")
    with pytest.raises(ApiError) as caught:
        LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL).run()
    assert str(caught.value) == (
        f"Auth config failed: could not reach the Astro API at http://127.0.0.1:{port}/: "
        "connection refused. Tried 3 times."
    )


def test_workspace_pagination_and_last_used(store, astro_config_path):
    with Emulator(port=0, page_size_max=2) as emulator:
        names = tuple(f"Workspace {n}" for n in range(5))
        organization_id = emulator.add_organization("Big", workspaces=names)
        emulator.add_user(EMAIL, organizations=(organization_id,))
        options = LoginOptions(domain="localhost", api_base_url=emulator.base_url, callback_port=0)

        first = LoginFlow(options, store, mode=LoginMode.TOKEN,
                          token=emulator.mint_access_token(EMAIL)).run()
        assert len(first.workspaces) == 5
        assert first.workspace is None
        assert emulator.count("workspaces") >= 3

        chosen = first.workspaces[3]
        store.update_context("localhost", workspace=chosen.id, last_used_workspace=chosen.id)
        second = LoginFlow(options, store, mode=LoginMode.TOKEN,
                           token=emulator.mint_access_token(EMAIL)).run()
        assert second.workspace == chosen
        assert store.read_context("localhost").workspace == chosen.id


def test_single_workspace_selected(emulator, store, options):
    organization_id = emulator.add_organization("Solo", workspaces=("Only",))
    emulator.add_user(EMAIL, organizations=(organization_id,))
    result = LoginFlow(options, store, mode=LoginMode.TOKEN,
                       token=emulator.mint_access_token(EMAIL)).run()
    assert result.workspace is not None
    assert result.workspace.name == "Only"
    assert store.read_context("localhost").last_used_workspace == result.workspace.id


def test_cancel_frees_port(emulator, store, options):
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    waiting = threading.Event()
    flow.subscribe(lambda event: event.authorize_url and waiting.set())
    flow.start()
    assert waiting.wait(10)
    port = int(urlsplit(parse_qs(urlsplit(flow.authorize_url).query)["redirect_uri"][0]).port)
    assert not port_is_free(port)
    flow.cancel()
    with pytest.raises(LoginCancelledError):
        flow.wait(5)
    assert flow.step is LoginStep.CANCELLED
    assert port_is_free(port)


def test_callback_timeout_frees_port(emulator, store):
    options = LoginOptions(domain="localhost", api_base_url=emulator.base_url,
                           callback_port=0, callback_timeout_s=0.5)
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    with pytest.raises(LoginTimeoutError):
        flow.start().wait(10)
    port = int(urlsplit(parse_qs(urlsplit(flow.authorize_url).query)["redirect_uri"][0]).port)
    assert port_is_free(port)


def test_busy_port_is_clear_error(emulator, store):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        options = LoginOptions(domain="localhost", api_base_url=emulator.base_url,
                               callback_port=port)
        with pytest.raises(CallbackPortBusyError) as caught:
            LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL).run()
    assert f"Port {port}" in str(caught.value)


def test_broken_config_fails_before_browser(emulator, store, options, astro_config_path):
    astro_config_path.parent.mkdir(parents=True)
    astro_config_path.write_text("contexts: [unclosed\n")
    with pytest.raises(ConfigError):
        LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL).run()
    assert astro_config_path.read_text() == "contexts: [unclosed\n"
    assert emulator.requests == []


def test_secrets_stay_out_of_events_logs_reprs(emulator, store, options, caplog):
    caplog.set_level(logging.DEBUG)
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=EMAIL)
    with LinkFollower(flow) as browser:
        result = flow.start().wait(20)

    texts = [repr(flow), repr(result), repr(store.read_context("localhost")), caplog.text]
    texts += [repr(event) for event in flow.events]
    texts += [repr(item) for item in browser.results]
    secrets = emulator.issued_secrets()
    assert secrets
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_previous_context_keeps_other_keys(emulator, store, options, astro_config_path):
    store.save_login(ContextRecord(domain="astronomer.io", token="other", user_email="x@y.io"))
    LoginFlow(options, store, mode=LoginMode.TOKEN,
              token=emulator.mint_access_token(EMAIL)).run()
    assert store.read_context("astronomer.io").token == "other"
    assert store.current_domain() == "localhost"
