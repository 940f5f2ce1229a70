"""Tests of session(): the authenticated Astro API session, against the emulator."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from conftest import log_in_by_link

from astro_jupyter.api_session import AstroSession
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.credentials import CredentialSource, default_store, get_token, whoami
from astro_jupyter.errors import ApiError, NotLoggedInError
from astro_jupyter.settings import AstroLogin

EMAIL = "ada@example.com"

pytestmark = pytest.mark.usefixtures("emulator_settings")


@pytest.fixture
def store() -> ConfigStore:
    return default_store()


@pytest.fixture
def logged_in(emulator, store):
    """Log in to the emulator's localhost context by link, playing the browser."""
    return log_in_by_link(emulator, store, email=EMAIL)


def test_relative_paths_use_v1_base(emulator, logged_in):
    with AstroSession() as api:
        assert api.base_url == f"{emulator.base_url}v1/"
        with api.get("users/self") as response:
            assert response.status_code == 200
        assert emulator.requests[-1].path == "/v1/users/self"


def test_list_helpers_follow_context(emulator, logged_in):
    with AstroSession() as api:
        organizations = api.list_organizations()
        workspaces = api.list_workspaces()
        assert [org["id"] for org in organizations] == [logged_in.organization.id]
        assert {ws["id"] for ws in workspaces} == {ws.id for ws in logged_in.workspaces}

        api.workspace_id = workspaces[0]["id"]
        deployments = api.list_deployments()
        assert deployments
        assert all(d.get("workspaceId") == workspaces[0]["id"] for d in deployments)


def test_refreshes_before_expiry(emulator, logged_in, store):
    store.update_context("localhost", expires_at=datetime.now(timezone.utc) + timedelta(minutes=2))
    old = store.read_context("localhost").token
    with AstroSession() as api, api.get("users/self") as response:
        assert response.status_code == 200
    assert emulator.count("refresh") == 1
    assert store.read_context("localhost").token != old


def test_retries_once_after_401(emulator, logged_in, store):
    old = store.read_context("localhost").token
    emulator.fail("self", status=401, body={"message": "token expired"}, times=1)
    with AstroSession() as api, api.get("users/self") as response:
        assert response.status_code == 200
    assert emulator.count("refresh") == 1
    assert emulator.count("self") >= 2
    assert store.read_context("localhost").token != old


def test_second_401_raises_with_message(emulator, logged_in):
    emulator.fail("self", status=401, body={"message": "token rejected", "requestId": "r-1"})
    with AstroSession() as api, pytest.raises(ApiError) as caught:
        api.get("users/self")
    message = str(caught.value)
    assert caught.value.status == 401
    assert "token rejected" in message
    assert "r-1" in message
    assert emulator.count("refresh") == 1


def test_error_carries_api_message(emulator, logged_in):
    emulator.fail("organizations", status=500, body={"message": "database on fire"})
    with AstroSession() as api, pytest.raises(ApiError) as caught:
        api.list_organizations()
    assert "database on fire" in str(caught.value)
    assert caught.value.status == 500


def test_token_not_sent_elsewhere(emulator, logged_in):
    seen_headers: list[dict] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server dispatches to
            seen_headers.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    other = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=other.serve_forever)
    thread.start()
    try:
        with AstroSession() as api:
            api.get(f"http://127.0.0.1:{other.server_port}/v1/users/self").close()
            api.get("users/self").close()
    finally:
        other.shutdown()
        other.server_close()
        thread.join(5)
    assert len(seen_headers) == 1
    assert "Authorization" not in seen_headers[0]


def test_repr_and_errors_hide_token(emulator, logged_in, store):
    token = store.read_context("localhost").token
    with AstroSession() as api:
        assert token not in repr(api)
        assert token not in repr(api.auth)


def test_not_logged_in_fails_at_creation():
    with pytest.raises(NotLoggedInError, match="%astro_login"):
        AstroSession()


def test_api_token_env_wins(emulator, logged_in, store, monkeypatch):
    api_token = emulator.mint_access_token("robot@example.com")
    monkeypatch.setenv("ASTRO_API_TOKEN", api_token)
    before = store.path.read_text()
    assert get_token() == api_token
    identity = whoami()
    assert identity.source is CredentialSource.API_TOKEN
    with AstroSession() as api, api.get("users/self") as response:
        assert response.request.headers["Authorization"] == f"Bearer {api_token}"
    assert store.path.read_text() == before
    assert api_token not in before


def test_page_not_json_is_api_error(emulator, logged_in):
    emulator.fail("workspaces", status=200, body=b"<html>maintenance</html>")
    with AstroSession() as api, pytest.raises(ApiError, match="is not JSON"):
        api.list_workspaces()


def test_get_retried_after_transient_status(emulator, logged_in):
    served_before = len(emulator.requests)
    emulator.fail("workspaces", status=503, times=2)
    with AstroSession() as api:
        workspaces = api.list_workspaces()
    assert {ws["id"] for ws in workspaces} == {ws.id for ws in logged_in.workspaces}
    statuses = [r.status for r in emulator.requests[served_before:] if r.endpoint == "workspaces"]
    assert statuses == [503, 503, 200]


def test_get_retried_after_reset(emulator, logged_in):
    served_before = len(emulator.requests)
    emulator.fail("self", drop=True, times=1)
    with AstroSession() as api, api.get("users/self") as response:
        assert response.status_code == 200
    statuses = [r.status for r in emulator.requests[served_before:] if r.endpoint == "self"]
    assert statuses == [0, 200]


def test_get_retries_are_bounded(emulator, logged_in):
    served_before = emulator.count("organizations")
    emulator.fail("organizations", status=502, body={"message": "bad gateway"})
    with AstroSession() as api, pytest.raises(ApiError) as caught:
        api.list_organizations()
    assert caught.value.status == 502
    assert "bad gateway" in str(caught.value)
    assert emulator.count("organizations") - served_before == 3


def test_post_not_retried(emulator, logged_in):
    served_before = emulator.count("organization-lookup")
    emulator.fail("organization-lookup", status=503)
    with AstroSession() as api, pytest.raises(ApiError):
        api.post(f"{emulator.base_url}organization-lookup", json={"email": EMAIL})
    assert emulator.count("organization-lookup") - served_before == 1


def test_retry_after_capped_by_timeout(emulator, logged_in):
    AstroLogin.instance().http_timeout_s = 0.5
    served_before = emulator.count("self")
    emulator.fail("self", status=429, headers={"Retry-After": "3600"}, times=2)
    started = time.monotonic()
    with AstroSession() as api, api.get("users/self") as response:
        assert response.status_code == 200
    # A wait of the full hour would never let this finish; each wait is cut to 0.5 s.
    assert time.monotonic() - started >= 1.0
    assert emulator.count("self") - served_before == 3


def test_stalled_get_not_retried(emulator, logged_in):
    AstroLogin.instance().http_timeout_s = 0.5
    served_before = emulator.count("self")
    emulator.fail("self", status=None, delay_s=30)
    with AstroSession() as api, pytest.raises(ApiError, match="did not respond within 0.5 s"):
        api.get("users/self")
    # Stopping ends the stalled response, which the request log records only then.
    emulator.stop()
    assert emulator.count("self") - served_before == 1
