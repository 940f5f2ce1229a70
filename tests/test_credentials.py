"""Tests of get_token() and whoami() on logins saved by the flow or written by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import log_in_by_link

from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.credentials import get_token, whoami
from astro_jupyter.errors import NotLoggedInError

EMAIL = "ada@example.com"

pytestmark = pytest.mark.usefixtures("emulator_settings")


@pytest.fixture
def store(astro_config_path):
    return ConfigStore(astro_config_path)


def _expire_soon(store: ConfigStore) -> None:
    store.update_context("localhost", expires_at=datetime.now(timezone.utc) + timedelta(minutes=1))


def test_fresh_token_returned_without_request(emulator, store):
    log_in_by_link(emulator, store, email=EMAIL)
    before = len(emulator.requests)
    token = get_token()
    assert token == store.read_context("localhost").token
    assert len(emulator.requests) == before


def test_near_expiry_refreshes_and_rotates(emulator, store):
    log_in_by_link(emulator, store, email=EMAIL)
    old = store.read_context("localhost")
    _expire_soon(store)

    token = get_token("localhost")

    new = store.read_context("localhost")
    assert emulator.count("refresh") == 1
    assert token == new.token
    assert token != old.token
    assert new.refresh_token != old.refresh_token
    assert new.expires_at > datetime.now(timezone.utc) + timedelta(minutes=50)


def test_refresh_invalid_grant_means_logged_out(emulator, store):
    log_in_by_link(emulator, store, email=EMAIL)
    _expire_soon(store)
    emulator.fail("refresh", status=400, body={"error": "invalid_grant", "error_description": "x"})
    with pytest.raises(NotLoggedInError) as caught:
        get_token()
    assert "could not be renewed" in str(caught.value)
    assert "%astro_login localhost" in str(caught.value)


def test_expired_without_refresh_token(emulator, store):
    store.save_login(
        ContextRecord(
            domain="localhost",
            token=emulator.mint_access_token(EMAIL),
            expires_at=datetime.now(timezone.utc) - timedelta(minutes=1),
            user_email=EMAIL,
        )
    )
    with pytest.raises(NotLoggedInError, match="has no refresh token"):
        get_token()


def test_no_config_means_not_logged_in(store):
    with pytest.raises(NotLoggedInError) as caught:
        get_token()
    assert "%astro_login" in str(caught.value)
    assert "does not exist yet" in str(caught.value)
    with pytest.raises(NotLoggedInError):
        whoami()


def test_vault_placeholder_is_signed_out(astro_config_path):
    astro_config_path.parent.mkdir(parents=True)
    astro_config_path.write_text(
        "context: localhost\n"
        "contexts:\n"
        "    localhost:\n"
        "        domain: localhost\n"
        '        token: "Bearer "\n'
        '        refreshtoken: ""\n'
        "        user_email: ada@example.com\n"
    )
    with pytest.raises(NotLoggedInError) as caught:
        get_token()
    assert "vault" in str(caught.value)


def test_whoami_describes_login(emulator, store):
    log_in_by_link(emulator, store, email=EMAIL)
    identity = whoami()
    saved = store.read_context("localhost")
    assert identity.email == EMAIL
    assert identity.domain == "localhost"
    assert identity.organization == saved.organization
    assert identity.workspace == saved.workspace
    assert identity.expires_at == saved.expires_at
    assert identity.refreshable
    assert saved.token not in repr(identity)


def test_astro_domain_selects_context(emulator, store, monkeypatch):
    log_in_by_link(emulator, store, email=EMAIL)
    store.save_login(
        ContextRecord(domain="astronomer.io", token="t", user_email="x@y.io",
                      expires_at=datetime.now(timezone.utc) + timedelta(hours=1)),
        make_current=True,
    )
    assert whoami().domain == "astronomer.io"
    monkeypatch.setenv("ASTRO_DOMAIN", "localhost")
    assert whoami().domain == "localhost"
