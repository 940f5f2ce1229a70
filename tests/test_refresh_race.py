"""Tests of token refreshes and config reads shared by separate Python processes.

Every process here is a real interpreter started with ``subprocess``, so the
renewal lock (an ``flock`` on ``config.yaml.renew.lock``) and the parse cache
are tested across process boundaries, as notebook kernels and the Astro CLI
use them. Processes print a SHA-256 of the token they got, never the token.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from ruamel.yaml import YAML

from astro_jupyter.config_cache import SETTLE_WINDOW_NS
from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.credentials import get_token

EMAIL = "ada@example.com"
RACER_COUNT = 16

# Bounds on the waits. Starting 16 interpreters that import requests and
# ruamel.yaml takes a few seconds on 2 cores, so these leave a wide margin.
READY_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 60.0
START_POLL_INTERVAL_S = 0.002
HTTP_TIMEOUT_S = 10.0

# Each racer imports everything get_token() needs, reports that it is ready by
# creating its ready file, waits for the start file, calls get_token() once and
# prints the SHA-256 of the token.
RACER_SOURCE = """
import hashlib
import sys
import time
from pathlib import Path

import astro_jupyter
import astro_jupyter.credentials

ready_file = Path(sys.argv[1])
start_file = Path(sys.argv[2])
wait_s = float(sys.argv[3])
poll_interval_s = float(sys.argv[4])

ready_file.touch()
deadline = time.monotonic() + wait_s
while not start_file.exists():
    if time.monotonic() > deadline:
        sys.exit(f"The start file {start_file} did not appear within {wait_s} s.")
    time.sleep(poll_interval_s)

token = astro_jupyter.get_token()
print(hashlib.sha256(token.encode()).hexdigest(), flush=True)
"""

# Saves the token read from stdin with a new ConfigStore, which replaces the file by
# an atomic rename.
STORE_WRITER_SOURCE = """
import sys
from datetime import datetime, timedelta, timezone

from astro_jupyter.config_store import ConfigStore

token = sys.stdin.readline().strip()
expires_at = datetime.now(timezone.utc) + timedelta(hours=1)
ConfigStore().update_context("localhost", token=token, expires_at=expires_at)
"""

# Replaces the old token with the new one (both read from stdin) by rewriting
# config.yaml in place, as the Go CLI writes it. The inode stays the same, and so
# does the size when the tokens have the same length.
IN_PLACE_WRITER_SOURCE = """
import sys

from astro_jupyter.config_store import config_path

old_token = sys.stdin.readline().strip()
new_token = sys.stdin.readline().strip()
path = config_path()
text = path.read_text(encoding="utf-8")
if old_token not in text:
    sys.exit(f"The old token is not in {path}.")
path.write_text(text.replace(old_token, new_token), encoding="utf-8")
"""


@dataclass(frozen=True)
class ProcessOutcome:
    """Exit code and output of one finished process."""

    returncode: int
    stdout: str
    stderr: str


# emulator_settings points this process and every process it starts at the test's emulator.
pytestmark = pytest.mark.usefixtures("emulator_settings")


@pytest.fixture
def store(astro_config_path):
    return ConfigStore(astro_config_path)


@pytest.fixture
def started_processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Yield a list for the test's processes; those still running at teardown are killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _expire_soon(store: ConfigStore) -> None:
    """Move the stored expiry inside the refresh margin, so the next get_token() refreshes."""
    store.update_context("localhost", expires_at=datetime.now(timezone.utc) + timedelta(minutes=1))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _users_self_status(emulator, access_token: str) -> int:
    response = requests.get(
        f"{emulator.base_url}v1/users/self",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=HTTP_TIMEOUT_S,
    )
    response.close()
    return response.status_code


def _post_refresh(emulator, refresh_token: str) -> requests.Response:
    """Send one refresh_token grant to the emulator's token endpoint."""
    return requests.post(
        f"{emulator.oauth_base_url}oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": emulator.client_id,
            "refresh_token": refresh_token,
        },
        timeout=HTTP_TIMEOUT_S,
    )


def _start_racers(count: int, folder: Path, processes: list[subprocess.Popen[str]]) -> Path:
    """Start ``count`` racers, wait until each one is ready, and return the start file's path.

    The start file is not created yet. A racer that exits early, or racers
    that are not ready within ``READY_TIMEOUT_S``, fail the test.
    """
    folder.mkdir()
    start_file = folder / "start"
    ready_files = [folder / f"ready-{index}" for index in range(count)]
    for ready_file in ready_files:
        command = [
            sys.executable,
            "-c",
            RACER_SOURCE,
            str(ready_file),
            str(start_file),
            str(READY_TIMEOUT_S + FINISH_TIMEOUT_S),
            str(START_POLL_INTERVAL_S),
        ]
        processes.append(
            subprocess.Popen(
                command,
                env=dict(os.environ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )

    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all(ready_file.exists() for ready_file in ready_files):
        for process in processes:
            if process.poll() is not None:
                _stdout, stderr = process.communicate()
                pytest.fail(
                    f"Racer process {process.pid} exited with code {process.returncode} "
                    f"before it was ready: {stderr}"
                )
        if time.monotonic() > deadline:
            ready = sum(ready_file.exists() for ready_file in ready_files)
            pytest.fail(f"Only {ready} of {count} racers were ready after {READY_TIMEOUT_S} s.")
        time.sleep(0.01)
    return start_file


def _collect(processes: list[subprocess.Popen[str]]) -> list[ProcessOutcome]:
    """Wait for every process, all within ``FINISH_TIMEOUT_S``, and return their outcomes."""
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    outcomes = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            running = sum(process.poll() is None for process in processes)
            pytest.fail(f"{running} processes were still running after {FINISH_TIMEOUT_S} s.")
        outcomes.append(ProcessOutcome(process.returncode, stdout, stderr))
    return outcomes


def test_sixteen_processes_refresh_once(emulator, store, saved_login, tmp_path, started_processes):
    assert saved_login.refreshable
    before = store.read_context("localhost")
    _expire_soon(store)
    start_file = _start_racers(RACER_COUNT, tmp_path / "race", started_processes)

    start_file.touch()
    outcomes = _collect(started_processes)

    after = store.read_context("localhost")
    # The last line of a traceback names the error, for example a rejected refresh.
    failures = [
        outcome.stderr.strip().splitlines()[-1:] for outcome in outcomes if outcome.returncode
    ]
    assert failures == []
    assert emulator.count("refresh") == 1
    assert after.token != before.token
    assert after.refresh_token != before.refresh_token
    assert not emulator.revoked(after.token)
    assert not emulator.revoked(after.refresh_token)
    assert not emulator.revoked(before.refresh_token), "the spent refresh token was reused"
    assert _users_self_status(emulator, after.token) == 200
    hashes = [outcome.stdout.strip() for outcome in outcomes]
    assert len(hashes) == RACER_COUNT
    assert set(hashes) == {_sha256(after.token)}


def test_reused_refresh_token_revokes_login(emulator, store, saved_login):
    refresh_token = store.read_context("localhost").refresh_token

    first = _post_refresh(emulator, refresh_token)
    second = _post_refresh(emulator, refresh_token)

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    rotated = first.json()
    assert emulator.revoked(rotated["access_token"])
    assert emulator.revoked(rotated["refresh_token"])
    assert _users_self_status(emulator, rotated["access_token"]) == 401


@pytest.mark.parametrize("writer", ["config_store", "in_place"])
def test_cache_sees_other_process_write(emulator, store, monkeypatch, writer):
    old_token = emulator.mint_access_token(EMAIL)
    new_token = emulator.mint_access_token(EMAIL)
    store.save_login(
        ContextRecord(
            domain="localhost",
            token=old_token,
            expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
            user_email=EMAIL,
        )
    )
    # A file changed within the settle window is never cached, so wait it out
    # to make the first read below fill the cache.
    time.sleep(2 * SETTLE_WINDOW_NS / 1e9)
    # Every parse of config.yaml goes through ruamel.yaml's YAML.load, so
    # counting its calls shows whether a read came from the cache.
    parses = []
    original_load = YAML.load

    def counting_load(self, stream):
        parses.append(1)
        return original_load(self, stream)

    monkeypatch.setattr(YAML, "load", counting_load)

    assert get_token(store=store) == old_token
    assert get_token(store=store) == old_token
    assert len(parses) == 1, "the second read did not come from the cache"

    if writer == "config_store":
        source, stdin = STORE_WRITER_SOURCE, f"{new_token}\n"
    else:
        assert len(new_token) == len(old_token), "the in-place case needs tokens of equal length"
        source, stdin = IN_PLACE_WRITER_SOURCE, f"{old_token}\n{new_token}\n"
    written = subprocess.run(
        [sys.executable, "-c", source],
        input=stdin,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=FINISH_TIMEOUT_S,
        check=False,
    )
    assert written.returncode == 0, written.stderr

    assert get_token(store=store) == new_token
    assert len(parses) == 2
