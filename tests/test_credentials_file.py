"""Tests of the credentials.json fallback: an older CLI design's login file, read, never written.

credentials.json sits next to config.yaml and maps each domain to
``{"token", "refreshtoken", "user_email", "expires_at"}``. It is used only for a
domain whose context in config.yaml is missing or has no ``token`` key. Every
test checks that the file keeps its bytes and its mode.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import log_in_by_link

from astro_jupyter import config_access, credentials_file
from astro_jupyter import config_store as config_store_module
from astro_jupyter.config_cache import SETTLE_WINDOW_NS
from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.credentials import CredentialSource, get_token, whoami
from astro_jupyter.credentials_file import CredentialsEntry

EMAIL = "ada@example.com"
ACCESS = "eyJhbGciOiJSUzI1NiJ9.credentials-file-access.c2ln"
REFRESH = "v1.credentials-file-refresh-token"
EXPIRY_TEXT = "2026-12-04T22:04:05.123456789+01:00"
EXPIRY = datetime(2026, 12, 4, 21, 4, 5, 123456, tzinfo=timezone.utc)

CONFIG_WITHOUT_LOCALHOST = """\
context: localhost
contexts:
    astronomer_io:
        domain: astronomer.io
        expiresin: 2026-12-04T21:04:05.123456789Z
        refreshtoken: v1.fixture-refresh-token
        token: Bearer eyJhbGciOiJSUzI1NiJ9.fixture-access.c2ln
        user_email: user@example.com
"""

# A context as the earlier design left it: everything but the secrets.
CONFIG_WITHOUT_TOKEN_KEY = """\
context: localhost
contexts:
    localhost:
        domain: localhost
        last_used_workspace: cm3localworkspacealpha0001
        organization: cm3localorganization000001
        organization_product: HOSTED
        user_email: config-user@example.com
        workspace: cm3localworkspacealpha0001
"""


@pytest.fixture
def store(astro_config_path: Path) -> ConfigStore:
    astro_config_path.parent.mkdir(parents=True)
    return ConfigStore(astro_config_path)


def write_credentials(store: ConfigStore, data: object, *, mode: int = 0o600) -> bytes:
    """Write ``data`` (JSON, or str/bytes as they are) to credentials.json and return its bytes."""
    if isinstance(data, bytes):
        content = data
    elif isinstance(data, str):
        content = data.encode()
    else:
        content = json.dumps(data, indent=4).encode()
    store.credentials_path.write_bytes(content)
    os.chmod(store.credentials_path, mode)
    return content


def entry(**fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "token": f"Bearer {ACCESS}",
        "refreshtoken": REFRESH,
        "user_email": EMAIL,
        "expires_at": EXPIRY_TEXT,
    }
    values.update(fields)
    return values


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


def wait_until_settled() -> None:
    """Wait until files written now are old enough for the parse caches to keep them."""
    time.sleep(2 * SETTLE_WINDOW_NS / 1e9)


def test_missing_config_reads_entry(store):
    content = write_credentials(store, {"localhost": entry()})

    record = store.read_context("localhost")

    assert record.token == ACCESS
    assert record.refresh_token == REFRESH
    assert record.user_email == EMAIL
    assert record.expires_at == EXPIRY
    assert record.source == "credentials.json"
    assert record.is_logged_in
    assert store.credentials_path.read_bytes() == content
    assert mode_of(store.credentials_path) == 0o600
    assert not store.path.exists()


def test_missing_context_reads_entry(store):
    store.path.write_text(CONFIG_WITHOUT_LOCALHOST)
    write_credentials(store, {"localhost": entry()})

    domain, record = store.read_login(None)

    assert domain == "localhost"
    assert record.token == ACCESS
    assert record.source == "credentials.json"
    assert store.path.read_text() == CONFIG_WITHOUT_LOCALHOST


def test_context_without_token_key_merges(store):
    store.path.write_text(CONFIG_WITHOUT_TOKEN_KEY)
    write_credentials(store, {"localhost": entry()})

    record = store.read_context("localhost")

    assert record.token == ACCESS
    assert record.refresh_token == REFRESH
    assert record.expires_at == EXPIRY
    assert record.user_email == EMAIL
    assert record.organization == "cm3localorganization000001"
    assert record.organization_product == "HOSTED"
    assert record.workspace == "cm3localworkspacealpha0001"
    assert record.last_used_workspace == "cm3localworkspacealpha0001"
    assert record.source == "credentials.json"


def test_entry_without_email_keeps_config_email(store):
    store.path.write_text(CONFIG_WITHOUT_TOKEN_KEY)
    write_credentials(store, {"localhost": entry(user_email=None)})

    assert store.read_context("localhost").user_email == "config-user@example.com"


@pytest.mark.parametrize("token", [ACCESS, f"Bearer {ACCESS}", f"bearer {ACCESS}", f" {ACCESS} "])
def test_token_scheme_and_spaces_removed(store, token):
    write_credentials(store, {"localhost": entry(token=token)})

    assert store.read_context("localhost").token == ACCESS


def test_entry_key_normalised_like_domains(store):
    write_credentials(store, {"https://cloud.Astronomer.io/": entry()})

    assert store.read_context("astronomer.io").token == ACCESS


def test_blank_token_key_stays_signed_out(store):
    store.path.write_text(
        "contexts:\n"
        "    localhost:\n"
        "        domain: localhost\n"
        '        token: ""\n'
        '        user_email: ""\n'
    )
    write_credentials(store, {"localhost": entry()})

    record = store.read_context("localhost")

    assert record.token is None
    assert record.is_logged_in is False
    assert record.source == "config.yaml"


def test_vault_placeholder_not_replaced(store):
    store.path.write_text(
        "contexts:\n"
        "    localhost:\n"
        "        domain: localhost\n"
        '        refreshtoken: ""\n'
        '        token: "Bearer "\n'
    )
    write_credentials(store, {"localhost": entry()})

    record = store.read_context("localhost")

    assert record.in_vault is True
    assert record.token is None
    assert record.source == "config.yaml"


def test_config_token_wins(store):
    store.path.write_text(CONFIG_WITHOUT_LOCALHOST)
    write_credentials(store, {"astronomer.io": entry()})

    record = store.read_context("astronomer.io")

    assert record.token == "eyJhbGciOiJSUzI1NiJ9.fixture-access.c2ln"
    assert record.source == "config.yaml"


def test_entry_without_tokens_ignored(store):
    write_credentials(store, {"localhost": entry(token="", refreshtoken=None)})

    assert store.read_context("localhost") is None


def test_list_contexts_merges_missing_token_key(store):
    store.path.write_text(CONFIG_WITHOUT_TOKEN_KEY)
    write_credentials(store, {"localhost": entry(), "astronomer-dev.io": entry()})

    records = store.list_contexts()

    assert [record.domain for record in records] == ["localhost"]
    assert records[0].token == ACCESS
    assert records[0].source == "credentials.json"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'["localhost"]', "top level is an array"),
        (b'"token"', "top level is a string"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (json.dumps({"localhost": "Bearer x"}).encode(), "is a string, not an object"),
        (json.dumps({"localhost": entry(token=5)}).encode(), "'token' is a number"),
        (json.dumps({"localhost": entry(refreshtoken=["v1.x"])}).encode(), "'refreshtoken' is an"),
        (json.dumps({"localhost": entry(user_email=True)}).encode(), "'user_email' is a boolean"),
        (json.dumps({"localhost": entry(expires_at=1767225600)}).encode(), "'expires_at' is a"),
        (json.dumps({"localhost": entry(token="two words")}).encode(), "contains whitespace"),
    ],
)
def test_malformed_file_ignored_with_warning(store, caplog, content, problem):
    write_credentials(store, content, mode=0o644)

    with caplog.at_level(logging.WARNING, logger="astro_jupyter"):
        record = store.read_context("localhost")

    assert record is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(store.credentials_path) in warnings[0]
    assert problem in warnings[0]
    assert ACCESS not in caplog.text
    assert REFRESH not in caplog.text
    assert store.credentials_path.read_bytes() == content
    assert mode_of(store.credentials_path) == 0o644


def test_folder_in_place_of_file_ignored(store, caplog):
    store.credentials_path.mkdir()

    with caplog.at_level(logging.WARNING, logger="astro_jupyter"):
        assert store.read_context("localhost") is None

    assert "it is a folder" in caplog.text
    assert str(store.credentials_path) in caplog.text


def test_bad_entry_keeps_other_entries(store, caplog):
    write_credentials(store, {"localhost": entry(token=5), "astronomer.io": entry()})

    with caplog.at_level(logging.WARNING, logger="astro_jupyter"):
        assert store.read_context("localhost") is None
        assert store.read_context("astronomer.io").token == ACCESS

    assert "the entry for localhost" in caplog.text


def test_invalid_domain_key_ignored(store, caplog):
    write_credentials(store, {"not a domain!": entry()})

    with caplog.at_level(logging.WARNING, logger="astro_jupyter"):
        assert store.read_context("localhost") is None

    assert "'not a domain!'" in caplog.text
    assert "is not an Astro domain" in caplog.text


def test_bad_expiry_warns_and_reads_unknown(store, caplog):
    write_credentials(store, {"localhost": entry(expires_at="tomorrow")})

    with caplog.at_level(logging.WARNING, logger="astro_jupyter"):
        record = store.read_context("localhost")

    assert record.token == ACCESS
    assert record.expires_at is None
    assert "not an RFC 3339 timestamp" in caplog.text


def test_warning_once_per_file_version(store, caplog):
    write_credentials(store, b"{not json")

    with caplog.at_level(logging.WARNING, logger="astro_jupyter"):
        for _ in range(3):
            store.read_context("localhost")
        assert len(caplog.records) == 1

        write_credentials(store, b"[1, 2]")
        store.read_context("localhost")

    assert len(caplog.records) == 2
    assert "top level is an array" in caplog.records[1].getMessage()


def test_unchanged_files_parse_nothing(store, monkeypatch):
    store.path.write_text(CONFIG_WITHOUT_TOKEN_KEY)
    write_credentials(store, {"localhost": entry()})
    wait_until_settled()
    first = store.read_context("localhost")

    reads: list[str] = []

    def count_read(path: Path) -> str | None:
        reads.append(str(path))
        return original_read_text(path)

    original_read_text = config_access.read_text
    monkeypatch.setattr(config_access, "read_text", count_read)
    monkeypatch.setattr(credentials_file, "read_text", count_read)

    for _ in range(5):
        assert store.read_context("localhost") == first
    assert reads == []

    write_credentials(store, {"localhost": entry(user_email="grace@example.com")})
    assert store.read_context("localhost").user_email == "grace@example.com"
    assert reads == [str(store.credentials_path)]


def test_stats_only_needed_files(store, monkeypatch):
    store.path.write_text(CONFIG_WITHOUT_LOCALHOST)
    write_credentials(store, {"localhost": entry()})
    wait_until_settled()
    store.read_context("localhost")
    store.read_context("astronomer.io")

    stats: list[Path] = []
    original = config_store_module.file_signature

    def count_signature(path: Path):
        stats.append(path)
        return original(path)

    monkeypatch.setattr(config_store_module, "file_signature", count_signature)
    monkeypatch.setattr(credentials_file, "file_signature", count_signature)

    store.read_context("astronomer.io")
    assert stats == [store.path]

    stats.clear()
    store.read_context("localhost")
    assert stats == [store.path, store.credentials_path]


def test_save_login_writes_source_nowhere(store):
    content = write_credentials(store, {"localhost": entry()})
    record = store.read_context("localhost")

    store.save_login(record)

    text = store.path.read_text()
    assert "source" not in text
    assert "credentials.json" not in text
    assert f"        token: Bearer {ACCESS}\n" in text
    saved = store.read_context("localhost")
    assert saved.source == "config.yaml"
    assert saved.token == ACCESS
    assert store.credentials_path.read_bytes() == content


def test_update_context_creates_context(store):
    store.path.write_text(CONFIG_WITHOUT_LOCALHOST)
    content = write_credentials(store, {"localhost": entry()})
    new_expiry = datetime(2027, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    store.update_context(
        "localhost", token="eyJ.new-access.sig", refresh_token="v1.new", expires_at=new_expiry
    )

    record = store.read_context("localhost")
    assert record.source == "config.yaml"
    assert record.token == "eyJ.new-access.sig"
    assert record.refresh_token == "v1.new"
    assert record.expires_at == new_expiry
    assert record.user_email == EMAIL
    assert store.current_domain() == "localhost"
    assert store.path.read_text().startswith(CONFIG_WITHOUT_LOCALHOST)
    assert store.credentials_path.read_bytes() == content


def test_update_context_fills_token_key(store):
    store.path.write_text(CONFIG_WITHOUT_TOKEN_KEY)
    content = write_credentials(store, {"localhost": entry()})

    store.update_context("localhost", workspace="cm3localworkspacebeta00001")

    record = store.read_context("localhost")
    assert record.source == "config.yaml"
    assert record.token == ACCESS
    assert record.refresh_token == REFRESH
    assert record.expires_at == EXPIRY
    assert record.workspace == "cm3localworkspacebeta00001"
    assert record.organization == "cm3localorganization000001"
    assert store.credentials_path.read_bytes() == content


def test_logout_signs_out_credentials_login(store):
    store.path.write_text(CONFIG_WITHOUT_LOCALHOST)
    content = write_credentials(store, {"localhost": entry()})

    store.logout("localhost")

    record = store.read_context("localhost")
    assert record.token is None
    assert record.refresh_token is None
    assert record.source == "config.yaml"
    assert store.current_domain() is None
    assert '        token: ""\n' in store.path.read_text()
    assert store.credentials_path.read_bytes() == content
    assert mode_of(store.credentials_path) == 0o600


def test_reprs_hide_tokens(store):
    write_credentials(store, {"localhost": entry()})
    record = store.read_context("localhost")
    parsed = CredentialsEntry(domain="localhost", token=ACCESS, refresh_token=REFRESH)

    for text in (repr(record), repr(parsed)):
        assert ACCESS not in text
        assert REFRESH not in text
    assert "source='credentials.json'" in repr(record)
    assert "token=<set>" in repr(parsed)


def test_invalid_source_rejected():
    with pytest.raises(ValueError, match="Invalid source"):
        ContextRecord(domain="localhost", source="keychain")


# Refreshes against the emulator


def issued_login(emulator, folder: Path) -> ContextRecord:
    """Log in to the emulator with a scratch config in ``folder`` and return the saved login."""
    scratch = ConfigStore(folder / "config.yaml")
    log_in_by_link(emulator, scratch, email=EMAIL)
    record = scratch.read_context("localhost")
    assert record is not None
    return record


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@pytest.mark.usefixtures("emulator_settings")
@pytest.mark.parametrize("config", [None, CONFIG_WITHOUT_LOCALHOST, CONFIG_WITHOUT_TOKEN_KEY])
def test_refresh_writes_config_only(emulator, store, tmp_path, config):
    issued = issued_login(emulator, tmp_path / "scratch")
    if config is not None:
        store.path.write_text(config)
    content = write_credentials(
        store,
        {
            "localhost": entry(
                token=f"Bearer {issued.token}",
                refreshtoken=issued.refresh_token,
                expires_at=rfc3339(datetime.now(timezone.utc) + timedelta(minutes=1)),
            )
        },
    )

    token = get_token("localhost", store=store)

    assert emulator.count("refresh") == 1
    saved = store.read_context("localhost")
    assert saved.source == "config.yaml"
    assert token == saved.token
    assert token != issued.token
    assert saved.refresh_token != issued.refresh_token
    assert saved.expires_at > datetime.now(timezone.utc) + timedelta(minutes=50)
    assert saved.user_email == EMAIL
    assert store.credentials_path.read_bytes() == content
    assert mode_of(store.credentials_path) == 0o600
    if config == CONFIG_WITHOUT_TOKEN_KEY:
        assert saved.organization == "cm3localorganization000001"
    if config is not None:
        assert store.path.read_text().startswith(config.split("    localhost:")[0])

    assert get_token("localhost", store=store) == token
    assert emulator.count("refresh") == 1


@pytest.mark.usefixtures("emulator_settings")
def test_fresh_credentials_login_sends_nothing(emulator, store):
    expires_at = datetime.now(timezone.utc) + timedelta(hours=1)
    write_credentials(store, {"localhost": entry(expires_at=rfc3339(expires_at))})
    store.path.write_text("context: localhost\n")

    assert get_token(store=store) == ACCESS
    identity = whoami(store=store)

    assert identity.email == EMAIL
    assert identity.refreshable
    assert emulator.requests == []
    assert identity.source is CredentialSource.CREDENTIALS_FILE
    assert "credentials.json" in identity.source.describe()
