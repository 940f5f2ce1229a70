"""Property tests with Hypothesis for the inputs a user or a browser hands to a login.

Callback query strings, pasted redirect addresses, emails and domains are
generated, hostile ones included, and each check must either accept the input
in a stated form or raise its documented error, quickly. Any other exception
fails the test. The settings below make every run try the same examples.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import parse_qs, quote, quote_from_bytes, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from astro_jupyter.callback_query import CallbackOutcome, parse_callback_query
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.domains import api_base_url, normalize_base_url, normalize_domain
from astro_jupyter.emails import validate_email
from astro_jupyter.emulator import follow_login_link
from astro_jupyter.errors import InvalidInputError
from astro_jupyter.login_flow import LoginFlow, LoginMode, LoginOptions, LoginStep
from astro_jupyter.oauth_client import AuthConfig, authorization_url
from astro_jupyter.redirect_paste import callback_query_from_address, check_pasted_outcome

# derandomize makes each run try the same examples, so a failure reproduces,
# and no example database is written. The deadline catches a hang or a blow-up on
# one input long before pytest's own timeout, with room for a busy 2-core machine.
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    print_blob=True,
)

STATE = "Jm0X7c1yqkV3l0sVt9Qm3h2v0yq7mW2sZ8pLx1RkG3A"  # shaped like pkce.new_state()
REDIRECT_URI = "http://localhost:12345/callback"
# Codes start with CODE, so a test can search every message for one.
CODE = st.from_regex(r"CODE[A-Za-z0-9_-]{12,40}", fullmatch=True)
# RFC 6749 appendix A: VSCHAR.
VISIBLE_ASCII = frozenset(chr(point) for point in range(0x20, 0x7F))
EVERY_CHARACTER = st.characters(exclude_categories=())  # lone surrogates included

_PARAMETER_NAMES = st.one_of(
    st.sampled_from(["state", "code", "error", "error_description", "iss", ""]),
    st.text(max_size=6),
)
_PARAMETER_VALUES = st.one_of(
    st.just(STATE),
    CODE,
    st.text(max_size=40),
    st.sampled_from(["", " ", "\n", "\x00", "\x1b[2J", "&", "=", "#", "+", "%", "%zz", "\u202e"]),
    st.sampled_from(["access_denied", 'bad"quote', "back\\slash", "javascript:alert(1)"]),
    st.binary(max_size=8),  # percent-encoded raw bytes, often not UTF-8
    st.integers(min_value=5_000, max_value=20_000).map(lambda size: "x" * size),
)


def _encode(pairs: list[tuple[str, str | bytes]]) -> str:
    parts = []
    for name, value in pairs:
        if isinstance(value, bytes):
            encoded_value = quote_from_bytes(value, safe="")
        else:
            encoded_value = quote(value, safe="")
        parts.append(f"{quote(name, safe='')}={encoded_value}")
    return "&".join(parts)


@st.composite
def callback_pairs(draw: st.DrawFn) -> list[tuple[str, str | bytes]]:
    """Draw the parameters of a callback query: the right ones, repeated ones and junk."""
    pairs: list[tuple[str, str | bytes]] = []
    if draw(st.booleans()):
        pairs.append(("state", STATE))
    if draw(st.booleans()):
        pairs.append(("code", draw(CODE)))
    pairs += draw(st.lists(st.tuples(_PARAMETER_NAMES, _PARAMETER_VALUES), max_size=6))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        pairs += [("pad", "1")] * draw(st.integers(min_value=40, max_value=60))
    return draw(st.permutations(pairs))


def _decoded(pairs: list[tuple[str, str | bytes]]) -> dict[str, list[str]] | None:
    """Return the parameters as a dict of lists, or None if a value is not UTF-8."""
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                return None
        params.setdefault(name, []).append(value)
    return params


def _check_outcome_invariants(outcome: CallbackOutcome) -> None:
    assert isinstance(outcome, CallbackOutcome)
    assert outcome.accepted is (outcome.ignored_reason is None)
    if outcome.accepted:
        assert (outcome.code is None) != (outcome.error is None)
    else:
        assert outcome.code is None
        assert outcome.error is None
    if outcome.code is not None:
        assert outcome.code
        assert set(outcome.code) <= VISIBLE_ASCII
        assert outcome.code not in repr(outcome)
    if outcome.error_description is not None:
        assert outcome.error_description.isprintable()
        assert len(outcome.error_description) <= 300


# Callback query strings


def test_callback_query_decisions(hardening):
    tried = 0

    @FUZZ
    @given(pairs=callback_pairs())
    def check(pairs: list[tuple[str, str | bytes]]) -> None:
        nonlocal tried
        tried += 1
        outcome = parse_callback_query(_encode(pairs), STATE)
        _check_outcome_invariants(outcome)

        params = _decoded(pairs)
        if params is None or len(pairs) > 50:
            assert outcome.ignored_reason == "unreadable query"
            return
        states = params.get("state", [])
        if len(states) > 1 and any(states):
            # Neither the first nor the last state wins: the response is not trusted.
            assert outcome.ignored_reason == "repeated state"
            return
        if states != [STATE]:
            assert not outcome.accepted
            return
        assert outcome.accepted
        codes = params.get("code", [])
        if "error" in params:
            assert outcome.error
            return
        if len(codes) == 1 and codes[0] and set(codes[0]) <= VISIBLE_ASCII:
            assert outcome.code == codes[0]
            return
        # Missing, repeated or malformed: no guess at which code was meant.
        assert outcome.code is None
        assert outcome.error == "invalid_request"
        assert outcome.missing_code

    try:
        check()
    finally:
        hardening.add("Hostile input", "callback queries", tried)


def test_callback_query_any_text(hardening):
    tried = 0

    @FUZZ
    @given(
        query=st.one_of(
            st.text(alphabet=EVERY_CHARACTER, max_size=300),
            # http.server hands the handler a request line decoded as Latin-1.
            st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")),
            st.lists(st.sampled_from(["state=", STATE, "&", "code=", "CODEabc", "%", "+", "="]))
            .map("".join),
        )
    )
    def check(query: str) -> None:
        nonlocal tried
        tried += 1
        _check_outcome_invariants(parse_callback_query(query, STATE))

    try:
        check()
    finally:
        hardening.add("Hostile input", "callback queries", tried)


# Pasted addresses

# For each part of an address: the forms the check must accept, then foreign or malformed ones.
_PARTS = {
    "scheme": (["http", "HTTP"], ["https", "javascript", "data", "file", "ftp", ""]),
    "userinfo": ([""], ["user@", "user:secret@", "localhost:12345@"]),
    "host": (
        ["localhost", "LocalHost", "127.0.0.1", "[::1]"],
        [
            "evil.example", "localhost.evil.example", "127.0.0.2", "[::ffff:127.0.0.1]", "[::1",
            "l\u043ecalhost", "0x7f000001", "", "192.0.2.1", "[fe80::1%25lo]",
        ],
    ),
    "port": ([":12345", ":0012345"], ["", ":80", ":12346", ":99999", ":abc", ":", ":-1"]),
    "path": (
        ["/callback"], ["/callback/", "/Callback", "/other", "", "//callback", "/callback/.."]
    ),
}
_FRAGMENTS = ["", "#", "#frag", "#code=x&state=y"]


@st.composite
def pasted_addresses(draw: st.DrawFn) -> tuple[str, bool, str]:
    """Draw a pasted text, whether the address check must accept it, and its query.

    Zero, one or two parts of a callback address are made foreign or
    malformed, so most examples differ from an acceptable address in one way.
    """
    broken = draw(st.sets(st.sampled_from([*_PARTS, "query", "space"]), max_size=2))
    parts = {
        name: draw(st.sampled_from(bad if name in broken else good))
        for name, (good, bad) in _PARTS.items()
    }
    query = "" if "query" in broken else (_encode(draw(callback_pairs())) or "state=")
    fragment = draw(st.sampled_from(_FRAGMENTS))
    address = (
        f"{parts['scheme']}://{parts['userinfo']}{parts['host']}{parts['port']}{parts['path']}"
        f"?{query}{fragment}"
    )
    if "space" in broken:
        position = draw(st.integers(min_value=1, max_value=len(address) - 1))
        space = draw(st.sampled_from([" ", "\n", "\t", "\r\n", "\u00a0", "\x00"]))
        address = address[:position] + space + address[position:]
    before, after = draw(st.sampled_from([("", ""), ("  ", "\n"), ("\t", " "), ("\n", "\r\n")]))
    text = before + address + after
    valid = not broken and len(text.strip()) <= 8192
    return text, valid, query


def _check_rejection(error: InvalidInputError, text: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert "CODE" not in message
    stripped = text.strip()
    if len(stripped) > len(REDIRECT_URI) + 1:
        assert stripped not in message


def test_pasted_address_checks(hardening):
    tried = 0

    @FUZZ
    @given(
        case=st.one_of(
            pasted_addresses(),
            st.text(alphabet=EVERY_CHARACTER, max_size=200).map(lambda text: (text, None, "")),
            st.sampled_from(
                [
                    "javascript:alert(document.cookie)",
                    "data:text/html,<script>alert(1)</script>",
                    "http://localhost:12345@evil.example/callback?code=CODEabcdefabcdef&state=s",
                    "http://[::1]:12345/callback?code=CODEabcdefabcdef&state=s",
                    "",
                    "   ",
                ]
            ).map(lambda text: (text, None, "")),
        )
    )
    def check(case: tuple[str, bool | None, str]) -> None:
        nonlocal tried
        tried += 1
        text, valid, query = case
        try:
            found = callback_query_from_address(text, REDIRECT_URI)
        except InvalidInputError as error:
            assert valid is not True, "a well-formed callback address was rejected"
            _check_rejection(error, text)
            return
        assert valid is not False, "a malformed or foreign address was accepted"
        if valid:
            assert found == query

        outcome = parse_callback_query(found, STATE)
        try:
            check_pasted_outcome(outcome)
        except InvalidInputError as error:
            assert not (outcome.code or outcome.error) or outcome.missing_code
            _check_rejection(error, text)
            return
        assert outcome.code or outcome.error

    try:
        check()
    finally:
        hardening.add("Hostile input", "pasted addresses", tried)


@st.composite
def hostile_callback_queries(draw: st.DrawFn, state: str) -> str:
    """Draw a query whose ``state`` is missing, repeated or wrong, or that has no usable code."""
    pairs: list[tuple[str, str | bytes]] = []
    shape = draw(st.sampled_from(["no state", "wrong state", "repeated state", "bad code"]))
    if shape == "wrong state":
        pairs.append(("state", draw(st.sampled_from([state[:-1], state + "x", STATE, " "]))))
    elif shape == "repeated state":
        pairs += [("state", state), ("state", draw(st.sampled_from([state, "other", ""])))]
    elif shape == "bad code":
        pairs.append(("state", state))
        bad_codes = draw(
            st.sampled_from([[], [""], ["CODEone1234567", "CODEtwo1234567"], ["CODE\u00e9x"]])
        )
        pairs += [("code", code) for code in bad_codes]
    if shape != "bad code":
        pairs.append(("code", draw(CODE)))
        if draw(st.booleans()):
            pairs.append(("error", "access_denied"))
    extra = st.tuples(st.sampled_from(["iss", "x"]), st.text(max_size=10))
    pairs += draw(st.lists(extra, max_size=3))
    return _encode(draw(st.permutations(pairs)))


def test_hostile_pastes_keep_login_waiting(emulator, astro_config_path, hardening):
    options = LoginOptions(
        domain="localhost", api_base_url=emulator.base_url, callback_port=0, callback_timeout_s=120
    )
    store = ConfigStore(astro_config_path)
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email="ada@example.com")
    waiting = threading.Event()
    flow.subscribe(lambda event: waiting.set() if event.authorize_url else None)
    flow.start()
    assert waiting.wait(20)
    landed = follow_login_link(flow.authorize_url, reach_callback=False)
    state = landed.query["state"]
    callback_address = landed.url.split("?", 1)[0]
    tried = 0

    @settings(FUZZ, max_examples=150)
    @given(query=hostile_callback_queries(state))
    def check(query: str) -> None:
        nonlocal tried
        tried += 1
        with pytest.raises(InvalidInputError) as caught:
            flow.deliver_redirect(f"{callback_address}?{query}")
        _check_rejection(caught.value, query)
        assert landed.query["code"] not in str(caught.value)
        assert flow.step is LoginStep.WAITING_FOR_BROWSER

    try:
        check()
        assert emulator.count("token") == 0
        flow.deliver_redirect(landed.url)
        assert flow.wait(20).email == "ada@example.com"
        assert emulator.count("token") == 1
    finally:
        flow.cancel()
        hardening.add("Hostile input", "pasted addresses", tried)


# Emails

_PLUS_EMAILS = st.from_regex(
    r"[a-z0-9._-]{1,20}\+[a-z0-9+._-]{0,12}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True
)


def _authorize_url_for(email: str) -> str:
    # The OAuth server address is only formatted into a string, never requested.
    config = AuthConfig(client_id="client", audience="audience", domain_url="http://127.0.0.1:9/")
    return authorization_url(
        config, redirect_uri=REDIRECT_URI, code_challenge="challenge", state=STATE, email=email
    )


def test_email_checks(hardening):
    tried = 0

    @FUZZ
    @given(
        text=st.one_of(
            _PLUS_EMAILS,
            st.emails(),
            st.builds(
                lambda local, host, suffix: f"{local}@{host}.{suffix}",
                st.text(alphabet=EVERY_CHARACTER, min_size=1, max_size=20),
                st.text(alphabet=EVERY_CHARACTER, min_size=1, max_size=15),
                st.sampled_from(["com", "io", "fr", "xn--p1ai"]),
            ),
            st.lists(st.sampled_from(["a", "@", ".", "+", " ", "\u00e9", "\n", "\u202e", "com"]))
            .map("".join),
            st.integers(min_value=240, max_value=400).map(lambda size: "a" * size + "@example.com"),
            st.text(alphabet=EVERY_CHARACTER, max_size=60),
        )
    )
    def check(text: str) -> None:
        nonlocal tried
        tried += 1
        try:
            email = validate_email(text)
        except InvalidInputError as error:
            assert "\n" not in str(error)
            return
        assert email == text.strip()
        assert email.count("@") == 1
        assert email.isprintable()
        assert len(email.encode("utf-8")) <= 254

        url = _authorize_url_for(email)
        assert url.isascii()
        assert " " not in url
        assert parse_qs(urlsplit(url).query)["login_hint"] == [email]

    try:
        check()
    finally:
        hardening.add("Hostile input", "emails", tried)


def test_plus_addressed_email_encoded(hardening):
    tried = 0

    @FUZZ
    @given(text=_PLUS_EMAILS)
    def check(text: str) -> None:
        nonlocal tried
        tried += 1
        email = validate_email(text)
        url = _authorize_url_for(email)
        fields = urlsplit(url).query.split("&")
        hint = next(field for field in fields if field.startswith("login_hint="))
        # A bare "+" would reach the server as a space.
        assert "+" not in hint
        assert hint == "login_hint=" + email.replace("+", "%2B").replace("@", "%40")

    try:
        check()
    finally:
        hardening.add("Hostile input", "emails", tried)


# Domains

_KNOWN_DOMAINS = ["astronomer.io", "astronomer-dev.io", "pr1234.astronomer-dev.io", "localhost"]
_DOMAIN_PREFIXES = ["", "https://", "http://", "HTTPS://", "cloud.", "https://cloud.", "user@"]
_DOMAIN_SUFFIXES = ["", "/", "/path/x", ":443", ":8080/x", ".", "?q=1", "#frag", ":", ":99999"]


@st.composite
def domain_texts(draw: st.DrawFn) -> str:
    label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,70}[a-z0-9])?", fullmatch=True)
    host = draw(
        st.one_of(
            st.sampled_from(_KNOWN_DOMAINS),
            st.lists(label, min_size=1, max_size=5).map(".".join),
            st.just("xn--bcher-kva.example"),
            st.sampled_from(
                ["b\u00fccher.example", "astronomer\u3002io", "ASTRONOMER.IO", "\u212a.io"]
            ),
            st.integers(min_value=60, max_value=140).map(lambda count: "a." * count + "io"),
            st.text(alphabet=EVERY_CHARACTER, max_size=30),
        )
    )
    prefix = draw(st.sampled_from(_DOMAIN_PREFIXES))
    suffix = draw(st.sampled_from(_DOMAIN_SUFFIXES))
    spaces = draw(st.sampled_from(["", " ", "\n", "\t"]))
    return f"{spaces}{prefix}{host}{suffix}{spaces}"


def _is_host_name(domain: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    labels = domain.split(".")
    return len(domain) <= 253 and all(
        1 <= len(label) <= 63 and set(label) <= allowed and label[0] != "-" and label[-1] != "-"
        for label in labels
    )


def test_domain_checks(hardening):
    tried = 0

    @FUZZ
    @given(text=domain_texts(), allow_unknown=st.booleans())
    def check(text: str, allow_unknown: bool) -> None:
        nonlocal tried
        tried += 1
        try:
            domain = normalize_domain(text, allow_unknown=allow_unknown)
        except InvalidInputError as error:
            assert "\n" not in str(error)
            return
        assert _is_host_name(domain)
        assert normalize_domain(domain, allow_unknown=allow_unknown) == domain
        base = urlsplit(api_base_url(domain))
        first_label, _, rest = domain.partition(".")
        assert base.scheme in ("http", "https")
        assert base.hostname in {"api." + domain, f"{first_label}.api.{rest}", "localhost"}

    try:
        check()
    finally:
        hardening.add("Hostile input", "domains", tried)


def test_api_url_checks(hardening):
    tried = 0

    @FUZZ
    @given(
        url=st.one_of(
            domain_texts(),
            st.text(alphabet=EVERY_CHARACTER, max_size=60),
            st.sampled_from(["http://[::1", "http://localhost:99999/", "https://u:p@h/", "ftp://h/"]),
        )
    )
    def check(url: str) -> None:
        nonlocal tried
        tried += 1
        try:
            base = normalize_base_url(url)
        except InvalidInputError:
            return
        parts = urlsplit(base)
        assert parts.scheme in ("http", "https")
        assert parts.hostname
        assert base.endswith("/")
        assert not base.endswith("//")
        assert "@" not in parts.netloc
        assert normalize_base_url(base) == base

    try:
        check()
    finally:
        hardening.add("Hostile input", "domains", tried)
