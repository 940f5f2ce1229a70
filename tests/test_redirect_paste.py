"""Tests of reading a pasted callback address and judging what it carries."""

from __future__ import annotations

import pytest

from astro_jupyter.callback_query import parse_callback_query
from astro_jupyter.errors import InvalidInputError
from astro_jupyter.redirect_paste import callback_query_from_address, check_pasted_outcome

REDIRECT_URI = "http://localhost:12345/callback"
STATE = "expected-state-value"
QUERY = f"code=CODEsecret1234&state={STATE}"


@pytest.mark.parametrize(
    "address",
    [
        f"http://localhost:12345/callback?{QUERY}",
        f"  http://127.0.0.1:12345/callback?{QUERY}\n",
        f"http://[::1]:12345/callback?{QUERY}",
        f"HTTP://LOCALHOST:12345/callback?{QUERY}#fragment",
    ],
)
def test_callback_address_accepted(address):
    assert callback_query_from_address(address, REDIRECT_URI) == QUERY


@pytest.mark.parametrize(
    "address",
    [
        f"http://localhost:12345@evil.example/callback?{QUERY}",
        f"http://user@localhost:12345/callback?{QUERY}",
        f"http://localhost:12345/callback?{QUERY}\nhttp://localhost:12345/callback?{QUERY}",
        f"\x00http://localhost:12345/callback?{QUERY}",
        f"http://localhost:12345/callback?code=CODEsecret1234\u00a0&state={STATE}",
        f"https://localhost:12345/callback?{QUERY}",
        f"http://[::1:12345/callback?{QUERY}",
        f"javascript:alert('{QUERY}')",
        f"data:text/html,{QUERY}",
    ],
    ids=[
        "userinfo-other-host", "userinfo", "two-addresses", "leading-nul", "nbsp", "https",
        "bad-ipv6", "javascript", "data",
    ],
)
def test_foreign_address_rejected_without_echo(address):
    with pytest.raises(InvalidInputError) as caught:
        callback_query_from_address(address, REDIRECT_URI)
    assert "CODEsecret1234" not in str(caught.value)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("code=CODEsecret1234&state=other", "does not match this login"),
        ("code=CODEsecret1234", "no state parameter"),
        (f"code=CODEsecret1234&state={STATE}&state={STATE}", "more than one state"),
        (f"code=CODEsecret1234&state={STATE}&x=%FF", "cannot be decoded"),
        (f"state={STATE}", "neither a code nor an error"),
        (f"code=CODEsecret1234&code=CODEother&state={STATE}", "more than one code"),
    ],
)
def test_unusable_paste_rejected(query, expected):
    with pytest.raises(InvalidInputError) as caught:
        check_pasted_outcome(parse_callback_query(query, STATE))
    assert expected in str(caught.value)
    assert "CODEsecret1234" not in str(caught.value)


@pytest.mark.parametrize("query", [QUERY, f"error=access_denied&state={STATE}"])
def test_usable_paste_passes(query):
    check_pasted_outcome(parse_callback_query(query, STATE))
