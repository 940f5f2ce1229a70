"""Tests that a login and a refresh here leave config.yaml as the Astro CLI would.

Each ``<name>.yaml`` in data/cli_configs is written the way the Go CLI writes
config.yaml: 4-space indents, viper's lower-case keys and defaults, several
contexts. ``<name>.after_login.yaml`` is the file the CLI would write after
``astro login localhost``, and ``<name>.after_refresh.yaml`` the file after a
refresh of the localhost token. A test copies the fixture in, logs in or
refreshes against the emulator over loopback HTTP, and compares the result
with the expected file key by key and line by line.

Values that the emulator decides appear in the expected files as
``${ACCESS_TOKEN}``, ``${REFRESH_TOKEN}`` and ``${EXPIRES_AT}``. The fixture
ids ``cm3localorganization000001``, ``cm3localworkspacealpha0001`` and
``cm3localworkspacebeta00001`` stand for the emulator's organization and its
workspaces Alpha and Beta, and are replaced by their real ids in both files.

The file is then read the way the CLI reads it: a plain YAML parser with every
key lower-cased, as viper does.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import log_in_by_link
from ruamel.yaml import YAML

import astro_jupyter
from astro_jupyter.astro_api import list_workspaces
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.errors import InvalidInputError, NotLoggedInError
from astro_jupyter.http_client import HttpClient
from astro_jupyter.jwt_claims import read_claims

DATA = Path(__file__).parent / "data" / "cli_configs"

EMAIL = "ada@example.com"
# The emulator's default lifetime of access tokens, in seconds.
ACCESS_TOKEN_TTL_S = 3600
EXPIRY_TOLERANCE = timedelta(minutes=1)

FIXTURE_ORGANIZATION = "cm3localorganization000001"
FIXTURE_WORKSPACES = {"Alpha": "cm3localworkspacealpha0001", "Beta": "cm3localworkspacebeta00001"}
# The localhost login in the fixtures, replaced by emulator tokens before a refresh.
FIXTURE_LOCAL_ACCESS = "eyJhbGciOiJSUzI1NiJ9.fixture-local-access.c2ln"
FIXTURE_LOCAL_REFRESH = "v1.fixture-local-refresh-token"

# Placeholders whose lines the key-by-key checks compare by meaning.
DYNAMIC = ("${ACCESS_TOKEN}", "${REFRESH_TOKEN}", "${EXPIRES_AT}")
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


@dataclass(frozen=True)
class Case:
    """One CLI-written fixture and how the emulator and a refresh treat it.

    ``localhost_expiry`` is the expiry text of the localhost login in the
    fixture, or None when the fixture has no refreshable localhost login.
    ``refresh_error`` is then the text of the expected NotLoggedInError.
    """

    name: str
    product: str
    workspaces: tuple[str, ...]
    localhost_expiry: str | None
    refresh_error: str | None = None

    def __str__(self) -> str:
        return self.name


CASES = [
    # An expired login of an organization the emulator does not know, so the
    # session check falls back to the first organization of the user.
    Case("cli_contexts", "HOSTED", ("Alpha",), "2026-11-30T09:15:00.25Z"),
    # A mixed-case ExpiresIn with nanoseconds and an offset, renamed in place.
    Case("cli_expiresin_offset", "HOSTED", ("Alpha",), "2026-12-04T23:04:05.987654321+01:00"),
    # Several workspaces: the last used one is selected again.
    Case("cli_last_used_workspace", "HYBRID", ("Alpha", "Beta"), "2026-11-30T09:15:00Z"),
    # As `astro logout` leaves it: blank token and email, refresh token kept.
    Case(
        "cli_logged_out",
        "HOSTED",
        ("Alpha", "Beta"),
        None,
        "Not logged in to Astro domain localhost;",
    ),
    Case("cli_without_localhost", "HOSTED", ("Alpha",), None, "has no context for it"),
    # The newer CLI's vault placeholder: token "Bearer " and no refresh token.
    Case("cli_vault_localhost", "HOSTED", ("Alpha",), None, "kept in the Astro CLI's vault"),
]
REFRESHABLE = [case for case in CASES if case.localhost_expiry is not None]
NOT_REFRESHABLE = [case for case in CASES if case.localhost_expiry is None]

pytestmark = pytest.mark.usefixtures("emulator_settings")


@pytest.fixture
def store(astro_config_path: Path) -> ConfigStore:
    astro_config_path.parent.mkdir(parents=True)
    return ConfigStore(astro_config_path)


# Reading the file as the CLI does


def viper_view(value: Any) -> Any:
    """Return ``value`` with every mapping key lower-cased, as viper reads a config."""
    if isinstance(value, dict):
        return {str(key).lower(): viper_view(item) for key, item in value.items()}
    if isinstance(value, list):
        return [viper_view(item) for item in value]
    return value


def read_as_cli(text: str) -> dict[str, Any]:
    """Parse config text with a plain YAML parser, every scalar a string, keys lower-cased."""
    return viper_view(YAML(typ="base", pure=True).load(text))


def astro_auth_token(text: str) -> str:
    """Return what ``astro auth token`` prints: the current context's token without ``Bearer ``."""
    config = read_as_cli(text)
    context = config["contexts"][config["context"].replace(".", "_")]
    return context["token"].removeprefix("Bearer ")


# The emulator


def seed_emulator(emulator, case: Case) -> dict[str, str]:
    """Add the user's organization and workspaces, and map each fixture id to the emulator's id."""
    organization = emulator.add_organization(
        "Local Org", product=case.product, workspaces=case.workspaces
    )
    emulator.add_user(EMAIL, organizations=(organization,))
    with HttpClient(timeout_s=10) as http:
        workspaces = list_workspaces(
            http, emulator.base_url, emulator.mint_access_token(EMAIL), organization
        )
    ids = {FIXTURE_ORGANIZATION: organization}
    for workspace in workspaces:
        ids[FIXTURE_WORKSPACES[workspace.name]] = workspace.id
    return ids


def new_tokens(emulator, before: set[str]) -> tuple[list[str], list[str]]:
    """Return the access tokens and refresh tokens the emulator issued since ``before``."""
    access_tokens, refresh_tokens = [], []
    for secret in emulator.issued_secrets() - before:
        try:
            claims = read_claims(secret)
        except InvalidInputError:
            claims = None
        if claims is not None:
            # Id tokens are JWTs too, but their audience is the client id.
            if claims.get("aud") == emulator.audience:
                access_tokens.append(secret)
            continue
        try:
            emulator.revoked(secret)
        except KeyError:
            continue  # an authorization code or a PKCE verifier
        refresh_tokens.append(secret)
    return access_tokens, refresh_tokens


# Comparing with the expected file


def with_ids(text: str, ids: dict[str, str]) -> str:
    for fixture_id, real_id in ids.items():
        text = text.replace(fixture_id, real_id)
    return text


def split_localhost(lines: list[str]) -> tuple[list[str], list[str]]:
    """Return the lines outside the localhost context, and the lines of its block."""
    if "    localhost:\n" not in lines:
        return lines, []
    start = lines.index("    localhost:\n")
    end = start + 1
    while end < len(lines) and lines[end].startswith("        "):
        end += 1
    return lines[:start] + lines[end:], lines[start:end]


def line_key(line: str) -> str:
    return line.split(":", 1)[0]


def assert_like_expected(
    actual_text: str,
    expected_text: str,
    *,
    access_token: str,
    refresh_token: str,
    expires_around: datetime,
) -> None:
    """Assert that ``actual_text`` is the expected file, with the emulator's values filled in."""
    actual_outside, actual_block = split_localhost(actual_text.splitlines(keepends=True))
    expected_outside, expected_block = split_localhost(expected_text.splitlines(keepends=True))

    # Outside the touched context, every line is byte-identical.
    assert actual_outside == expected_outside

    # Inside it, the keys are in the expected order, so a mixed-case key
    # such as ExpiresIn was renamed in place.
    assert [line_key(line) for line in actual_block] == [
        line_key(line) for line in expected_block
    ]
    for actual_line, expected_line in zip(actual_block, expected_block, strict=True):
        if not any(placeholder in expected_line for placeholder in DYNAMIC):
            assert actual_line == expected_line

    # Key by key, as the CLI reads them.
    actual = read_as_cli(actual_text)
    expected = read_as_cli(expected_text)
    assert actual.keys() == expected.keys()
    for key in expected:
        if key != "contexts":
            assert actual[key] == expected[key], key
    assert actual["contexts"].keys() == expected["contexts"].keys()
    for name, context in expected["contexts"].items():
        if name != "localhost":
            assert actual["contexts"][name] == context, name

    local = actual["contexts"]["localhost"]
    expected_local = expected["contexts"]["localhost"]
    assert local.keys() == expected_local.keys()
    assert local["token"] == f"Bearer {access_token}"
    assert local["refreshtoken"] == refresh_token
    assert RFC3339_UTC.match(local["expiresin"]), local["expiresin"]
    expires_at = datetime.fromisoformat(local["expiresin"].replace("Z", "+00:00"))
    assert abs(expires_at - expires_around) < EXPIRY_TOLERANCE
    for key in (
        "domain",
        "user_email",
        "organization",
        "organization_product",
        "workspace",
        "last_used_workspace",
    ):
        assert local[key] == expected_local[key], key


def go_timestamp_like(template: str, moment: datetime) -> str:
    """Format ``moment`` as Go would in ``template``'s offset and fraction length."""
    offset = re.search(r"([+-])(\d{2}):(\d{2})$", template)
    zone = timezone.utc
    if offset:
        minutes = int(offset.group(2)) * 60 + int(offset.group(3))
        zone = timezone(timedelta(minutes=-minutes if offset.group(1) == "-" else minutes))
    local = moment.astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = re.search(r"\.(\d+)", template)
    if fraction:
        nanoseconds = f"{local.microsecond:06d}000"
        text += "." + nanoseconds[: len(fraction.group(1))]
    return text + ("Z" if not offset else offset.group(0))


# Login


@pytest.mark.parametrize("case", CASES, ids=str)
def test_login_writes_cli_file(emulator, store, case):
    ids = seed_emulator(emulator, case)
    store.path.write_text(with_ids((DATA / f"{case.name}.yaml").read_text(), ids))
    before = emulator.issued_secrets()

    result = log_in_by_link(emulator, store, email=EMAIL)
    logged_in_at = datetime.now(timezone.utc)

    access_tokens, refresh_tokens = new_tokens(emulator, before)
    assert len(access_tokens) == 1
    assert len(refresh_tokens) == 1
    written = store.path.read_text()
    assert_like_expected(
        written,
        with_ids((DATA / f"{case.name}.after_login.yaml").read_text(), ids),
        access_token=access_tokens[0],
        refresh_token=refresh_tokens[0],
        expires_around=logged_in_at + timedelta(seconds=ACCESS_TOKEN_TTL_S),
    )

    # `astro auth token` prints the token that get_token() returns.
    assert astro_auth_token(written) == astro_jupyter.get_token()
    assert astro_jupyter.get_token() == access_tokens[0]

    # `astro workspace list` uses the current context's organization and workspace.
    config = read_as_cli(written)
    assert config["context"] == "localhost"
    current = config["contexts"]["localhost"]
    assert current["organization"] == result.organization.id
    assert result.workspace is not None
    assert current["workspace"] == result.workspace.id
    assert astro_jupyter.whoami().workspace == result.workspace.id


# Refresh


@pytest.mark.parametrize("case", REFRESHABLE, ids=str)
def test_refresh_writes_cli_file(emulator, store, tmp_path, case):
    scratch = ConfigStore(tmp_path / "scratch" / "config.yaml")
    log_in_by_link(emulator, scratch, email=EMAIL)
    issued = scratch.read_context("localhost")
    near_expiry = go_timestamp_like(
        case.localhost_expiry, datetime.now(timezone.utc) + timedelta(minutes=1)
    )
    fixture = (DATA / f"{case.name}.yaml").read_text()
    for old, new in (
        (FIXTURE_LOCAL_ACCESS, issued.token),
        (FIXTURE_LOCAL_REFRESH, issued.refresh_token),
        (case.localhost_expiry, near_expiry),
    ):
        assert fixture.count(old) == 1
        fixture = fixture.replace(old, new)
    store.path.write_text(fixture)
    before = emulator.issued_secrets()

    token = astro_jupyter.get_token("localhost")
    refreshed_at = datetime.now(timezone.utc)

    assert emulator.count("refresh") == 1
    access_tokens, refresh_tokens = new_tokens(emulator, before)
    assert access_tokens == [token]
    assert len(refresh_tokens) == 1
    assert token != issued.token
    written = store.path.read_text()
    assert_like_expected(
        written,
        (DATA / f"{case.name}.after_refresh.yaml").read_text(),
        access_token=token,
        refresh_token=refresh_tokens[0],
        expires_around=refreshed_at + timedelta(seconds=ACCESS_TOKEN_TTL_S),
    )
    local = read_as_cli(written)["contexts"]["localhost"]
    assert local["token"].removeprefix("Bearer ") == token


@pytest.mark.parametrize("case", NOT_REFRESHABLE, ids=str)
def test_refresh_rejects_signed_out(emulator, store, case):
    shutil.copyfile(DATA / f"{case.name}.yaml", store.path)
    before = store.path.read_bytes()

    with pytest.raises(NotLoggedInError) as caught:
        astro_jupyter.get_token("localhost")

    assert case.refresh_error in str(caught.value)
    assert "%astro_login localhost" in str(caught.value)
    assert emulator.requests == []
    assert store.path.read_bytes() == before


# The newer CLI's vault


def test_vault_placeholder_sends_no_request(emulator, store):
    shutil.copyfile(DATA / "cli_vault_localhost.yaml", store.path)
    before = store.path.read_bytes()
    assert store.read_context("localhost").in_vault

    with pytest.raises(NotLoggedInError, match="vault") as from_get_token:
        astro_jupyter.get_token()
    with pytest.raises(NotLoggedInError, match="vault") as from_whoami:
        astro_jupyter.whoami()

    # Not one request reached the emulator, so none carried the bare "Bearer ".
    assert emulator.requests == []
    for caught in (from_get_token, from_whoami):
        assert "kept in the Astro CLI's vault" in str(caught.value)
        assert "to share one through config.yaml" in str(caught.value)
    assert store.path.read_bytes() == before


def test_login_replaces_vault_placeholder(emulator, store):
    ids = seed_emulator(emulator, CASES[-1])
    store.path.write_text(with_ids((DATA / "cli_vault_localhost.yaml").read_text(), ids))

    log_in_by_link(emulator, store, email=EMAIL)

    record = store.read_context("localhost")
    assert record.in_vault is False
    assert record.is_logged_in
    assert record.refresh_token
    local = read_as_cli(store.path.read_text())["contexts"]["localhost"]
    assert local["token"] == f"Bearer {record.token}"
    assert local["refreshtoken"] == record.refresh_token
    # The other context stays in the vault: its placeholder is not rewritten.
    assert store.read_context("astronomer.io").in_vault
    assert '        token: "Bearer "\n' in store.path.read_text()
    assert astro_jupyter.get_token() == record.token
