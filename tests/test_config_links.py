"""Symbolic links around config.yaml: a linked config, planted lock links and temporary files.

A config kept in a dotfiles repository and linked from ``~/.astro`` must be
updated at its target and stay a link, and every path to the same file must
share one lock. A link planted in place of a lock file, or under a temporary
file's name, must never redirect a write. Lock holders in these tests are real
second processes taking flock(2).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from filelock import FileLock

from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.errors import ConfigError, ConfigLockTimeoutError

DATA = Path(__file__).parent / "data" / "cli_configs"

NEW_ACCESS = "eyJhbGciOiJSUzI1NiJ9.link-access.c2ln"
NEW_LOGIN = ContextRecord(
    domain="astronomer.io",
    token=NEW_ACCESS,
    refresh_token="v1.link-refresh",
    expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc),
)
VICTIM_TEXT = b"a file that no lock or write of the config may touch\n"

# Holds flock(2) on argv[1], prints "locked", and releases it when stdin closes.
HOLD_LOCK_SCRIPT = """
import fcntl, sys
with open(sys.argv[1], "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextmanager
def lock_held_elsewhere(lock_path: Path) -> Iterator[None]:
    """Hold flock(2) on ``lock_path`` in a second process for the ``with`` block."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK_SCRIPT, str(lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout.readline() == "locked\n"
            yield
        finally:
            process.stdin.close()
            process.wait(timeout=10)


@pytest.fixture
def dotfiles(tmp_path: Path) -> Path:
    """Return a CLI-written config in a dotfiles folder, outside any ``.astro`` folder."""
    folder = tmp_path / "dotfiles"
    folder.mkdir()
    target = folder / "astro-config.yaml"
    shutil.copyfile(DATA / "cli_written.yaml", target)
    return target


def linked_store(
    tmp_path: Path, target: Path | str, name: str = "user-home", **options
) -> ConfigStore:
    """Return a store whose config.yaml is a symbolic link to ``target``."""
    config = tmp_path / name / ".astro" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.symlink_to(target)
    return ConfigStore(config, **options)


def temporary_files(*folders: Path) -> list[str]:
    return [name for folder in folders for name in os.listdir(folder) if name.endswith(".tmp")]


def test_write_through_link_replaces_target(tmp_path, dotfiles):
    store = linked_store(tmp_path, dotfiles)
    target_inode = dotfiles.stat().st_ino

    store.save_login(NEW_LOGIN)

    assert store.path.is_symlink()
    assert os.readlink(store.path) == str(dotfiles)
    # A new inode shows the target was replaced by rename, not written in place.
    assert dotfiles.stat().st_ino != target_inode
    assert f"token: Bearer {NEW_ACCESS}" in dotfiles.read_text()
    assert temporary_files(dotfiles.parent, store.path.parent) == []


def test_temporary_file_beside_target(tmp_path, dotfiles, monkeypatch):
    # A rename works only within one file system, which the target's folder
    # shares with the target and the link's folder may not.
    store = linked_store(tmp_path, dotfiles)
    renames = []
    real_replace = os.replace

    def record_replace(source, destination):
        renames.append((Path(source), Path(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", record_replace)

    store.save_login(NEW_LOGIN)

    assert len(renames) == 1
    source, destination = renames[0]
    assert source.parent == dotfiles.parent
    assert destination == dotfiles


def test_relative_link_and_chain_of_links(tmp_path, dotfiles):
    hop = tmp_path / "dotfiles" / "current.yaml"
    hop.symlink_to("astro-config.yaml")
    store = linked_store(tmp_path, os.path.relpath(hop, tmp_path / "user-home" / ".astro"))

    store.save_login(NEW_LOGIN)

    assert os.readlink(hop) == "astro-config.yaml"
    assert store.path.is_symlink()
    assert f"token: Bearer {NEW_ACCESS}" in dotfiles.read_text()
    assert store.read_context("astronomer.io").token == NEW_ACCESS


def test_linked_folder_shares_one_lock(tmp_path, dotfiles):
    # ~/.astro itself links to the dotfiles folder, so the lock beside the
    # link and the lock beside the target are one file, taken once.
    home = tmp_path / "user-home"
    home.mkdir()
    (home / ".astro").symlink_to(dotfiles.parent)
    dotfiles.rename(dotfiles.with_name("config.yaml"))
    store = ConfigStore(home / ".astro" / "config.yaml")

    store.save_login(NEW_LOGIN)

    assert sorted(os.listdir(dotfiles.parent)) == ["config.yaml", "config.yaml.lock"]


def test_locks_beside_link_and_target(tmp_path, dotfiles):
    store = linked_store(tmp_path, dotfiles)

    store.save_login(NEW_LOGIN)
    with store.renewal_lock():
        pass

    assert sorted(os.listdir(store.path.parent)) == [
        "config.yaml",
        "config.yaml.lock",
        "config.yaml.renew.lock",
    ]
    assert sorted(os.listdir(dotfiles.parent)) == [
        "astro-config.yaml",
        "astro-config.yaml.lock",
        "astro-config.yaml.renew.lock",
    ]
    assert store.renewal_lock_paths() == [
        store.path.parent / "config.yaml.renew.lock",
        dotfiles.parent / "astro-config.yaml.renew.lock",
    ]


@pytest.mark.parametrize("held", ["beside the link", "beside the target"])
def test_write_through_link_waits_for_either_lock(tmp_path, dotfiles, held):
    store = linked_store(tmp_path, dotfiles, lock_timeout_s=0.3)
    before = dotfiles.read_bytes()
    lock_path = {
        "beside the link": store.lock_path,
        "beside the target": dotfiles.with_name("astro-config.yaml.lock"),
    }[held]

    with lock_held_elsewhere(lock_path):
        with pytest.raises(ConfigLockTimeoutError) as caught:
            store.save_login(NEW_LOGIN)

    assert caught.value.path == str(lock_path)
    assert str(lock_path) in str(caught.value)
    assert dotfiles.read_bytes() == before


def test_two_links_to_one_file_share_a_lock(tmp_path, dotfiles):
    first = linked_store(tmp_path, dotfiles, name="first-home", lock_timeout_s=0.3)
    second = linked_store(tmp_path, dotfiles, name="second-home", lock_timeout_s=0.3)
    first.save_login(NEW_LOGIN)
    before = dotfiles.read_bytes()

    # A writer through the first link holds the target's lock: a writer
    # through the second link, with a different lock beside its link, waits.
    with first._config_lock():
        with pytest.raises(ConfigLockTimeoutError) as caught:
            second.save_login(dataclasses.replace(NEW_LOGIN, token="other-access"))

    assert caught.value.path == str(dotfiles.with_name("astro-config.yaml.lock"))
    assert dotfiles.read_bytes() == before


def test_renewal_through_two_links_excludes(tmp_path, dotfiles):
    first = linked_store(tmp_path, dotfiles, name="first-home")
    second = linked_store(tmp_path, dotfiles, name="second-home")

    with first.renewal_lock():
        with pytest.raises(ConfigLockTimeoutError) as caught:
            with second.renewal_lock(timeout_s=0.2):
                pytest.fail("two renewals of one file ran at once")

    assert caught.value.path == str(dotfiles.with_name("astro-config.yaml.renew.lock"))
    assert "refreshing" in str(caught.value)


def test_link_loop_rejected(tmp_path):
    config = tmp_path / "user-home" / ".astro" / "config.yaml"
    config.parent.mkdir(parents=True)
    other = config.with_name("other.yaml")
    config.symlink_to(other)
    other.symlink_to(config)
    store = ConfigStore(config)

    errors = []
    for call in (
        lambda: store.read_context("astronomer.io"),
        store.list_contexts,
        lambda: store.save_login(NEW_LOGIN),
        lambda: store.logout("astronomer.io"),
        lambda: store.renewal_lock().__enter__(),
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        errors.append(str(caught.value))

    for message in errors:
        assert message == (
            f"Cannot use {config}: it is a symbolic link that leads back to itself (a loop of "
            "links). Remove the link."
        )
    assert config.is_symlink()
    assert other.is_symlink()


@pytest.mark.parametrize("lock_name", ["config.yaml.lock", "config.yaml.renew.lock"])
@pytest.mark.parametrize("victim_exists", [True, False], ids=["existing", "missing"])
def test_planted_lock_link_not_followed(tmp_path, lock_name, victim_exists):
    store = ConfigStore(tmp_path / "user-home" / ".astro" / "config.yaml")
    store.path.parent.mkdir(parents=True)
    shutil.copyfile(DATA / "cli_written.yaml", store.path)
    before = store.path.read_bytes()
    victim = tmp_path / "victim.txt"
    if victim_exists:
        victim.write_bytes(VICTIM_TEXT)
        victim.chmod(0o644)
    lock_path = store.path.with_name(lock_name)
    lock_path.symlink_to(victim)

    with pytest.raises(ConfigError) as caught:
        if lock_name == "config.yaml.lock":
            store.save_login(NEW_LOGIN)
        else:
            with store.renewal_lock():
                pytest.fail("the renewal lock was taken through a link")

    message = str(caught.value)
    assert message.startswith(f"Cannot lock {lock_path}: it is a symbolic link (to {victim})")
    assert "\n" not in message
    assert lock_path.is_symlink()
    assert store.path.read_bytes() == before
    if victim_exists:
        assert victim.read_bytes() == VICTIM_TEXT
        assert victim.stat().st_mode & 0o777 == 0o644
    else:
        assert not victim.exists()


def test_planted_lock_hard_link_not_locked(tmp_path):
    store = ConfigStore(tmp_path / "user-home" / ".astro" / "config.yaml")
    store.path.parent.mkdir(parents=True)
    shutil.copyfile(DATA / "cli_written.yaml", store.path)
    victim = store.path.with_name("victim.txt")
    victim.write_bytes(VICTIM_TEXT)
    victim.chmod(0o644)
    os.link(victim, store.lock_path)

    with pytest.raises(ConfigError, match="it is a hard link to a file with another name"):
        store.save_login(NEW_LOGIN)

    assert victim.read_bytes() == VICTIM_TEXT
    assert victim.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("victim_exists", [True, False], ids=["existing", "missing"])
def test_filelock_refuses_link_in_race_window(tmp_path, victim_exists):
    # The lstat check in hold_lock leaves a window before filelock opens the
    # file. filelock's own open must then refuse the link: O_NOFOLLOW, no
    # O_CREAT through the link, no truncation.
    victim = tmp_path / "victim.txt"
    if victim_exists:
        victim.write_bytes(VICTIM_TEXT)
    lock_path = tmp_path / "config.yaml.lock"
    lock_path.symlink_to(victim)

    lock = FileLock(lock_path, timeout=0.2, mode=0o600, preserve_lock_file=True)
    with pytest.raises(OSError):
        lock.acquire()

    assert lock_path.is_symlink()
    if victim_exists:
        assert victim.read_bytes() == VICTIM_TEXT
    else:
        assert not victim.exists()


def test_temporary_names_unpredictable(tmp_path, monkeypatch):
    store = ConfigStore(tmp_path / "user-home" / ".astro" / "config.yaml")
    store.path.parent.mkdir(parents=True)
    shutil.copyfile(DATA / "cli_written.yaml", store.path)
    renamed = []
    real_replace = os.replace

    def record_replace(source, destination):
        renamed.append(os.path.basename(source))
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", record_replace)

    for number in range(5):
        store.save_login(dataclasses.replace(NEW_LOGIN, token=f"access-{number}"))

    assert len(renamed) == 5
    assert len(set(renamed)) == 5
    for name in renamed:
        # 16 hex digits from the secrets module: 64 bits that cannot be guessed.
        assert re.fullmatch(r"\.config\.yaml\.[0-9a-f]{16}\.tmp", name), name


def test_temporary_name_collision_not_followed(tmp_path, monkeypatch):
    # Even a guessed name only makes the exclusive create fail and pick again.
    store = ConfigStore(tmp_path / "user-home" / ".astro" / "config.yaml")
    store.path.parent.mkdir(parents=True)
    shutil.copyfile(DATA / "cli_written.yaml", store.path)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM_TEXT)
    guessed = "0123456789abcdef"
    planted = store.path.with_name(f".config.yaml.{guessed}.tmp")
    planted.symlink_to(victim)
    real_token_hex = secrets.token_hex
    answers = iter([guessed])

    def first_guessed(size):
        return next(answers, None) or real_token_hex(size)

    monkeypatch.setattr(secrets, "token_hex", first_guessed)

    store.save_login(NEW_LOGIN)

    assert victim.read_bytes() == VICTIM_TEXT
    assert planted.is_symlink()
    assert store.read_context("astronomer.io").token == NEW_ACCESS


def test_stale_temporary_files_removed(tmp_path):
    store = ConfigStore(tmp_path / "user-home" / ".astro" / "config.yaml")
    store.path.parent.mkdir(parents=True)
    shutil.copyfile(DATA / "cli_written.yaml", store.path)
    folder = store.path.parent
    stale = folder / ".config.yaml.00112233445566ff.tmp"
    stale.write_text("token: Bearer left-by-a-killed-writer\n")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(VICTIM_TEXT)
    link_like_temporary = folder / ".config.yaml.ffeeddccbbaa0099.tmp"
    link_like_temporary.symlink_to(victim)
    other_file = folder / ".config.yaml.notours.tmp"
    other_file.write_text("kept\n")

    store.save_login(NEW_LOGIN)

    assert not stale.exists()
    # Only regular files with the exact pattern go, and links are not followed.
    assert link_like_temporary.is_symlink()
    assert victim.read_bytes() == VICTIM_TEXT
    assert other_file.read_text() == "kept\n"
