"""The auth config cache: later logins to the same API skip the auth-config request.

Every login here is a real one against the emulator on loopback, with the
test playing the browser. The requests are counted in the emulator's log.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ADA_EMAIL, LOGIN_TIMEOUT_S, LinkFollower, log_in_by_link

from astro_jupyter.auth_config_cache import AuthConfigCache
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.emulator import Emulator
from astro_jupyter.errors import ApiError
from astro_jupyter.login_flow import LoginFlow, LoginMode, LoginOptions
from astro_jupyter.settings import AstroLogin

pytestmark = pytest.mark.usefixtures("ada_account")

# Auth config fetches count both paths, the current one and the legacy fallback.
AUTH_CONFIG_ENDPOINTS = ("auth-config", "legacy-auth-config")


def _auth_config_requests(emulator: Any) -> int:
    return sum(emulator.count(endpoint) for endpoint in AUTH_CONFIG_ENDPOINTS)


def _log_in(emulator: Any, store: ConfigStore, cache: AuthConfigCache) -> Any:
    options = LoginOptions(
        domain="localhost", api_base_url=emulator.base_url, callback_port=0, callback_timeout_s=10
    )
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=ADA_EMAIL, auth_configs=cache)
    with LinkFollower(flow):
        return flow.start().wait(LOGIN_TIMEOUT_S)


class _Clock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_second_login_skips_auth_config(emulator, astro_config_path):
    store = ConfigStore()

    first = log_in_by_link(emulator, store)
    after_first = _auth_config_requests(emulator)
    second = log_in_by_link(emulator, store)

    assert first.email == ADA_EMAIL
    assert second.email == ADA_EMAIL
    assert after_first == 1
    assert _auth_config_requests(emulator) == 1
    assert emulator.count("token") == 2


def test_cache_lives_on_settings(emulator, astro_config_path):
    log_in_by_link(emulator, ConfigStore())

    cached = AstroLogin.instance().auth_configs
    fetch_calls = []
    config = cached.get(emulator.base_url, fetch_calls.append)

    assert fetch_calls == []
    assert config.client_id == emulator.client_id
    assert config.domain_url == emulator.oauth_base_url


def test_other_api_base_fetches_own(emulator, astro_config_path):
    store = ConfigStore()
    cache = AuthConfigCache()
    with Emulator(host="127.0.0.1", port=0) as other:
        other.add_user(ADA_EMAIL, organizations=(other.add_organization("Other Labs"),))

        _log_in(emulator, store, cache)
        _log_in(other, store, cache)
        _log_in(emulator, store, cache)
        _log_in(other, store, cache)

        other_fetches = _auth_config_requests(other)
        other_oauth_base_url = other.oauth_base_url
        other_base_url = other.base_url

    assert _auth_config_requests(emulator) == 1
    assert other_fetches == 1
    assert cache.get(other_base_url, pytest.fail).domain_url == other_oauth_base_url
    assert cache.get(emulator.base_url, pytest.fail).domain_url == emulator.oauth_base_url


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, None), (200, {"clientId": "astro-cli"})],
    ids=["server-error", "missing-fields"],
)
def test_failed_fetch_not_cached(emulator, astro_config_path, status, body):
    store = ConfigStore()
    cache = AuthConfigCache()
    emulator.fail("auth-config", status=status, body=body)

    with pytest.raises(ApiError):
        _log_in(emulator, store, cache)
    failed_fetches = _auth_config_requests(emulator)
    emulator.clear_faults()
    result = _log_in(emulator, store, cache)
    after_success = _auth_config_requests(emulator)
    _log_in(emulator, store, cache)

    assert failed_fetches >= 1
    assert result.email == ADA_EMAIL
    assert after_success == failed_fetches + 1
    assert _auth_config_requests(emulator) == after_success


def test_expired_entry_fetched_again(emulator, astro_config_path):
    store = ConfigStore()
    clock = _Clock()
    cache = AuthConfigCache(ttl_s=60, clock=clock)

    _log_in(emulator, store, cache)
    clock.now += 59
    _log_in(emulator, store, cache)
    within_ttl = _auth_config_requests(emulator)
    clock.now += 1
    _log_in(emulator, store, cache)

    assert within_ttl == 1
    assert _auth_config_requests(emulator) == 2


def test_forget_drops_entry(emulator, astro_config_path):
    store = ConfigStore()
    cache = AuthConfigCache()

    _log_in(emulator, store, cache)
    cache.forget(emulator.base_url)
    _log_in(emulator, store, cache)

    assert _auth_config_requests(emulator) == 2


@pytest.mark.parametrize("ttl_s", [0, -1.0, float("nan")])
def test_invalid_ttl_rejected(ttl_s):
    with pytest.raises(ValueError, match="Invalid ttl_s"):
        AuthConfigCache(ttl_s=ttl_s)
