"""Tests of the emulator's lifecycle, Astro API endpoints, faults and request log.

Every test talks real HTTP to an emulator bound to 127.0.0.1 on a free port.
The OAuth endpoints and the scripted browser are tested in test_emulator_oauth.py,
the command line in test_emulator_cli.py.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from emulator_http import REQUEST_TIMEOUT_S, Reply, call

from astro_jupyter.emulator import AUDIENCE, CLIENT_ID, Emulator

# Bound on every HTTP call in these tests, the same as call()'s.
TIMEOUT_S = REQUEST_TIMEOUT_S

# A wildcard address, used only to check that it is rejected, never bound.
WILDCARD_IPV4 = "0.0.0.0"  # noqa: S104


@pytest.fixture
def emu():
    with Emulator() as emulator:
        yield emulator


def assert_api_error(reply: Reply, status: int) -> dict:
    assert reply.status == status
    payload = reply.json()
    assert payload["statusCode"] == status
    assert payload["message"]
    assert payload["requestId"]
    return payload


# Lifecycle


def test_start_serves_on_loopback_port():
    emulator = Emulator()
    emulator.start()
    try:
        parts = urlsplit(emulator.base_url)
        assert parts.hostname == "127.0.0.1"
        assert parts.port > 0
        assert emulator.base_url.endswith("/")
        assert emulator.oauth_base_url == emulator.base_url + "auth/"
    finally:
        emulator.stop()


def test_stop_closes_socket_and_is_idempotent():
    emulator = Emulator().start()
    port = urlsplit(emulator.base_url).port
    emulator.stop()
    emulator.stop()

    with socket.socket() as probe:
        probe.settimeout(TIMEOUT_S)
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_stop_never_started_does_nothing():
    Emulator().stop()


def test_start_twice_raises():
    with Emulator() as emulator:
        with pytest.raises(RuntimeError, match="already started"):
            emulator.start()


def test_base_url_before_start_raises():
    with pytest.raises(RuntimeError, match="not started"):
        _ = Emulator().base_url


@pytest.mark.parametrize("host", [WILDCARD_IPV4, "192.0.2.10", "example.com", "::"])
def test_non_loopback_host_rejected(host):
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host=host)


def test_ipv6_loopback_serves():
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        emulator = Emulator(host="::1").start()
    except OSError as exc:
        pytest.skip(f"::1 cannot be bound here: {exc}")
    try:
        assert emulator.base_url.startswith("http://[::1]:")
        reply = call("GET", emulator.base_url + "auth-config")
        assert reply.status == 200
        assert reply.json()["domainUrl"] == emulator.oauth_base_url
    finally:
        emulator.stop()


class _FaultApplied(logging.Handler):
    """Set an event when the emulator logs that it applies an injected fault."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.applied = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Applying the injected fault"):
            self.applied.set()


def test_stop_ends_injected_delay(emu, caplog):
    emu.fail("legacy-auth-config", status=503, delay_s=30)
    watcher = _FaultApplied()
    server_logger = logging.getLogger("astro_jupyter.emulator.server")
    server_logger.addHandler(watcher)
    outcome: list[object] = []

    def slow_request() -> None:
        try:
            outcome.append(call("GET", emu.base_url + "auth-config").status)
        except OSError as exc:
            outcome.append(exc)

    client = threading.Thread(target=slow_request)
    try:
        with caplog.at_level(logging.DEBUG, logger="astro_jupyter.emulator"):
            client.start()
            assert watcher.applied.wait(TIMEOUT_S)
            started = time.monotonic()
            emu.stop()
            stop_s = time.monotonic() - started
            client.join(TIMEOUT_S)
    finally:
        server_logger.removeHandler(watcher)

    assert stop_s < 2
    assert not client.is_alive()
    assert outcome == [503]


# Auth config and organisation lookup


def test_auth_config_with_cli_header(emu):
    reply = call(
        "GET",
        emu.base_url + "private/v1alpha1/cli/auth-config",
        headers={"X-Astro-Client-Identifier": "cli"},
    )

    assert reply.status == 200
    assert reply.json() == {
        "clientId": CLIENT_ID,
        "audience": AUDIENCE,
        "domainUrl": emu.oauth_base_url,
    }


@pytest.mark.parametrize("headers", [{}, {"X-Astro-Client-Identifier": "browser"}])
def test_auth_config_without_cli_header_rejected(emu, headers):
    reply = call("GET", emu.base_url + "private/v1alpha1/cli/auth-config", headers=headers)

    payload = assert_api_error(reply, 400)
    assert "X-Astro-Client-Identifier" in payload["message"]


def test_legacy_auth_config_adds_auth_flow(emu):
    reply = call("GET", emu.base_url + "auth-config")

    assert reply.status == 200
    payload = reply.json()
    assert payload["clientId"] == CLIENT_ID
    assert payload["audience"] == AUDIENCE
    assert payload["domainUrl"] == emu.oauth_base_url
    assert payload["authFlow"] == "ORG_FIRST"


def test_legacy_auth_flow_setting():
    with Emulator(legacy_auth_flow="IDENTITY_FIRST") as emulator:
        reply = call("GET", emulator.base_url + "auth-config")
    assert reply.json()["authFlow"] == "IDENTITY_FIRST"


def test_organization_lookup_known_and_unknown(emu):
    org_id = emu.add_organization("Acme", workspaces=("Ops",))
    emu.add_user("ann@acme.test", organizations=(org_id,))
    url = emu.base_url + "organization-lookup"
    headers = {"Content-Type": "application/json"}

    known = call("POST", url, headers=headers, body=json.dumps({"email": "ANN@acme.test"}).encode())
    unknown = call(
        "POST", url, headers=headers, body=json.dumps({"email": "x@nowhere.test"}).encode()
    )

    assert known.status == 200
    assert known.json() == {"organizationIds": [org_id]}
    assert unknown.status == 200
    assert unknown.json() == {"organizationIds": []}


def test_organization_lookup_invalid_body(emu):
    reply = call("POST", emu.base_url + "organization-lookup", body=b"not json")

    assert_api_error(reply, 400)


# Authenticated API


def test_api_without_token_is_401(emu):
    reply = call("GET", emu.base_url + "v1/users/self?createIfNotExist=true")

    assert_api_error(reply, 401)
    assert reply.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "Bearer"])
def test_api_with_invalid_token_is_401(emu, token):
    reply = call("GET", emu.base_url + "v1/organizations", token=token)

    assert_api_error(reply, 401)


def test_api_with_expired_token_is_401(emu):
    token = emu.mint_access_token("old@example.com", ttl_s=0)

    reply = call("GET", emu.base_url + "v1/organizations", token=token)

    payload = assert_api_error(reply, 401)
    assert "expired" in payload["message"]


def test_api_with_revoked_token_is_401(emu):
    token = emu.mint_access_token("gone@example.com")
    emu.revoke(token)

    reply = call("GET", emu.base_url + "v1/organizations", token=token)

    payload = assert_api_error(reply, 401)
    assert "revoked" in payload["message"]
    assert emu.revoked(token)


def test_revoked_unknown_token_raises(emu):
    with pytest.raises(KeyError):
        emu.revoked("never-issued")


def test_self_returns_user(emu):
    token = emu.mint_access_token("jane.doe@example.com")

    reply = call("GET", emu.base_url + "v1/users/self?createIfNotExist=true", token=token)

    assert reply.status == 200
    user = reply.json()
    assert user["username"] == "jane.doe@example.com"
    assert user["fullName"] == "Jane Doe"
    assert user["id"].startswith("user-")


def test_new_user_joins_example_org(emu):
    token = emu.mint_access_token("new@example.com")

    organizations = call("GET", emu.base_url + "v1/organizations?limit=100", token=token).json()
    org = organizations["organizations"][0]
    workspaces = call(
        "GET",
        emu.base_url
        + f"v1/organizations/{org['id']}/workspaces?limit=1000&offset=0&sorts=name:asc",
        token=token,
    ).json()

    assert organizations["totalCount"] == 1
    assert org == {"id": emu.default_organization_id, "name": "Example Org", "product": "HOSTED"}
    assert [ws["name"] for ws in workspaces["workspaces"]] == ["Analytics", "Data Engineering"]
    assert all(ws["organizationId"] == org["id"] for ws in workspaces["workspaces"])


def test_added_user_sees_only_own_organizations(emu):
    hybrid_id = emu.add_organization("Hybrid Co", product="HYBRID")
    emu.add_user("h@hybrid.test", organizations=(hybrid_id,))
    token = emu.mint_access_token("h@hybrid.test")

    reply = call("GET", emu.base_url + "v1/organizations", token=token)

    assert reply.json()["organizations"] == [
        {"id": hybrid_id, "name": "Hybrid Co", "product": "HYBRID"}
    ]


def test_user_without_organization_gets_empty_list(emu):
    emu.add_user("lonely@example.com")
    token = emu.mint_access_token("lonely@example.com")

    reply = call("GET", emu.base_url + "v1/organizations", token=token)

    assert reply.status == 200
    assert reply.json()["organizations"] == []
    assert reply.json()["totalCount"] == 0


def test_organization_get_member(emu):
    token = emu.mint_access_token("member@example.com")
    org_id = emu.default_organization_id

    reply = call("GET", emu.base_url + f"v1/organizations/{org_id}", token=token)

    assert reply.status == 200
    assert reply.json()["id"] == org_id


def test_organization_unknown_is_404(emu):
    token = emu.mint_access_token("member@example.com")

    reply = call("GET", emu.base_url + "v1/organizations/org-doesnotexist", token=token)

    assert_api_error(reply, 404)


def test_organization_of_others_is_403(emu):
    other_id = emu.add_organization("Other")
    token = emu.mint_access_token("member@example.com")

    org_reply = call("GET", emu.base_url + f"v1/organizations/{other_id}", token=token)
    ws_reply = call("GET", emu.base_url + f"v1/organizations/{other_id}/workspaces", token=token)

    assert_api_error(org_reply, 403)
    assert_api_error(ws_reply, 403)


def test_workspaces_paginated_by_page_size_max():
    names = ("e", "B", "a", "d", "C")
    with Emulator(page_size_max=2) as emulator:
        org_id = emulator.add_organization("Many", workspaces=names)
        emulator.add_user("p@many.test", organizations=(org_id,))
        token = emulator.mint_access_token("p@many.test")
        pages = []
        offset = 0
        while True:
            url = (
                emulator.base_url
                + f"v1/organizations/{org_id}/workspaces?limit=1000&offset={offset}&sorts=name:asc"
            )
            page = call("GET", url, token=token).json()
            pages.append(page)
            offset += len(page["workspaces"])
            if not page["workspaces"] or offset >= page["totalCount"]:
                break

    assert [len(page["workspaces"]) for page in pages] == [2, 2, 1]
    assert all(page["totalCount"] == 5 for page in pages)
    assert all(page["limit"] == 2 for page in pages)
    assert [page["offset"] for page in pages] == [0, 2, 4]
    collected = [ws["name"] for page in pages for ws in page["workspaces"]]
    assert collected == ["a", "B", "C", "d", "e"]


def test_workspaces_sorted_descending(emu):
    token = emu.mint_access_token("s@example.com")
    url = emu.base_url + f"v1/organizations/{emu.default_organization_id}/workspaces"

    reply = call("GET", url + "?sorts=name:desc", token=token)

    assert [ws["name"] for ws in reply.json()["workspaces"]] == ["Data Engineering", "Analytics"]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=abc", "limit=1001", "offset=-1", "sorts=createdAt:asc", "limit=1&limit=2"],
)
def test_workspaces_invalid_query_is_400(emu, query):
    token = emu.mint_access_token("q@example.com")
    url = emu.base_url + f"v1/organizations/{emu.default_organization_id}/workspaces?{query}"

    reply = call("GET", url, token=token)

    assert_api_error(reply, 400)


def test_deployments_filtered_by_workspace(emu):
    token = emu.mint_access_token("d@example.com")
    org_id = emu.default_organization_id
    workspaces = call(
        "GET", emu.base_url + f"v1/organizations/{org_id}/workspaces", token=token
    ).json()["workspaces"]
    first = workspaces[0]["id"]

    everything = call("GET", emu.base_url + f"v1/organizations/{org_id}/deployments", token=token)
    filtered = call(
        "GET",
        emu.base_url + f"v1/organizations/{org_id}/deployments?workspaceIds={first}",
        token=token,
    )

    assert everything.json()["totalCount"] == 2 * len(workspaces)
    deployments = filtered.json()["deployments"]
    assert len(deployments) == 2
    assert {dep["workspaceId"] for dep in deployments} == {first}
    assert all(dep["organizationId"] == org_id for dep in deployments)
    assert all(dep["id"].startswith("dep-") and dep["name"] for dep in deployments)


def test_unknown_path_is_404_and_wrong_method_405(emu):
    missing = call("GET", emu.base_url + "v1/nothing")
    wrong_method = call("GET", emu.oauth_base_url + "oauth/token")

    assert_api_error(missing, 404)
    assert_api_error(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST"


# Faults


def test_fault_status_with_default_api_body(emu):
    emu.fail("auth-config", status=503)

    reply = call(
        "GET",
        emu.base_url + "private/v1alpha1/cli/auth-config",
        headers={"X-Astro-Client-Identifier": "cli"},
    )

    assert_api_error(reply, 503)


def test_fault_on_token_endpoint_uses_oauth_body(emu):
    emu.fail("token", status=400)

    reply = call(
        "POST",
        emu.oauth_base_url + "oauth/token",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"grant_type=authorization_code",
    )

    assert reply.status == 400
    assert reply.json()["error"] == "invalid_grant"
    assert reply.json()["error_description"]


def test_fault_json_body(emu):
    emu.fail("legacy-auth-config", status=502, body={"message": "upstream down"})

    reply = call("GET", emu.base_url + "auth-config")

    assert reply.status == 502
    assert reply.json() == {"message": "upstream down"}


def test_fault_raw_bytes_body(emu):
    emu.fail("legacy-auth-config", status=200, body=b"not json")

    reply = call("GET", emu.base_url + "auth-config")

    assert reply.status == 200
    assert reply.body == b"not json"


def test_fault_delay_then_normal_answer(emu):
    emu.fail("legacy-auth-config", status=None, delay_s=0.3, times=1)

    started = time.monotonic()
    reply = call("GET", emu.base_url + "auth-config")
    elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    assert reply.status == 200
    assert reply.json()["clientId"] == CLIENT_ID


def test_fault_times_then_recovers(emu):
    emu.fail("legacy-auth-config", status=500, times=2)

    statuses = [call("GET", emu.base_url + "auth-config").status for _ in range(3)]

    assert statuses == [500, 500, 200]


def test_fault_extra_headers_sent(emu):
    emu.fail("legacy-auth-config", status=429, headers={"Retry-After": "7"}, times=1)

    reply = call("GET", emu.base_url + "auth-config")

    assert reply.status == 429
    assert reply.headers["retry-after"] == "7"
    assert_api_error(reply, 429)


def test_fault_drop_resets_connection(emu):
    emu.fail("legacy-auth-config", drop=True, times=1)

    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        call("GET", emu.base_url + "auth-config")
    after = call("GET", emu.base_url + "auth-config")

    assert after.status == 200
    assert [record.status for record in emu.requests] == [0, 200]


def test_fault_http_control_takes_headers_and_drop(emu):
    faults = [
        {"endpoint": "legacy-auth-config", "drop": True, "times": 1},
        {"endpoint": "auth-config", "status": 503, "headers": {"Retry-After": "2"}, "times": 1},
    ]
    created = [
        call("POST", emu.base_url + "_emulator/faults", body=json.dumps(fault).encode())
        for fault in faults
    ]

    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        call("GET", emu.base_url + "auth-config")
    unavailable = call(
        "GET",
        emu.base_url + "private/v1alpha1/cli/auth-config",
        headers={"X-Astro-Client-Identifier": "cli"},
    )

    assert [reply.status for reply in created] == [201, 201]
    assert unavailable.status == 503
    assert unavailable.headers["retry-after"] == "2"


def test_domain_url_advertised(emu):
    emu.set_domain_url("https://127.0.0.1:9/auth")
    changed = call("GET", emu.base_url + "auth-config").json()
    emu.set_domain_url(None)
    restored = call("GET", emu.base_url + "auth-config").json()

    assert changed["domainUrl"] == "https://127.0.0.1:9/auth/"
    assert restored["domainUrl"] == emu.oauth_base_url


@pytest.mark.parametrize("url", ["https://auth.example.com/", "ftp://127.0.0.1/", "127.0.0.1"])
def test_domain_url_must_be_loopback_http(emu, url):
    with pytest.raises(ValueError):
        emu.set_domain_url(url)


def test_fault_until_cleared(emu):
    emu.fail("legacy-auth-config", status=500)

    before = [call("GET", emu.base_url + "auth-config").status for _ in range(3)]
    emu.clear_faults()
    after = call("GET", emu.base_url + "auth-config").status

    assert before == [500, 500, 500]
    assert after == 200


@pytest.mark.parametrize(
    "arguments",
    [
        {"endpoint": "nope"},
        {"endpoint": "token", "status": 99},
        {"endpoint": "token", "delay_s": -1},
        {"endpoint": "token", "delay_s": 61},
        {"endpoint": "token", "times": 0},
        {"endpoint": "token", "headers": {"Retry-After": 1}},
        {"endpoint": "token", "headers": {"X-Bad": "a\r\nSet-Cookie: b"}},
        {"endpoint": "token", "drop": "yes"},
    ],
)
def test_fault_invalid_arguments_raise(emu, arguments):
    endpoint = arguments.pop("endpoint")
    with pytest.raises(ValueError):
        emu.fail(endpoint, **arguments)


def test_fault_http_control_surface(emu):
    fault = {"endpoint": "legacy-auth-config", "status": 429, "body": "slow down", "times": 1}

    created = call(
        "POST",
        emu.base_url + "_emulator/faults",
        headers={"Content-Type": "application/json"},
        body=json.dumps(fault).encode(),
    )
    faulted = call("GET", emu.base_url + "auth-config")
    recovered = call("GET", emu.base_url + "auth-config")
    call(
        "POST",
        emu.base_url + "_emulator/faults",
        body=json.dumps({"endpoint": "legacy-auth-config"}).encode(),
    )
    cleared = call("DELETE", emu.base_url + "_emulator/faults")
    after_clear = call("GET", emu.base_url + "auth-config")
    log = call("GET", emu.base_url + "_emulator/requests").json()["requests"]

    assert created.status == 201
    assert faulted.status == 429
    assert faulted.body == b"slow down"
    assert recovered.status == 200
    assert cleared.status == 204
    assert after_clear.status == 200
    assert [entry["status"] for entry in log] == [429, 200, 200]
    assert all(entry["endpoint"] == "legacy-auth-config" for entry in log)


def test_fault_http_control_rejects_invalid_fault(emu):
    reply = call("POST", emu.base_url + "_emulator/faults", body=b'{"endpoint": "bogus"}')

    payload = assert_api_error(reply, 400)
    assert "bogus" in payload["message"]


# Request log


def test_request_log_records_path_without_query(emu):
    token = emu.mint_access_token("log@example.com")
    call("GET", emu.base_url + "v1/organizations?limit=5&offset=0", token=token)
    call("GET", emu.base_url + "v1/missing?secret=1")

    records = emu.requests

    assert [(r.method, r.path, r.endpoint, r.status) for r in records] == [
        ("GET", "/v1/organizations", "organizations", 200),
        ("GET", "/v1/missing", None, 404),
    ]
    assert emu.count("organizations") == 1
    assert emu.count("workspaces") == 0


def test_count_unknown_endpoint_raises(emu):
    with pytest.raises(ValueError, match="Unknown emulator endpoint"):
        emu.count("organisations")


def test_requests_is_a_copy(emu):
    emu.requests.append("junk")

    assert emu.requests == []


def test_debug_log_has_method_path_status(emu, caplog):
    token = emu.mint_access_token("debug@example.com")
    with caplog.at_level(logging.DEBUG, logger="astro_jupyter.emulator"):
        call("GET", emu.base_url + "v1/organizations?limit=7", token=token)

    messages = [record.getMessage() for record in caplog.records]
    assert "GET /v1/organizations -> 200" in messages
    assert all("limit=7" not in message for message in messages)
    assert all(token not in message for message in messages)
