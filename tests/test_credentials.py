"""Tests of get_token() and whoami() on logins saved by the flow or written by hand."""

from __future__ import annotations

import fcntl
import threading
from datetime import datetime, timedelta, timezone

import pytest
from conftest import log_in_by_link

from astro_jupyter import credentials
from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.credentials import get_token, whoami
from astro_jupyter.errors import ConfigError, NotLoggedInError
from astro_jupyter.settings import AstroLogin

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


def _hold_flock(path, release: threading.Event, locked: threading.Event) -> threading.Thread:
    """Hold flock(2) on ``path`` from another open file, as another process would."""

    def hold() -> None:
        with open(path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            locked.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(5)
    return thread


def test_logout_during_refresh_wins(emulator, store):
    log_in_by_link(emulator, store, email=EMAIL)
    _expire_soon(store)
    emulator.fail("refresh", status=None, delay_s=1.0)
    other_process = ConfigStore(store.path)
    logout = threading.Timer(0.4, other_process.logout, args=("localhost",))
    logout.start()

    with pytest.raises(NotLoggedInError):
        get_token("localhost", store=store)
    logout.join(5)

    assert emulator.count("refresh") == 1
    record = ConfigStore(store.path).read_context("localhost")
    assert record.token is None
    assert record.refresh_token is None


def test_login_during_refresh_wins(emulator, store):
    log_in_by_link(emulator, store, email=EMAIL)
    _expire_soon(store)
    emulator.fail("refresh", status=None, delay_s=1.0)
    newer = emulator.mint_access_token(EMAIL)
    other_process = ConfigStore(store.path)
    login = threading.Timer(
        0.4,
        other_process.update_context,
        args=("localhost",),
        kwargs={"token": newer, "refresh_token": "v1.newer-login",
                "expires_at": datetime.now(timezone.utc) + timedelta(hours=1)},
    )
    login.start()

    token = get_token("localhost", store=store)
    login.join(5)

    assert token == newer
    assert ConfigStore(store.path).read_context("localhost").refresh_token == "v1.newer-login"


def test_save_failure_after_refresh_is_clear(emulator, store, monkeypatch):
    log_in_by_link(emulator, store, email=EMAIL)
    _expire_soon(store)
    before = store.path.read_bytes()
    monkeypatch.setattr(credentials, "_SAVE_AFTER_REFRESH_WAIT_S", 0.3)
    store.lock_timeout_s = 0.3
    # The config lock is taken while the refresh request is under way, so
    # only the save of the new tokens meets it.
    emulator.fail("refresh", status=None, delay_s=1.0)
    release, locked = threading.Event(), threading.Event()
    holders: list[threading.Thread] = []
    taker = threading.Timer(
        0.4, lambda: holders.append(_hold_flock(store.lock_path, release, locked))
    )
    taker.start()
    try:
        with pytest.raises(ConfigError) as caught:
            get_token("localhost", store=store)
    finally:
        release.set()
        taker.join(5)
        for holder in holders:
            holder.join(5)
    assert locked.is_set()

    message = str(caught.value)
    assert "was renewed, but saving it failed" in message
    assert "%astro_login localhost" in message
    for secret in emulator.issued_secrets():
        assert secret not in message
    assert store.path.read_bytes() == before


def test_busy_renewal_lock_returns_valid_token(emulator, store, monkeypatch):
    log_in_by_link(emulator, store, email=EMAIL)
    _expire_soon(store)
    stored = store.read_context("localhost").token
    monkeypatch.setattr(credentials, "_renewal_wait_s", lambda store, settings: 0.3)
    release, locked = threading.Event(), threading.Event()
    holder = _hold_flock(store.renewal_lock_path, release, locked)
    try:
        assert get_token("localhost", store=store) == stored
    finally:
        release.set()
        holder.join(5)
    assert emulator.count("refresh") == 0


def test_token_login_usable_until_expiry(emulator, store):
    token = emulator.mint_access_token(EMAIL)
    store.save_login(
        ContextRecord(
            domain="localhost",
            token=token,
            expires_at=datetime.now(timezone.utc) + timedelta(minutes=4),
            user_email=EMAIL,
        )
    )
    assert get_token(store=store) == token
    assert emulator.requests == []


def test_refresh_reuses_cached_auth_config(emulator, store):
    log_in_by_link(emulator, store, email=EMAIL)
    auth_config_requests = emulator.count("auth-config")
    _expire_soon(store)

    get_token("localhost")

    assert emulator.count("refresh") == 1
    assert auth_config_requests == 1
    assert emulator.count("auth-config") == 1


def test_refresh_fetches_auth_config_once(emulator, store):
    # Another process (or a new kernel) has an empty cache: its first refresh
    # fetches the auth config, and its second reuses it.
    log_in_by_link(emulator, store, email=EMAIL)
    AstroLogin.instance().auth_configs.forget(emulator.base_url)
    _expire_soon(store)
    get_token("localhost")
    _expire_soon(store)
    get_token("localhost")

    assert emulator.count("refresh") == 2
    assert emulator.count("auth-config") == 2
