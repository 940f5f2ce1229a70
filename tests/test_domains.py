"""Tests of domain normalisation and the URLs derived from a domain."""

from __future__ import annotations

import pytest

from astro_jupyter.domains import api_base_url, context_key, normalize_base_url, normalize_domain
from astro_jupyter.errors import InvalidInputError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("astronomer.io", "astronomer.io"),
        ("cloud.astronomer.io", "astronomer.io"),
        ("https://cloud.astronomer.io/", "astronomer.io"),
        ("  Cloud.Astronomer-Dev.IO/ ", "astronomer-dev.io"),
        ("astronomer-stage.io", "astronomer-stage.io"),
        ("pr1234.astronomer-dev.io", "pr1234.astronomer-dev.io"),
        ("localhost", "localhost"),
    ],
)
def test_normalize_known_domains(text, expected):
    assert normalize_domain(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "a b", "http://", "-bad-.io", "exa_mple.io", "é.io"])
def test_normalize_rejects_malformed(text):
    with pytest.raises(InvalidInputError, match="Invalid Astro domain"):
        normalize_domain(text)


def test_normalize_rejects_unknown_with_hint():
    with pytest.raises(InvalidInputError) as caught:
        normalize_domain("example.com")
    assert "Unknown Astro domain 'example.com'" in str(caught.value)
    assert "AstroLogin.api_url" in str(caught.value)


def test_normalize_allows_unknown_when_asked():
    assert normalize_domain("control-plane.test", allow_unknown=True) == "control-plane.test"


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("astronomer.io", "https://api.astronomer.io/"),
        ("astronomer-dev.io", "https://api.astronomer-dev.io/"),
        ("pr1234.astronomer-dev.io", "https://pr1234.api.astronomer-dev.io/"),
        ("localhost", "http://localhost:8888/"),
    ],
)
def test_api_base_url(domain, expected):
    assert api_base_url(domain) == expected


def test_context_key_replaces_dots():
    assert context_key("pr1234.astronomer-dev.io") == "pr1234_astronomer-dev_io"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8888", "http://127.0.0.1:8888/"),
        ("http://127.0.0.1:8888///", "http://127.0.0.1:8888/"),
        ("https://api.example.test/astro/", "https://api.example.test/astro/"),
    ],
)
def test_normalize_base_url(url, expected):
    assert normalize_base_url(url) == expected


@pytest.mark.parametrize("url", ["127.0.0.1:8888", "ftp://x/", "http://", "http://h/?q=1"])
def test_normalize_base_url_rejects(url):
    with pytest.raises(InvalidInputError, match="Invalid API URL"):
        normalize_base_url(url)


@pytest.mark.parametrize(
    "text",
    [
        "http://[::1",
        "https://cloud.astronomer.io:99999/",
        "astronomer\n.io",
        "a." * 130 + "io",
        "x" * 64 + ".io",
        "astronomer\u3002io",
    ],
    ids=["bad-ipv6", "bad-port", "inner-newline", "too-long", "long-label", "ideographic-dot"],
)
def test_normalize_rejects_hostile(text):
    with pytest.raises(InvalidInputError, match="Invalid Astro domain"):
        normalize_domain(text, allow_unknown=True)


@pytest.mark.parametrize(
    "text", ["https://cloud.astronomer.io:8443/", "https://user:secret@astronomer.io/"]
)
def test_normalize_rejects_port_and_user(text):
    with pytest.raises(InvalidInputError, match="no port or user name") as caught:
        normalize_domain(text)
    assert "AstroLogin.api_url" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_normalize_accepts_idna_form():
    assert normalize_domain("xn--bcher-kva.example", allow_unknown=True) == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    "text", ["https://me:s3cret@cloud.astronomer.io:99999", "https://me:s3cret@[::1"]
)
def test_domain_error_hides_password(text):
    with pytest.raises(InvalidInputError) as caught:
        normalize_domain(text)
    assert "s3cret" not in str(caught.value)
    assert "me:" not in str(caught.value)
