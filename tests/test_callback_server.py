"""Tests of the loopback callback server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import port_is_free

from astro_jupyter.callback_server import CallbackServer, parse_callback_query
from astro_jupyter.errors import (
    CallbackError,
    CallbackPortBusyError,
    LoginCancelledError,
    LoginTimeoutError,
)

STATE = "expected-state-value"


def _get(server: CallbackServer, path_and_query: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{server.port}{path_and_query}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def _get_later(
    server: CallbackServer, path_and_query: str, delay_s: float = 0.1
) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), _get(server, path_and_query)))
    thread.start()
    return thread


@pytest.fixture
def server():
    with CallbackServer(STATE, port=0) as running:
        yield running


def test_valid_callback_returns_code(server):
    thread = _get_later(server, f"/callback?code=the-code&state={STATE}")
    assert server.wait(5) == "the-code"
    thread.join(5)


def test_redirect_uri_uses_localhost_and_bound_port(server):
    assert server.redirect_uri == f"http://localhost:{server.port}/callback"
    assert server.port != 0


def test_success_page_tells_user_to_return(server):
    status, page = _get(server, f"/callback?code=c&state={STATE}")
    assert status == 200
    assert "Sign-in received" in page
    assert "c&state" not in page


def test_stray_requests_are_ignored(server):
    assert _get(server, "/favicon.ico")[0] == 404
    assert _get(server, "/other?code=x&state=" + STATE)[0] == 404
    thread = _get_later(server, f"/callback?code=real&state={STATE}")
    assert server.wait(5) == "real"
    thread.join(5)


@pytest.mark.parametrize(
    "query",
    ["code=forged&state=wrong", "code=forged", "error=access_denied&state=wrong"],
    ids=["wrong-state", "missing-state", "error-with-wrong-state"],
)
def test_bad_state_never_ends_login(server, query):
    status, page = _get(server, f"/callback?{query}")
    assert status == 400
    assert "ignored" in page
    thread = _get_later(server, f"/callback?code=real&state={STATE}")
    assert server.wait(5) == "real"
    thread.join(5)
    assert server.ignored_count == 1


def test_wrong_state_counted_in_timeout_message(server):
    _get(server, "/callback?code=forged&state=wrong")
    with pytest.raises(LoginTimeoutError) as caught:
        server.wait(0.3)
    assert "1 response(s) with a missing, repeated or wrong state" in str(caught.value)
    assert "forged" not in str(caught.value)


def test_access_denied_fails_with_description(server):
    thread = _get_later(
        server, f"/callback?error=access_denied&error_description=User+said+no&state={STATE}"
    )
    with pytest.raises(CallbackError) as caught:
        server.wait(5)
    thread.join(5)
    assert caught.value.oauth_error == "access_denied"
    assert "access_denied: User said no" in str(caught.value)


def test_callback_without_code_fails(server):
    thread = _get_later(server, f"/callback?state={STATE}")
    with pytest.raises(CallbackError) as caught:
        server.wait(5)
    thread.join(5)
    assert "has no code" in str(caught.value)


def test_timeout_raises_and_names_seconds(server):
    started = time.monotonic()
    with pytest.raises(LoginTimeoutError) as caught:
        server.wait(0.3)
    assert time.monotonic() - started < 3
    assert "within 0.3 s" in str(caught.value)


def test_cancel_from_other_thread(server):
    threading.Timer(0.1, server.cancel).start()
    with pytest.raises(LoginCancelledError):
        server.wait(5)


def test_close_frees_port():
    server = CallbackServer(STATE, port=0).start()
    port = server.port
    assert not port_is_free(port)
    server.close()
    assert port_is_free(port)
    server.close()


def test_no_thread_left_after_close():
    before = {thread.name for thread in threading.enumerate()}
    with CallbackServer(STATE, port=0) as server:
        _get(server, "/favicon.ico")
        name = f"astro-login-callback-{server.port}"
        assert name in {thread.name for thread in threading.enumerate()}
    after = {thread.name for thread in threading.enumerate()}
    assert name not in after
    assert after <= before | {name}


def test_busy_port_names_port_and_fix(server):
    with pytest.raises(CallbackPortBusyError) as caught:
        CallbackServer(STATE, port=server.port).start()
    message = str(caught.value)
    assert str(server.port) in message
    assert "already in use" in message
    assert "astro login" in message


def test_binds_loopback_only(server):
    assert server._httpd is not None
    assert server._httpd.server_address[0] == "127.0.0.1"


def test_deliver_query_accepts_pasted_response(server):
    outcome = server.deliver_query(f"code=pasted&state={STATE}")
    assert outcome.accepted
    assert server.wait(1) == "pasted"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (f"code=a&code=b&state={STATE}", None),
        (f"code=a&state={STATE}&state={STATE}", "repeated state"),
        ("", "missing state"),
    ],
    ids=["duplicate-code", "duplicate-state", "empty"],
)
def test_parse_rejects_duplicates(query, reason):
    outcome = parse_callback_query(query, STATE)
    if reason is None:
        assert outcome.error == "invalid_request"
        assert outcome.code is None
    else:
        assert outcome.ignored_reason == reason


def test_outcome_repr_hides_code():
    outcome = parse_callback_query(f"code=secret-code-value&state={STATE}", STATE)
    assert outcome.code == "secret-code-value"
    assert "secret-code-value" not in repr(outcome)


def test_port_reusable_right_after_login():
    # The browser's connection leaves the server side in TIME-WAIT after the
    # server closes it; a second login on the same port must still bind.
    first = CallbackServer(STATE, port=0).start()
    port = first.port
    thread = _get_later(first, f"/callback?code=c&state={STATE}", delay_s=0)
    assert first.wait(5) == "c"
    thread.join(5)
    first.close()

    with CallbackServer(STATE, port=port) as second:
        assert second.port == port
        thread = _get_later(second, f"/callback?code=again&state={STATE}", delay_s=0)
        assert second.wait(5) == "again"
        thread.join(5)


@pytest.mark.parametrize(
    ("family", "address"), [(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")]
)
def test_port_busy_when_other_listener(family, address):
    # A browser resolving localhost to ::1 first would reach that listener
    # instead of ours, so it counts as busy too.
    with socket.socket(family, socket.SOCK_STREAM) as holder:
        holder.bind((address, 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(CallbackPortBusyError):
            CallbackServer(STATE, port=port).start()


@pytest.mark.parametrize(
    "query",
    [f"code=a&state={STATE}&junk=%FF", f"code=a&state={STATE}" + "&x=1" * 50, "state=%C3%28"],
    ids=["invalid-utf8", "too-many-fields", "invalid-utf8-state"],
)
def test_unreadable_query_ignored(query):
    outcome = parse_callback_query(query, STATE)
    assert outcome.ignored_reason == "unreadable query"
    assert outcome.code is None


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (f"code=a&code=b&state={STATE}", "more than one code"),
        (f"code=&code=b&state={STATE}", "more than one code"),
        (f"code=caf%C3%A9&state={STATE}", "characters that no authorization code has"),
        (f"code=a%0Ab&state={STATE}", "characters that no authorization code has"),
    ],
)
def test_unusable_code_is_invalid_request(query, problem):
    outcome = parse_callback_query(query, STATE)
    assert outcome.accepted
    assert outcome.code is None
    assert outcome.error == "invalid_request"
    assert problem in (outcome.error_description or "")


def test_error_description_printable_one_line():
    query = f"error=access_denied&error_description=no%1B%5B2J%0Away%E2%80%AE&state={STATE}"
    outcome = parse_callback_query(query, STATE)
    assert outcome.error == "access_denied"
    assert outcome.error_description == "no [2J way"


def test_repeated_error_is_invalid_request():
    outcome = parse_callback_query(f"error=a&error=b&state={STATE}", STATE)
    assert outcome.error == "invalid_request"
    assert "more than one error" in (outcome.error_description or "")


def test_malformed_error_code_replaced():
    outcome = parse_callback_query(f"error=%22quoted%22&state={STATE}", STATE)
    assert outcome.error == "invalid_request"


def test_ignored_responses_warn_once(server, caplog):
    for _ in range(3):
        assert _get(server, "/callback?code=forged&state=wrong")[0] == 400
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert server.ignored_count == 3
