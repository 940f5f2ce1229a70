"""Concurrent writers and crashes, with real processes of this interpreter.

Writers are separate Python processes using ``ConfigStore``, so they contend
for the real flock(2) locks and rename over the real file. A crash is a
SIGKILL: either at a random moment of a loop of large writes, or at a point
the killed process announces, after its temporary file is written and before
the rename. After every kill the file must be one complete version, never a
mix, and the next write must succeed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.errors import ConfigLockTimeoutError

DATA = Path(__file__).parent / "data" / "cli_configs"

WRITERS = 16
WRITES_PER_WRITER = 12

# argv: config path, worker number, number of writes. Waits for a line on
# stdin so that all workers start together, saves its own context that many
# times with a new token each time, then prints the number of writes.
WRITER_SCRIPT = """
import sys
from pathlib import Path
from astro_jupyter.config_store import ConfigStore, ContextRecord

path, worker, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
store = ConfigStore(path, lock_timeout_s=120.0)
sys.stdin.readline()
for number in range(count):
    record = ContextRecord(domain=f"worker{worker}.example", token=f"w{worker}-{number}")
    store.save_login(record, make_current=False)
print(count, flush=True)
"""

# argv: config path. Until a line arrives on stdin, reads the file every few
# milliseconds without any lock, as a second program might, and parses it.
# Prints the number of reads and of reads that did not parse or lost the keys
# every version has.
READER_SCRIPT = """
import json, os, select, sys
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

yaml = YAML(typ="safe", pure=True)
reads = failures = 0
while not select.select([sys.stdin], [], [], 0.005)[0]:
    with open(sys.argv[1], "rb") as file:
        data = file.read()
    reads += 1
    try:
        document = yaml.load(data)
        if "astronomer_io" not in document["contexts"]:
            failures += 1
    except (YAMLError, KeyError, TypeError):
        failures += 1
print(json.dumps({"reads": reads, "failures": failures}), flush=True)
"""

# argv: config path, first token, pause point ("random", "before-sync" or
# "before-rename"). Saves tokens A and B in turn, forever. With a pause point,
# it prints "paused" there and sleeps, so the parent can kill it at that point.
CRASH_SCRIPT = """
import os, sys, time
from pathlib import Path
from astro_jupyter.config_store import ConfigStore, ContextRecord

path, first, pause = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
hook = {"before-sync": "fsync", "before-rename": "replace"}.get(pause)
if hook:
    real = getattr(os, hook)

    def paused(*args, **kwargs):
        print("paused", flush=True)
        time.sleep(60)
        return real(*args, **kwargs)

    setattr(os, hook, paused)
store = ConfigStore(path, lock_timeout_s=30.0)
tokens = [first, "token-b" if first == "token-a" else "token-a"]
print("ready", flush=True)
number = 0
while True:
    store.save_login(ContextRecord(domain="localhost", token=tokens[number % 2]))
    number += 1
"""

# argv: lock path. Takes flock(2) on it, prints "locked" and sleeps until killed.
HOLD_LOCK_SCRIPT = """
import fcntl, sys, time
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""

# argv: config path. Holds the store's renewal lock, prints "locked", sleeps.
HOLD_RENEWAL_SCRIPT = """
import sys, time
from pathlib import Path
from astro_jupyter.config_store import ConfigStore

with ConfigStore(Path(sys.argv[1])).renewal_lock():
    print("locked", flush=True)
    time.sleep(600)
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


def start(script: str, *arguments: object, stdin: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, arguments)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
    )


@contextmanager
def killed_at_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stdout.close()
        if process.stdin:
            process.stdin.close()


def try_lock(lock_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", TRY_LOCK_SCRIPT, str(lock_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def temporary_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def new_config(tmp_path: Path) -> Path:
    path = tmp_path / "user-home" / ".astro" / "config.yaml"
    path.parent.mkdir(parents=True)
    shutil.copyfile(DATA / "cli_written.yaml", path)
    return path


@pytest.mark.timeout(300)
def test_concurrent_writers_all_survive(tmp_path, hardening):
    path = new_config(tmp_path)
    writers = [
        start(WRITER_SCRIPT, path, worker, WRITES_PER_WRITER, stdin=subprocess.PIPE)
        for worker in range(WRITERS)
    ]
    reader = start(READER_SCRIPT, path, stdin=subprocess.PIPE)
    hardening.add("Concurrency and crashes", "processes", len(writers) + 1)

    writes = 0
    try:
        for writer in writers:
            writer.stdin.write("go\n")
            writer.stdin.close()
        for writer in writers:
            output = writer.stdout.read()
            assert writer.wait(timeout=240) == 0
            writes += int(output)
        reader_output, _ = reader.communicate("stop\n", timeout=30)
    finally:
        hardening.add("Concurrency and crashes", "writes", writes)
        for process in [*writers, reader]:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            process.stdout.close()

    reads = json.loads(reader_output)
    hardening.add("Concurrency and crashes", "files left mixed or unparsable", reads["failures"])
    assert reads["reads"] > 0
    assert reads["failures"] == 0
    assert writes == WRITERS * WRITES_PER_WRITER

    store = ConfigStore(path)
    for worker in range(WRITERS):
        record = store.read_context(f"worker{worker}.example")
        assert record is not None, f"the context of worker {worker} was lost"
        assert record.token == f"w{worker}-{WRITES_PER_WRITER - 1}"
    # The contexts the file had before are untouched.
    assert store.read_context("astronomer.io").token == "eyJhbGciOiJSUzI1NiJ9.fixture-access.c2ln"
    assert temporary_files(path.parent) == []


def large_config(tmp_path: Path) -> Path:
    """Return a config of 256 KiB, so that writing and syncing it takes a while."""
    path = new_config(tmp_path)
    filler = "x" * (256 * 1024)
    path.write_text(path.read_text() + f"filler: {filler}\n")
    return path


def expected_versions(path: Path, scratch: Path) -> set[bytes]:
    """Return every complete version the crash loop can leave: the start, token A, token B."""
    scratch.parent.mkdir(parents=True)
    shutil.copyfile(path, scratch)
    store = ConfigStore(scratch)
    versions = {scratch.read_bytes()}
    for token in ("token-a", "token-b", "token-a"):
        store.save_login(ContextRecord(domain="localhost", token=token))
        versions.add(scratch.read_bytes())
    # Saving A, B and A again gives back the same A, so there are three.
    assert len(versions) == 3
    return versions


def is_one_version(path: Path, versions: set[bytes]) -> bool:
    data = path.read_bytes()
    if data not in versions:
        return False
    try:
        YAML(typ="safe", pure=True).load(data)
    except YAMLError:
        return False
    return True


@pytest.mark.timeout(300)
def test_sigkill_mid_write_leaves_one_version(tmp_path, hardening):
    path = large_config(tmp_path)
    versions = expected_versions(path, tmp_path / "scratch" / "config.yaml")
    # A fixed seed keeps the kill times the same on every run; nothing here
    # needs unpredictable numbers.
    chooser = random.Random(20261205)  # noqa: S311
    mixed = 0
    mid_write = 0
    processes = 0

    # Random kills mostly land while the writer parses, which is most of its
    # time, so only those that left a temporary file count as mid-write.
    plan = ["before-sync", "before-rename"] * 3 + ["random"] * 6
    try:
        for number, pause in enumerate(plan):
            first = "token-a" if number % 2 else "token-b"
            with killed_at_exit(start(CRASH_SCRIPT, path, first, pause)) as process:
                processes += 1
                assert process.stdout.readline() == "ready\n"
                if pause == "random":
                    time.sleep(chooser.uniform(0.02, 0.6))
                else:
                    assert process.stdout.readline() == "paused\n"
                assert process.poll() is None, "the writer stopped before it was killed"
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

            left_over = temporary_files(path.parent)
            if pause != "random" or left_over:
                mid_write += 1
            if not is_one_version(path, versions):
                mixed += 1
            if pause != "random":
                # The pause came after the temporary file was created.
                assert len(left_over) == 1

            # The next write succeeds and clears what the dead writer left.
            ConfigStore(path, lock_timeout_s=5.0).save_login(
                ContextRecord(domain="localhost", token="token-a")
            )
            assert temporary_files(path.parent) == []
            assert is_one_version(path, versions)
    finally:
        hardening.add("Concurrency and crashes", "processes", processes)
        hardening.add("Concurrency and crashes", "SIGKILLs mid-write", mid_write)
        hardening.add("Concurrency and crashes", "files left mixed or unparsable", mixed)

    assert mixed == 0
    assert mid_write >= 6


@pytest.mark.timeout(120)
@pytest.mark.parametrize("holder", ["flock on config.yaml.lock", "renewal lock of a store"])
def test_lock_of_killed_process_released(tmp_path, hardening, holder):
    path = new_config(tmp_path)
    store = ConfigStore(path, lock_timeout_s=2.0)
    if holder == "flock on config.yaml.lock":
        lock_path = store.lock_path
        process = start(HOLD_LOCK_SCRIPT, lock_path)
    else:
        lock_path = store.renewal_lock_path
        process = start(HOLD_RENEWAL_SCRIPT, path)

    with killed_at_exit(process):
        hardening.add("Concurrency and crashes", "processes", 1)
        assert process.stdout.readline() == "locked\n"
        assert try_lock(lock_path) == "busy"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    # The lock file stays behind, but flock(2) locks end with the process.
    assert lock_path.exists()
    assert try_lock(lock_path) == "free"
    with store.renewal_lock(timeout_s=2.0):
        store.save_login(ContextRecord(domain="localhost", token="after-the-crash"))
    assert store.read_context("localhost").token == "after-the-crash"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lock", ["write lock", "renewal lock"])
def test_lock_held_too_long_times_out(tmp_path, hardening, lock):
    path = new_config(tmp_path)
    store = ConfigStore(path, lock_timeout_s=0.5)
    lock_path = store.lock_path if lock == "write lock" else store.renewal_lock_path
    before = path.read_bytes()

    with killed_at_exit(start(HOLD_LOCK_SCRIPT, lock_path)) as process:
        hardening.add("Concurrency and crashes", "processes", 1)
        assert process.stdout.readline() == "locked\n"
        with pytest.raises(ConfigLockTimeoutError) as caught:
            if lock == "write lock":
                store.save_login(ContextRecord(domain="localhost", token="never-written"))
            else:
                with store.renewal_lock():
                    pytest.fail("the renewal lock was taken while another process held it")

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Timed out after 0.5 s waiting for the lock {lock_path}: ")
    assert message.endswith("Nothing was written. Try again when it has finished.")
    assert caught.value.path == str(lock_path)
    assert path.read_bytes() == before
    assert temporary_files(path.parent) == []
