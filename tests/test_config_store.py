"""Tests of the config store shared with the Astro CLI, against real files in tmp_path.

The fixture files in data/cli_configs are written the way the Go CLI writes
config.yaml (4-space indents, lower-case keys, viper's defaults) or the way a
user edits it (mixed-case keys, comments, 2-space indents). Lock tests start a
real second Python process that takes flock(2) on the same lock file.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from astro_jupyter.config_store import ConfigStore, ContextRecord, config_path
from astro_jupyter.errors import (
    ConfigError,
    ConfigLockTimeoutError,
    InvalidInputError,
    NotLoggedInError,
)

DATA = Path(__file__).parent / "data" / "cli_configs"

CLI_ACCESS = "eyJhbGciOiJSUzI1NiJ9.fixture-access.c2ln"
CLI_REFRESH = "v1.fixture-refresh-token"
HAND_ACCESS = "eyJhbGciOiJSUzI1NiJ9.fixture-hand-access.c2ln"
NEW_ACCESS = "eyJhbGciOiJSUzI1NiJ9.new-access.c2ln"
NEW_REFRESH = "v1.new-refresh-token"
NEW_EXPIRY = datetime(2027, 1, 2, 3, 4, 5, 678900, tzinfo=timezone.utc)

needs_non_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores file permissions, so the permission error cannot happen",
)

# Holds flock(2) on argv[1], prints "locked", waits argv[3] seconds (or until
# stdin closes when it is negative), prints the SHA-256 of argv[2] as it was
# just before the release, then releases the lock by closing the file.
HOLD_LOCK_SCRIPT = """
import fcntl, hashlib, sys, time
lock_path, config_path, hold_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(lock_path, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    print("locked", flush=True)
    if hold_s >= 0:
        time.sleep(hold_s)
    else:
        sys.stdin.read()
    with open(config_path, "rb") as config:
        print(hashlib.sha256(config.read()).hexdigest(), flush=True)
"""

# Prints "busy" when another open file holds flock(2) on argv[1], else "free".
TRY_LOCK_SCRIPT = """
import fcntl, sys
with open(sys.argv[1], "a") as lock:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("busy")
    else:
        print("free")
"""


def make_store(tmp_path: Path, fixture: str | None = None, **options: float) -> ConfigStore:
    """Return a store whose HOME is tmp_path/user-home, with a copy of ``fixture`` as its file."""
    home = tmp_path / "user-home"
    store = ConfigStore(environ={"HOME": str(home)}, **options)
    if fixture is not None:
        store.path.parent.mkdir(parents=True)
        shutil.copyfile(DATA / fixture, store.path)
    return store


def new_login(store: ConfigStore, domain: str = "astronomer.io") -> ContextRecord:
    """Return the stored login of ``domain`` with new tokens and expiry."""
    record = store.read_context(domain)
    assert record is not None
    return dataclasses.replace(
        record, token=NEW_ACCESS, refresh_token=NEW_REFRESH, expires_at=NEW_EXPIRY
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftover_temporary_files(*folders: Path) -> list[str]:
    return [name for folder in folders for name in os.listdir(folder) if name.endswith(".tmp")]


def read_line(process: subprocess.Popen, timeout_s: float) -> bytes:
    """Read one line from an unbuffered stdout pipe, waiting at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        assert ready, f"no complete line from the second process within {timeout_s} s"
        chunk = os.read(process.stdout.fileno(), 1)
        assert chunk, "the second process closed its output"
        line += chunk
    return line


@contextmanager
def lock_holder(lock_path: Path, config: Path, hold_s: float) -> Iterator[subprocess.Popen]:
    """Run HOLD_LOCK_SCRIPT in a second process and return once it holds the lock."""
    command = [sys.executable, "-c", HOLD_LOCK_SCRIPT, str(lock_path), str(config), str(hold_s)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
    ) as process:
        try:
            assert read_line(process, timeout_s=10.0) == b"locked\n"
            yield process
        finally:
            process.stdin.close()
            process.wait(timeout=10.0)


def try_lock(lock_path: Path) -> str:
    """Return "busy" or "free" as a second process finds the lock on ``lock_path``."""
    result = subprocess.run(
        [sys.executable, "-c", TRY_LOCK_SCRIPT, str(lock_path)],
        capture_output=True,
        text=True,
        timeout=10.0,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def umask_002() -> Iterator[None]:
    previous = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(previous)


def test_config_path_under_home(tmp_path):
    assert config_path({"HOME": str(tmp_path)}) == tmp_path / ".astro" / "config.yaml"


def test_config_path_under_astro_home(tmp_path):
    environ = {"HOME": str(tmp_path / "user-home"), "ASTRO_HOME": str(tmp_path / "astro")}

    assert config_path(environ) == tmp_path / "astro" / ".astro" / "config.yaml"


def test_config_path_ignores_empty_astro_home(tmp_path):
    environ = {"HOME": str(tmp_path), "ASTRO_HOME": ""}

    assert config_path(environ) == tmp_path / ".astro" / "config.yaml"


def test_astro_home_store_writes_there(tmp_path):
    environ = {"HOME": str(tmp_path / "user-home"), "ASTRO_HOME": str(tmp_path / "astro")}
    store = ConfigStore(environ=environ)

    store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    assert store.path == tmp_path / "astro" / ".astro" / "config.yaml"
    assert store.read_context("astronomer.io").token == NEW_ACCESS
    assert not (tmp_path / "user-home").exists()


def test_read_cli_written_file(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    records = {record.domain: record for record in store.list_contexts()}

    assert list(records) == ["astronomer-dev.io", "astronomer.io", "localhost"]
    production = records["astronomer.io"]
    assert production.token == CLI_ACCESS
    assert production.refresh_token == CLI_REFRESH
    assert production.expires_at == datetime(2026, 12, 4, 21, 4, 5, 123456, tzinfo=timezone.utc)
    assert production.user_email == "user@example.com"
    assert production.organization == "cm3organization000000000001"
    assert production.organization_product == "HOSTED"
    assert production.workspace == "cm3workspace00000000000001"
    assert production.last_used_workspace == "cm3workspace00000000000001"
    assert production.in_vault is False
    assert production.is_logged_in is True
    assert records["astronomer-dev.io"].expires_at == datetime(
        2026, 11, 30, 9, 15, 0, 500000, tzinfo=timezone.utc
    )


def test_read_signed_out_context(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    local = store.read_context("localhost")

    assert local == ContextRecord(domain="localhost")
    assert local.is_logged_in is False


def test_read_hand_edited_file(tmp_path):
    store = make_store(tmp_path, "hand_edited.yaml")

    record = store.read_context("astronomer.io")

    assert store.current_domain() == "astronomer.io"
    assert record.token == HAND_ACCESS
    assert record.refresh_token == "v1.fixture-hand-refresh-token"
    # 22:04:05.123456789 at +01:00, with the nanoseconds cut to microseconds.
    assert record.expires_at == datetime(2026, 12, 4, 21, 4, 5, 123456, tzinfo=timezone.utc)
    assert record.user_email == "hand-user@example.com"
    assert [r.domain for r in store.list_contexts()] == ["astronomer.io", "astronomer-stage.io"]


def test_read_context_missing_domain(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    assert store.read_context("astronomer-stage.io") is None


def test_read_context_matches_domain_case(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    assert store.read_context("Astronomer.IO").token == CLI_ACCESS


@pytest.mark.parametrize("text", [None, "", "\n", "# nothing yet\n"])
def test_missing_or_empty_file_has_no_contexts(tmp_path, text):
    store = make_store(tmp_path)
    if text is not None:
        store.path.parent.mkdir(parents=True)
        store.path.write_text(text)

    assert store.list_contexts() == []
    assert store.read_context("astronomer.io") is None
    assert store.current_domain() is None


def test_read_does_not_create_folder(tmp_path):
    store = make_store(tmp_path)

    store.list_contexts()

    assert not store.path.parent.exists()


def test_vault_placeholder_reads_signed_out(tmp_path):
    store = make_store(tmp_path, "vault_placeholder.yaml")

    record = store.read_context("astronomer.io")

    assert record.in_vault is True
    assert record.token is None
    assert record.refresh_token is None
    assert record.is_logged_in is False
    assert record.user_email == "user@example.com"


def test_both_empty_reads_signed_out_not_vault(tmp_path):
    store = make_store(tmp_path, "vault_placeholder.yaml")

    record = store.read_context("astronomer-dev.io")

    assert record.in_vault is False
    assert record.token is None
    assert record.is_logged_in is False


def test_bare_scheme_with_refresh_not_vault(tmp_path):
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(
        'contexts:\n    astronomer_io:\n        token: "Bearer "\n        refreshtoken: v1.r\n'
    )

    record = store.read_context("astronomer.io")

    assert record.in_vault is False
    assert record.token is None
    assert record.refresh_token == "v1.r"


def test_save_login_replaces_vault_placeholder(tmp_path):
    store = make_store(tmp_path, "vault_placeholder.yaml")

    store.save_login(dataclasses.replace(new_login(store), in_vault=False))

    record = store.read_context("astronomer.io")
    assert record.in_vault is False
    assert record.token == NEW_ACCESS
    assert f"        token: Bearer {NEW_ACCESS}\n" in store.path.read_text()


def test_save_login_rejects_vault_record(tmp_path):
    store = make_store(tmp_path, "vault_placeholder.yaml")
    before = store.path.read_bytes()

    with pytest.raises(InvalidInputError, match="vault"):
        store.save_login(ContextRecord(domain="astronomer.io", in_vault=True))

    assert store.path.read_bytes() == before


@pytest.mark.parametrize("token", [None, ""])
def test_save_login_never_writes_bare_scheme(tmp_path, token):
    store = make_store(tmp_path)

    store.save_login(ContextRecord(domain="astronomer.io", token=token))

    text = store.path.read_text()
    assert '        token: ""\n' in text
    assert "Bearer" not in text


def test_current_domain_from_file(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    assert store.current_domain() == "astronomer.io"


def test_astro_domain_overrides_file(tmp_path):
    home = tmp_path / "user-home"
    environ = {"HOME": str(home), "ASTRO_DOMAIN": "https://cloud.astronomer-dev.io/"}
    store = ConfigStore(environ=environ)
    store.path.parent.mkdir(parents=True)
    shutil.copyfile(DATA / "cli_written.yaml", store.path)

    assert store.current_domain() == "astronomer-dev.io"


def test_empty_astro_domain_is_ignored(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    store._environ = {**store._environ, "ASTRO_DOMAIN": " "}

    assert store.current_domain() == "astronomer.io"


def test_invalid_astro_domain_raises(tmp_path):
    store = ConfigStore(environ={"HOME": str(tmp_path), "ASTRO_DOMAIN": "not a domain"})

    with pytest.raises(InvalidInputError, match="ASTRO_DOMAIN"):
        store.current_domain()


def test_environ_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("ASTRO_HOME", raising=False)
    monkeypatch.setenv("ASTRO_DOMAIN", "astronomer-stage.io")

    store = ConfigStore()

    assert store.path == tmp_path / ".astro" / "config.yaml"
    assert store.current_domain() == "astronomer-stage.io"


def test_save_login_round_trip_cli_file(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    original = store.path.read_text()
    replacements = {
        "        expiresin: 2026-12-04T21:04:05.123456789Z\n": (
            "        expiresin: 2027-01-02T03:04:05.6789Z\n"
        ),
        f"        refreshtoken: {CLI_REFRESH}\n": f"        refreshtoken: {NEW_REFRESH}\n",
        f"        token: Bearer {CLI_ACCESS}\n": f"        token: Bearer {NEW_ACCESS}\n",
    }
    expected = original
    for old, new in replacements.items():
        assert expected.count(old) == 1
        expected = expected.replace(old, new)

    store.save_login(new_login(store))

    assert store.path.read_text() == expected


def test_save_login_round_trip_hand_edited_file(tmp_path):
    store = make_store(tmp_path, "hand_edited.yaml")
    original = store.path.read_text().splitlines(keepends=True)

    store.save_login(new_login(store))

    written = store.path.read_text().splitlines(keepends=True)
    assert len(written) == len(original)
    # The keys this package writes are renamed to lower case in place. Values
    # that did not change keep their text and quotes.
    renamed = {
        "Context: astronomer.io  # the domain `astro` uses by default\n": (
            "context: astronomer.io  # the domain `astro` uses by default\n"
        ),
        "    Domain: astronomer.io\n": "    domain: astronomer.io\n",
        "    RefreshToken: 'v1.fixture-hand-refresh-token'\n": f"    refreshtoken: {NEW_REFRESH}\n",
        "    ExpiresIn: 2026-12-04T22:04:05.123456789+01:00\n": (
            "    expiresin: 2027-01-02T03:04:05.6789Z\n"
        ),
    }
    for index, (before, after) in enumerate(zip(original, written, strict=True)):
        if before.startswith("    Token: "):
            assert after.startswith(f"    token: Bearer {NEW_ACCESS} "), index
            assert after.endswith("   # from astro login\n"), index
        else:
            assert after == renamed.get(before, before), index


def test_save_login_unchanged_record_leaves_file(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.stat()

    store.save_login(store.read_context("astronomer.io"))

    after = store.path.stat()
    assert after.st_ino == before.st_ino
    assert after.st_mtime_ns == before.st_mtime_ns


def test_save_login_keeps_unknown_context_keys(tmp_path):
    store = make_store(tmp_path, "hand_edited.yaml")

    store.save_login(new_login(store))

    assert "    note: keep me    # a key that only this user knows\n" in store.path.read_text()


def test_save_login_adds_context(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    original = store.path.read_text()
    record = ContextRecord(
        domain="astronomer-stage.io",
        token=NEW_ACCESS,
        refresh_token=NEW_REFRESH,
        expires_at=NEW_EXPIRY,
        user_email="stage@example.com",
    )

    store.save_login(record, make_current=False)

    new_context = (
        "    astronomer-stage_io:\n"
        "        domain: astronomer-stage.io\n"
        "        expiresin: 2027-01-02T03:04:05.6789Z\n"
        '        last_used_workspace: ""\n'
        '        organization: ""\n'
        '        organization_product: ""\n'
        f"        refreshtoken: {NEW_REFRESH}\n"
        f"        token: Bearer {NEW_ACCESS}\n"
        "        user_email: stage@example.com\n"
        '        workspace: ""\n'
    )
    # The new context goes after the last one, localhost.
    anchor = "disable_astro_run:"
    assert original.count(anchor) == 1
    expected = original.replace(anchor, new_context + anchor)
    assert store.path.read_text() == expected
    assert store.read_context("astronomer-stage.io") == record


def test_save_login_make_current(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    store.save_login(new_login(store, "astronomer-dev.io"))

    assert store.current_domain() == "astronomer-dev.io"
    assert "\ncontext: astronomer-dev.io\n" in store.path.read_text()


def test_save_login_new_file(tmp_path, umask_002):
    store = make_store(tmp_path)
    record = ContextRecord(
        domain="astronomer.io",
        token=NEW_ACCESS,
        refresh_token=NEW_REFRESH,
        expires_at=datetime(2026, 12, 4, 21, 4, 5, tzinfo=timezone.utc),
        user_email="user@example.com",
        organization="cm3org",
        organization_product="HOSTED",
        workspace="cm3ws",
        last_used_workspace="cm3ws",
    )

    store.save_login(record)

    assert store.path.read_text() == (
        "context: astronomer.io\n"
        "contexts:\n"
        "    astronomer_io:\n"
        "        domain: astronomer.io\n"
        "        expiresin: 2026-12-04T21:04:05Z\n"
        "        last_used_workspace: cm3ws\n"
        "        organization: cm3org\n"
        "        organization_product: HOSTED\n"
        f"        refreshtoken: {NEW_REFRESH}\n"
        f"        token: Bearer {NEW_ACCESS}\n"
        "        user_email: user@example.com\n"
        "        workspace: cm3ws\n"
    )
    assert store.read_context("astronomer.io") == record
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o775


def test_save_login_expiry_none_writes_go_zero_time(tmp_path):
    store = make_store(tmp_path)

    store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    assert "        expiresin: 0001-01-01T00:00:00Z\n" in store.path.read_text()
    assert store.read_context("astronomer.io").expires_at is None


def test_save_login_converts_expiry_to_utc(tmp_path):
    store = make_store(tmp_path)
    plus_two = timezone(timedelta(hours=2))
    record = ContextRecord(
        domain="astronomer.io", expires_at=datetime(2026, 12, 4, 23, 4, 5, tzinfo=plus_two)
    )

    store.save_login(record)

    assert "        expiresin: 2026-12-04T21:04:05Z\n" in store.path.read_text()


@pytest.mark.parametrize(
    ("token", "refresh_token"),
    [
        ("Bearer abc", None),
        ("abc def", None),
        ("abc", "v1 refresh"),
        ("abc\n", None),
    ],
)
def test_save_login_rejects_malformed_tokens(tmp_path, token, refresh_token):
    store = make_store(tmp_path)
    record = ContextRecord(domain="astronomer.io", token=token, refresh_token=refresh_token)

    with pytest.raises(InvalidInputError) as caught:
        store.save_login(record)

    assert "abc" not in str(caught.value)
    assert not store.path.exists()


def test_naive_expiry_rejected():
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        ContextRecord(domain="astronomer.io", expires_at=datetime(2026, 12, 4))


def test_mixed_case_keys_renamed_in_place(tmp_path):
    store = make_store(tmp_path, "hand_edited.yaml")
    original = store.path.read_text().splitlines()

    store.save_login(new_login(store))

    written = store.path.read_text().splitlines()
    token_line = next(i for i, line in enumerate(original) if line.startswith("    Token:"))
    expiry_line = next(i for i, line in enumerate(original) if line.startswith("    ExpiresIn:"))
    assert written[token_line].startswith("    token: Bearer ")
    assert written[expiry_line].startswith("    expiresin: ")
    assert not any(line.lstrip().startswith(("Token:", "ExpiresIn:")) for line in written)


def test_duplicate_case_spellings_merged(tmp_path):
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(
        "contexts:\n"
        "  astronomer_io:\n"
        "    Token: Bearer old-one\n"
        "    domain: astronomer.io\n"
        "    token: Bearer old-two\n"
    )

    store.update_context("astronomer.io", token=NEW_ACCESS)

    assert store.path.read_text() == (
        "contexts:\n"
        "  astronomer_io:\n"
        f"    token: Bearer {NEW_ACCESS}\n"
        "    domain: astronomer.io\n"
    )


def test_update_context_changes_named_fields_only(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    original = store.path.read_text()

    store.update_context("astronomer.io", workspace="cm3other", last_used_workspace="cm3other")

    expected = original.replace(
        "        last_used_workspace: cm3workspace00000000000001\n",
        "        last_used_workspace: cm3other\n",
    ).replace(
        "        workspace: cm3workspace00000000000001\n", "        workspace: cm3other\n"
    )
    assert store.path.read_text() == expected


def test_update_context_after_refresh(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    store.update_context(
        "astronomer.io", token=NEW_ACCESS, refresh_token=NEW_REFRESH, expires_at=NEW_EXPIRY
    )

    record = store.read_context("astronomer.io")
    assert record.token == NEW_ACCESS
    assert record.refresh_token == NEW_REFRESH
    assert record.expires_at == NEW_EXPIRY
    assert record.user_email == "user@example.com"


@pytest.mark.parametrize("field", ["colour", "domain", "in_vault", "source"])
def test_update_context_unknown_field(tmp_path, field):
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.read_bytes()

    with pytest.raises(TypeError, match=field):
        store.update_context("astronomer.io", **{field: "x"})

    assert store.path.read_bytes() == before


def test_update_context_missing_context(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.read_bytes()

    with pytest.raises(NotLoggedInError, match="astronomer-stage.io"):
        store.update_context("astronomer-stage.io", workspace="cm3ws")

    assert store.path.read_bytes() == before


def test_update_context_missing_file(tmp_path):
    store = make_store(tmp_path)

    with pytest.raises(NotLoggedInError):
        store.update_context("astronomer.io", workspace="cm3ws")

    assert not store.path.parent.exists()


def test_set_current_context_switches(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    original = store.path.read_text()

    store.set_current_context("astronomer-dev.io")

    expected = original.replace("context: astronomer.io\n", "context: astronomer-dev.io\n")
    assert store.path.read_text() == expected
    assert store.current_domain() == "astronomer-dev.io"


def test_set_current_context_ignores_case(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    store.set_current_context(" LocalHost ")

    assert "\ncontext: localhost\n" in store.path.read_text()
    assert store.current_domain() == "localhost"


def test_set_current_context_keeps_comment(tmp_path):
    store = make_store(tmp_path, "hand_edited.yaml")
    original = store.path.read_text().splitlines()

    store.set_current_context("astronomer-stage.io")

    lines = store.path.read_text().splitlines()
    # ruamel.yaml may move the comment left by one space to fit the longer value.
    assert lines[1].startswith("context: astronomer-stage.io ")
    assert lines[1].endswith(" # the domain `astro` uses by default")
    assert lines[:1] + lines[2:] == original[:1] + original[2:]


def test_set_current_context_unchanged_leaves_file(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.stat()

    store.set_current_context("astronomer.io")

    after = store.path.stat()
    assert after.st_ino == before.st_ino
    assert after.st_mtime_ns == before.st_mtime_ns


def test_set_current_context_missing_context(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.read_bytes()

    with pytest.raises(NotLoggedInError) as caught:
        store.set_current_context("astronomer-stage.io")

    message = str(caught.value)
    assert "astronomer-stage.io" in message
    assert str(store.path) in message
    assert "known contexts: astronomer-dev.io, astronomer.io, localhost" in message
    assert caught.value.path == str(store.path)
    assert store.path.read_bytes() == before


def test_set_current_context_missing_file(tmp_path):
    store = make_store(tmp_path)

    with pytest.raises(NotLoggedInError, match="known contexts: none"):
        store.set_current_context("astronomer.io")

    assert not store.path.parent.exists()


def test_set_current_context_ignores_credentials_file(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    store.credentials_path.write_text('{"astronomer-stage.io": {"token": "t"}}')
    before = store.path.read_bytes()

    with pytest.raises(NotLoggedInError, match="astronomer-stage.io"):
        store.set_current_context("astronomer-stage.io")

    assert store.path.read_bytes() == before


def test_logout_current_domain(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    original = store.path.read_text()

    store.logout("astronomer.io")

    expected = original
    for old, new in {
        "context: astronomer.io\n": 'context: ""\n',
        f"        refreshtoken: {CLI_REFRESH}\n": '        refreshtoken: ""\n',
        f"        token: Bearer {CLI_ACCESS}\n": '        token: ""\n',
        "        user_email: user@example.com\n": '        user_email: ""\n',
    }.items():
        assert expected.count(old) == 1
        expected = expected.replace(old, new)
    assert store.path.read_text() == expected
    assert store.current_domain() is None
    assert store.read_context("astronomer.io").is_logged_in is False


def test_logout_other_domain_keeps_current(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    store.logout("astronomer-dev.io")

    assert store.current_domain() == "astronomer.io"
    assert store.read_context("astronomer.io").token == CLI_ACCESS
    dev = store.read_context("astronomer-dev.io")
    assert dev.token is None
    assert dev.refresh_token is None
    assert dev.user_email is None
    assert dev.workspace == "cm3devworkspace0000000001"


def test_logout_missing_file_creates_nothing(tmp_path):
    store = make_store(tmp_path)

    store.logout("astronomer.io")

    assert not store.path.parent.exists()


def test_record_repr_masks_tokens():
    record = ContextRecord(domain="astronomer.io", token=NEW_ACCESS, refresh_token=NEW_REFRESH)

    text = repr(record)

    assert NEW_ACCESS not in text
    assert NEW_REFRESH not in text
    assert "token=<set>" in text
    assert "refresh_token=<set>" in text
    assert "domain='astronomer.io'" in text


def test_logs_name_path_not_tokens(tmp_path, caplog):
    store = make_store(tmp_path, "cli_written.yaml")
    caplog.set_level(logging.DEBUG, logger="astro_jupyter")

    store.save_login(new_login(store))

    messages = [record.getMessage() for record in caplog.records]
    assert f"read {store.path}" in messages
    assert f"wrote {store.path}" in messages
    for secret in (CLI_ACCESS, CLI_REFRESH, NEW_ACCESS, NEW_REFRESH):
        assert secret not in caplog.text


def test_invalid_yaml_error_names_path_and_line(tmp_path):
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text("context: astronomer.io\ncontexts:\n    astronomer_io: domain: x\n")
    before = store.path.read_bytes()

    with pytest.raises(ConfigError) as read_error:
        store.read_context("astronomer.io")
    with pytest.raises(ConfigError) as write_error:
        store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    for caught in (read_error, write_error):
        message = str(caught.value)
        assert message.startswith(f"Cannot parse {store.path} at line 3: ")
        assert "It was not changed." in message
        assert caught.value.path == str(store.path)
    assert store.path.read_bytes() == before
    assert leftover_temporary_files(store.path.parent) == []


def test_duplicate_key_error_hides_values(tmp_path):
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(
        f"contexts:\n    astronomer_io:\n        token: Bearer {CLI_ACCESS}\n"
        f"        token: Bearer {NEW_ACCESS}\n"
    )

    with pytest.raises(ConfigError) as caught:
        store.read_context("astronomer.io")

    assert "line 4" in str(caught.value)
    assert "'token' appears twice" in str(caught.value)
    assert CLI_ACCESS not in str(caught.value)
    assert NEW_ACCESS not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- astronomer.io\n", "the top level is a list"),
        ("just a string\n", "the top level is a string"),
        ("contexts:\n- astronomer_io\n", "'contexts' is a"),
        ("contexts:\n    astronomer_io: signed-in\n", "the context astronomer_io is a"),
    ],
)
def test_wrong_structure_not_overwritten(tmp_path, text, expected):
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(text)

    with pytest.raises(ConfigError, match=expected):
        store.read_context("astronomer.io")
    with pytest.raises(ConfigError, match=expected):
        store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    assert store.path.read_text() == text


def test_not_utf8_not_overwritten(tmp_path):
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b"context: astronomer.io\xff\n")

    with pytest.raises(ConfigError, match="not valid UTF-8"):
        store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    assert store.path.read_bytes() == b"context: astronomer.io\xff\n"


def test_directory_path_error(tmp_path):
    folder = tmp_path / "config.yaml"
    folder.mkdir()
    store = ConfigStore(folder)

    with pytest.raises(ConfigError) as read_error:
        store.list_contexts()
    with pytest.raises(ConfigError) as write_error:
        store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    for caught in (read_error, write_error):
        assert str(caught.value).startswith(f"Cannot read {folder}: it is a folder")
    assert os.listdir(folder) == []


@needs_non_root
def test_unwritable_folder_error(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    store.list_contexts()  # creates the lock file while the folder is writable
    before = store.path.read_bytes()
    store.path.parent.chmod(0o555)
    try:
        with pytest.raises(ConfigError) as caught:
            store.save_login(new_login(store))
    finally:
        store.path.parent.chmod(0o755)

    assert f"Cannot write {store.path}: permission denied" in str(caught.value)
    assert "chmod u+w" in str(caught.value)
    assert store.path.read_bytes() == before


@needs_non_root
def test_unreadable_file_error(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    store.path.chmod(0o000)
    try:
        with pytest.raises(ConfigError) as caught:
            store.list_contexts()
    finally:
        store.path.chmod(0o600)

    assert f"Cannot read {store.path}: permission denied" in str(caught.value)


@pytest.mark.parametrize("mode", [0o400, 0o444])
def test_read_only_file_not_replaced(tmp_path, mode):
    # Runs as any account, root included: root may write any file, but a file
    # without a write bit was made read-only on purpose.
    store = make_store(tmp_path, "cli_written.yaml")
    store.path.chmod(mode)
    before = store.path.read_bytes()
    try:
        with pytest.raises(ConfigError) as caught:
            store.save_login(new_login(store))
    finally:
        mode_after = store.path.stat().st_mode & 0o777
        store.path.chmod(0o600)

    assert "the file is read-only for this account" in str(caught.value)
    assert store.path.read_bytes() == before
    assert mode_after == mode


def test_folder_permission_error_message(tmp_path, monkeypatch):
    # Root ignores a read-only folder, so the error the kernel would raise for
    # a normal user is raised where the temporary file is created.
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.read_bytes()

    real_open = os.open

    def deny_new_files(name, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(name).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny_new_files)

    with pytest.raises(ConfigError) as caught:
        store.save_login(new_login(store))

    message = str(caught.value)
    assert message.startswith(f"Cannot write {store.path}: permission denied in the folder ")
    assert f"chmod u+w {store.path.parent}" in message
    assert "or set ASTRO_HOME to another folder" in message
    assert store.path.read_bytes() == before


def test_folder_in_place_of_file_parent(tmp_path):
    blocker = tmp_path / "user-home" / ".astro"
    blocker.parent.mkdir()
    blocker.write_text("not a folder")
    store = make_store(tmp_path)

    with pytest.raises(ConfigError, match="a file is in its place"):
        store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    assert blocker.read_text() == "not a folder"


def test_write_sets_mode_0600_on_existing_0644(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    store.path.chmod(0o644)

    store.save_login(new_login(store))

    assert store.path.stat().st_mode & 0o777 == 0o600


def test_write_replaces_file_atomically(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")
    inode_before = store.path.stat().st_ino

    store.save_login(new_login(store))

    assert store.path.stat().st_ino != inode_before
    assert sorted(os.listdir(store.path.parent)) == ["config.yaml", "config.yaml.lock"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_old_file(tmp_path, monkeypatch, failing):
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.read_bytes()
    inode_before = store.path.stat().st_ino
    record = new_login(store)

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, failing, fail)

    with pytest.raises(ConfigError, match="The file was not changed"):
        store.save_login(record)

    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert store.path.stat().st_ino == inode_before
    assert leftover_temporary_files(store.path.parent) == []


def test_interrupted_write_removes_temporary_file(tmp_path, monkeypatch):
    store = make_store(tmp_path, "cli_written.yaml")
    before = store.path.read_bytes()
    record = new_login(store)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)

    with pytest.raises(KeyboardInterrupt):
        store.save_login(record)

    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert leftover_temporary_files(store.path.parent) == []


def test_symlinked_config_stays_link(tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "astro-config.yaml"
    shutil.copyfile(DATA / "cli_written.yaml", target)
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.symlink_to(target)

    store.save_login(new_login(store))

    assert store.path.is_symlink()
    assert os.readlink(store.path) == str(target)
    assert f"token: Bearer {NEW_ACCESS}" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o600
    assert leftover_temporary_files(dotfiles, store.path.parent) == []


def test_dangling_symlink_rejected(tmp_path):
    # Creating the target would put a file of tokens where the user may not
    # expect one, such as a dotfiles checkout that is not there yet.
    target = tmp_path / "dotfiles" / "astro-config.yaml"
    target.parent.mkdir()
    store = make_store(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.symlink_to(target)

    with pytest.raises(ConfigError) as read_error:
        store.read_context("astronomer.io")
    with pytest.raises(ConfigError) as write_error:
        store.save_login(ContextRecord(domain="astronomer.io", token=NEW_ACCESS))

    for caught in (read_error, write_error):
        message = str(caught.value)
        assert message == (
            f"Cannot use {store.path}: it is a symbolic link to {target}, which does not "
            "exist. Create that file or remove the link."
        )
    assert not target.exists()
    assert store.path.is_symlink()


def test_write_waits_for_lock_of_other_process(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml", lock_timeout_s=10.0)
    record = new_login(store)
    original = store.path.read_bytes()

    with lock_holder(store.lock_path, store.path, hold_s=1.0) as holder:
        started = time.monotonic()
        store.save_login(record)
        waited_s = time.monotonic() - started
        holder.wait(timeout=10.0)
        seen_by_holder = holder.stdout.read().decode().strip()

    # The file was unchanged up to the moment the other process released the
    # lock, so the write happened after the release.
    assert seen_by_holder == sha256(original)
    assert waited_s > 0.5
    assert store.read_context("astronomer.io").token == NEW_ACCESS


def test_write_lock_timeout(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml", lock_timeout_s=0.3)
    record = new_login(store)
    original = store.path.read_bytes()

    with lock_holder(store.lock_path, store.path, hold_s=-1):
        started = time.monotonic()
        with pytest.raises(ConfigLockTimeoutError) as caught:
            store.save_login(record)
        waited_s = time.monotonic() - started

    message = str(caught.value)
    assert str(store.lock_path) in message
    assert "maybe `astro`" in message
    assert caught.value.path == str(store.lock_path)
    assert waited_s >= 0.3
    assert store.path.read_bytes() == original
    assert leftover_temporary_files(store.path.parent) == []


def test_renewal_lock_excludes_other_process(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    with store.renewal_lock():
        assert try_lock(store.renewal_lock_path) == "busy"
        # The renewal lock is separate: a config write can still go through.
        assert try_lock(store.lock_path) == "free"

    assert try_lock(store.renewal_lock_path) == "free"
    assert store.renewal_lock_path == store.path.parent / "config.yaml.renew.lock"


def test_renewal_lock_timeout(tmp_path):
    store = make_store(tmp_path, "cli_written.yaml")

    with lock_holder(store.renewal_lock_path, store.path, hold_s=-1):
        with pytest.raises(ConfigLockTimeoutError) as caught:
            with store.renewal_lock(timeout_s=0.2):
                pytest.fail("the renewal lock was taken while another process held it")

    assert str(store.renewal_lock_path) in str(caught.value)
    assert "refreshing" in str(caught.value)


def test_renewal_lock_released_on_error(tmp_path):
    store = make_store(tmp_path)

    with pytest.raises(RuntimeError):
        with store.renewal_lock():
            raise RuntimeError("refresh failed")

    assert try_lock(store.renewal_lock_path) == "free"


def test_mapping_key_context_skipped(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "contexts:\n  ? {a: 1}\n  : {domain: x.example, token: Bearer t}\n"
        "  localhost:\n    domain: localhost\n",
        encoding="utf-8",
    )
    domains = [record.domain for record in ConfigStore(path).list_contexts()]
    assert domains == ["localhost"]
