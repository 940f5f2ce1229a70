"""Tests of the pure input checks of a login: emails, PKCE, state and token claims."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone

import pytest

from astro_jupyter.emails import validate_email
from astro_jupyter.errors import InvalidInputError
from astro_jupyter.jwt_claims import expiry_of, read_claims
from astro_jupyter.pkce import new_pkce_pair, new_state, s256_challenge


@pytest.mark.parametrize(
    "email",
    ["ada@example.com", "ada+astro@example.com", "  ada@example.com ", "émile@exämple.fr"],
)
def test_valid_emails_pass(email):
    assert validate_email(email) == email.strip()


@pytest.mark.parametrize(
    "email",
    ["", "   ", "ada", "ada@", "@example.com", "ada@localhost", "ada @example.com",
     "ada@example.com.", "a@" + "b" * 250 + ".com", "ada\n@example.com", "ada@@example.com",
     "ada\u202e@example.com", "ada\ud800@example.com", "ada\x85@example.com",
     "ada\u00a0@example.com", "\u00e9" * 125 + "@example.com"],
)
def test_invalid_emails_rejected(email):
    with pytest.raises(InvalidInputError):
        validate_email(email)


def test_empty_email_message_names_option():
    with pytest.raises(InvalidInputError, match="-e"):
        validate_email("")


def test_pkce_challenge_matches_rfc7636_example():
    # The verifier and challenge of RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_pair_is_random_and_valid():
    first, second = new_pkce_pair(), new_pkce_pair()
    assert first.verifier != second.verifier
    assert 43 <= len(first.verifier) <= 128
    digest = hashlib.sha256(first.verifier.encode()).digest()
    assert first.challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert first.verifier not in repr(first)


def test_state_is_random_and_long():
    states = {new_state() for _ in range(50)}
    assert len(states) == 50
    assert all(len(state) >= 40 for state in states)


def _jwt(payload: object, header: object = None) -> str:
    def encode(part: object) -> str:
        raw = json.dumps(part).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{encode(header or {'alg': 'HS256'})}.{encode(payload)}.signature"


def test_read_claims_returns_payload():
    assert read_claims(_jwt({"exp": 1700000000, "sub": "u1"}))["sub"] == "u1"


@pytest.mark.parametrize(
    "token",
    ["", "   ", "not-a-jwt", "a.b", "a.b.c.d", "!!!.???.sig", _jwt([1, 2]), ".payload.sig"],
    ids=[
        "empty", "blank", "one-part", "two-parts", "four-parts", "not-base64", "list", "no-header"
    ],
)
def test_read_claims_rejects_non_jwt(token):
    with pytest.raises(InvalidInputError) as caught:
        read_claims(token)
    if token.strip():
        assert token not in str(caught.value)


def test_expiry_of_reads_exp():
    assert expiry_of({"exp": 1700000000}) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)


@pytest.mark.parametrize("claims", [{}, {"exp": "soon"}, {"exp": True}, {"exp": 10**20}])
def test_expiry_of_ignores_bad_exp(claims):
    assert expiry_of(claims) is None
