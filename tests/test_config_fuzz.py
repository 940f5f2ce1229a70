"""Hostile config files: every entry point that reads config.yaml either works or raises our error.

Hypothesis writes random files (YAML of every shape, broken YAML, binary junk)
to a fresh config path, then calls ``get_token``, ``whoami``, the store's reads,
a login's save, a logout and a context switch on each. Each call must return
or raise an ``AstroJupyterError`` with a one-line message, and a file the store
could not use must keep its bytes. Fixed cases cover what random generation
rarely reaches: alias bombs, deep nesting, oversized files, a FIFO, a file of
another account and permissions seen by an account other than root.

The tests point ``AstroLogin`` at the loopback emulator, so a random file
whose login looks expired makes its refresh request there and nowhere else.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from astro_jupyter.config_files import MAX_FILE_BYTES
from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.config_yaml import MAX_NESTING_DEPTH
from astro_jupyter.credentials import get_token, whoami
from astro_jupyter.errors import AstroJupyterError, ConfigError

DATA = Path(__file__).parent / "data" / "cli_configs"

# The login that the write steps save. "localhost" is not an Astronomer
# domain, so the emulator settings apply to it.
SAVED = ContextRecord(
    domain="localhost",
    token="eyJhbGciOiJSUzI1NiJ9.fuzz-access.c2ln",
    refresh_token="v1.fuzz-refresh",
    expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc),
)

# derandomize makes every run, local or CI, try the same examples, so a
# failure seen once can be reproduced and a green run means the same thing
# each time. The bounded example count keeps the file under a minute on 2
# cores. An example takes about 0.2 s, but up to 10 times that on a busy
# machine, so the deadline only trips on a real hang or a parse that grows
# out of bounds. pytest-timeout stops the whole test if the deadline cannot.
FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=30_000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Names that the config format gives meaning to, in the spellings viper
# accepts, mixed into the random keys so that random files reach the code
# that reads logins and not only the parser.
KNOWN_KEYS = [
    "context",
    "contexts",
    "Contexts",
    "CONTEXT",
    "localhost",
    "astronomer_io",
    "domain",
    "token",
    "Token",
    "refreshtoken",
    "expiresin",
    "ExpiresIn",
    "user_email",
    "organization",
    "workspace",
    "last_used_workspace",
]

# Pieces of YAML syntax, joined at random into text that is often invalid.
YAML_PIECES = [
    "[", "]", "{", "}", ":", ": ", ",", "- ", "? ", "&a ", "*a", "&b ", "*b", "<<: ",
    "!!str ", "!!map ", "!!binary ", "!custom ", "'", '"', "#", "|\n", ">\n", "---\n",
    "...\n", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "\n", "  ", "    ", "\t", "\x00",
    "\ufeff", "\r\n", "\x85", "\u2028", "null", "~", "true", "1e309", "0x1F", ".nan",
    "2026-12-04T21:04:05.123456789Z", "Bearer ", "contexts", "context", "token",
    "localhost", "astronomer_io",
]  # fmt: skip


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=40),
        st.sampled_from(["", "Bearer ", "Bearer x", "0001-01-01T00:00:00Z", "2001-02-03"]),
    )


def keys() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(KNOWN_KEYS),
        st.text(max_size=12),
        st.integers(min_value=-5, max_value=5),
        st.booleans(),
        st.none(),
    )


def values() -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(keys(), children, max_size=5),
        ),
        max_leaves=25,
    )


@st.composite
def config_shapes(draw: st.DrawFn) -> dict[Any, Any]:
    """Return a top-level mapping shaped like a config, with wrong types anywhere."""
    context_fields = st.dictionaries(
        st.sampled_from(KNOWN_KEYS) | keys(), scalars() | values(), max_size=8
    )
    contexts = st.one_of(
        st.dictionaries(
            st.sampled_from(KNOWN_KEYS) | keys(), context_fields | values(), max_size=4
        ),
        values(),
    )
    root: dict[Any, Any] = draw(st.dictionaries(keys(), values(), max_size=4))
    if draw(st.booleans()):
        root[draw(st.sampled_from(["contexts", "Contexts"]))] = draw(contexts)
    if draw(st.booleans()):
        root[draw(st.sampled_from(["context", "CONTEXT"]))] = draw(
            st.sampled_from(["localhost", "astronomer.io", "localhost_", ""]) | scalars() | values()
        )
    return root


def dump_yaml(data: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.allow_unicode = True
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


@st.composite
def mutated_cli_files(draw: st.DrawFn) -> bytes:
    """Return a CLI-written config with random bytes replaced, inserted or cut."""
    data = bytearray((DATA / "cli_written.yaml").read_bytes())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(
            st.binary(min_size=1, max_size=8) | st.sampled_from(YAML_PIECES).map(str.encode)
        )
        if action == "insert":
            data[position:position] = chunk
        elif action == "delete":
            del data[position : position + len(chunk)]
        else:
            data[position : position + len(chunk)] = chunk
    return bytes(data)


def hostile_files() -> st.SearchStrategy[bytes]:
    return st.one_of(
        config_shapes().map(dump_yaml).map(str.encode),
        values().map(dump_yaml).map(str.encode),
        st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join).map(str.encode),
        mutated_cli_files(),
        st.text(max_size=200).map(str.encode),
        st.binary(max_size=200),
    )


@dataclass
class Outcome:
    """What one entry point did: its name, and the error it raised, if any."""

    step: str
    error: BaseException | None


def run_entry_points(path: Path) -> list[Outcome]:
    """Call every entry point that reads the config at ``path``, in the order a user might.

    Asserts that each call either returns or raises an ``AstroJupyterError``
    with a one-line message, and that a write that raised left the file's
    bytes as they were before it.
    """
    store = ConfigStore(path, lock_timeout_s=5.0)
    steps: list[tuple[str, bool, Callable[[], object]]] = [
        ("list_contexts", False, store.list_contexts),
        ("read_login", False, lambda: store.read_login(None)),
        ("read_context", False, lambda: store.read_context("localhost")),
        ("current_domain", False, store.current_domain),
        ("whoami", False, lambda: whoami(store=store)),
        # get_token writes when a refresh succeeds.
        ("get_token", True, lambda: get_token(store=store)),
        ("save_login", True, lambda: store.save_login(SAVED, make_current=False)),
        ("set_current_context", True, lambda: store.set_current_context("localhost")),
        ("logout", True, lambda: store.logout("localhost")),
    ]
    outcomes = []
    for step, writes, call in steps:
        before = file_state(path)
        error: BaseException | None = None
        try:
            call()
        except AstroJupyterError as caught:
            error = caught
        message = str(error) if error is not None else ""
        assert "\n" not in message, f"{step} raised a message of several lines: {message!r}"
        assert error is None or message.strip(), f"{step} raised an empty message"
        after = file_state(path)
        if error is not None and writes:
            assert after == before, f"{step} raised {message!r} but changed the file"
        if not writes:
            assert after == before, f"{step} only reads, but the file changed"
        outcomes.append(Outcome(step, error))
    assert leftover_temporary_files(path.parent) == []
    return outcomes


def file_state(path: Path) -> bytes | str:
    """Return the bytes of a regular file, else what is at ``path``, without blocking on a FIFO."""
    if path.is_symlink() or not path.exists():
        return "missing" if not path.is_symlink() else f"link to {os.readlink(path)}"
    if not path.is_file():
        return f"special file, mode {path.stat().st_mode:o}"
    return path.read_bytes()


def leftover_temporary_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".tmp")]


def check_unusable_file_kept(path: Path, data: bytes, outcomes: list[Outcome]) -> None:
    """Assert that when the store could not use the file, no write changed it."""
    listing = outcomes[0]
    if not isinstance(listing.error, ConfigError):
        return
    for outcome in outcomes:
        if outcome.step in ("save_login", "set_current_context", "logout"):
            assert isinstance(outcome.error, AstroJupyterError), (
                f"{outcome.step} succeeded on a file that list_contexts rejected: {listing.error}"
            )
    assert path.read_bytes() == data


class CaseFolders:
    """Fresh config folders under one root, one per example."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._count = 0

    def new_config_path(self) -> Path:
        self._count += 1
        folder = self._root / f"case-{self._count}" / ".astro"
        folder.mkdir(parents=True)
        return folder / "config.yaml"


@pytest.mark.timeout(600)
def test_random_files_raise_only_our_errors(tmp_path, emulator_settings, hardening):
    folders = CaseFolders(tmp_path)
    examples = 0
    rejected = 0

    @FUZZ_SETTINGS
    @given(data=hostile_files())
    def check(data: bytes) -> None:
        nonlocal examples, rejected
        examples += 1
        path = folders.new_config_path()
        path.write_bytes(data)

        outcomes = run_entry_points(path)

        check_unusable_file_kept(path, data, outcomes)
        if isinstance(outcomes[0].error, ConfigError):
            rejected += 1
        elif any(outcome.error is None for outcome in outcomes if outcome.step == "save_login"):
            # A file this package wrote must parse again.
            ConfigStore(path).list_contexts()

    try:
        check()
    finally:
        hardening.add("Hostile input", "config files", examples)
    # Both kinds of file must occur, or the strategies test only half the code.
    assert 0 < rejected < examples


def billion_laughs(levels: int, width: int) -> str:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def alias_key_bomb(levels: int, width: int) -> str:
    # The same bomb, used as a context's key: converting that key to text
    # would expand every alias.
    return billion_laughs(levels, width) + f"contexts:\n  ? *a{levels}\n  : {{token: x}}\n"


# (id, file content, expected fragment of the error of list_contexts, or None to load)
HOSTILE_CASES: list[tuple[str, bytes, str | None]] = [
    ("billion laughs", billion_laughs(9, 9).encode(), "aliases (*name) expand to more than"),
    ("alias bomb in a key", alias_key_bomb(9, 9).encode(), "aliases (*name) expand"),
    ("small alias use", billion_laughs(3, 3).encode(), None),
    ("deep flow nesting", ("x: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "levels deep"),
    (
        "deep block nesting",
        "".join("  " * level + f"k{level}:\n" for level in range(200)).encode(),
        "levels deep",
    ),
    (
        "nesting at the limit",
        ("x: " + "[" * (MAX_NESTING_DEPTH - 1) + "]" * (MAX_NESTING_DEPTH - 1) + "\n").encode(),
        None,
    ),
    (
        "file over the size cap",
        b"a: " + b"x" * MAX_FILE_BYTES + b"\n",
        f"larger than {MAX_FILE_BYTES // 1024} KiB",
    ),
    (
        "file at the size cap",
        b"a: " + b"x" * (MAX_FILE_BYTES - 4) + b"\n",
        None,
    ),
    ("binary junk", bytes(range(256)) * 4, "not valid UTF-8"),
    ("UTF-16 with BOM", "context: localhost\n".encode("utf-16"), "not valid UTF-8"),
    ("NUL byte", b"context: localhost\x00\n", "Cannot parse"),
    ("contexts as a list", b"contexts:\n  - localhost\n", "'contexts' is a list"),
    ("contexts as a string", b"contexts: localhost\n", "'contexts' is a string"),
    ("null contexts", b"context: localhost\ncontexts:\n", None),
    ("top level a list", b"- contexts\n", "the top level is a list"),
    ("non-string keys", b"1: 2\nnull: 3\ncontexts:\n  [1, 2]: {token: x}\n  7: {}\n", None),
    ("python tag", b"!!python/object/apply:os.system ['true']\n", "the top level is a list"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("content", "expected"),
    [case[1:] for case in HOSTILE_CASES],
    ids=[case[0] for case in HOSTILE_CASES],
)
def test_hostile_file(tmp_path, emulator_settings, hardening, content, expected):
    path = tmp_path / ".astro" / "config.yaml"
    path.parent.mkdir()
    path.write_bytes(content)

    outcomes = run_entry_points(path)
    hardening.add("Hostile input", "config files", 1)

    listing = outcomes[0].error
    if expected is None:
        assert listing is None
    else:
        assert isinstance(listing, ConfigError)
        assert expected in str(listing)
        assert str(path) in str(listing)
    check_unusable_file_kept(path, content, outcomes)


@pytest.mark.timeout(60)
def test_fifo_in_place_of_config(tmp_path, emulator_settings, hardening):
    # Opening a FIFO for reading would block until a writer appears.
    path = tmp_path / ".astro" / "config.yaml"
    path.parent.mkdir()
    os.mkfifo(path)

    outcomes = run_entry_points(path)
    hardening.add("Hostile input", "config files", 1)

    for outcome in outcomes:
        assert isinstance(outcome.error, ConfigError), outcome.step
        assert "not a regular file" in str(outcome.error)
    assert path.is_fifo()


def test_file_of_other_account_keeps_owner(tmp_path, emulator_settings, hardening):
    # Run as root, as in CI, permissions do not stop any access, so this
    # proves only that a write keeps the file's owner and group instead of
    # handing it to root. test_permissions_as_other_account covers the
    # permission errors.
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another account")
    nobody = pwd.getpwnam("nobody")
    path = tmp_path / ".astro" / "config.yaml"
    path.parent.mkdir()
    shutil.copyfile(DATA / "cli_written.yaml", path)
    os.chown(path, nobody.pw_uid, nobody.pw_gid)

    outcomes = run_entry_points(path)
    hardening.add("Hostile input", "config files", 1)

    assert [outcome.error for outcome in outcomes if outcome.step == "save_login"] == [None]
    status = path.stat()
    assert (status.st_uid, status.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert status.st_mode & 0o777 == 0o600
    assert ConfigStore(path).read_context("localhost") is not None


# Runs in a child process as another account. Calls each entry point on the
# config at argv[1] and prints one JSON object: step -> null, or
# [error type, message].
OTHER_ACCOUNT_SCRIPT = """
import json, sys
from datetime import datetime, timezone
from pathlib import Path
from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.errors import AstroJupyterError

store = ConfigStore(Path(sys.argv[1]), lock_timeout_s=5.0)
record = ContextRecord(domain="localhost", token="tok", expires_at=datetime.now(timezone.utc))
steps = {
    "list_contexts": store.list_contexts,
    "read_context": lambda: store.read_context("localhost"),
    "save_login": lambda: store.save_login(record),
    "logout": lambda: store.logout("astronomer.io"),
}
results = {}
for name, call in steps.items():
    try:
        call()
        results[name] = None
    except AstroJupyterError as error:
        results[name] = [type(error).__name__, str(error)]
print(json.dumps(results))
"""


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """Yield a folder that the account ``nobody`` can enter, removed afterwards.

    pytest's tmp_path sits in a folder only root may enter.
    """
    folder = Path(tempfile.mkdtemp(prefix="astro-jupyter-permissions-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)


def run_as_nobody(config: Path) -> dict[str, Any]:
    nobody = pwd.getpwnam("nobody")
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(config.parent.parent)}
    result = subprocess.run(
        [sys.executable, "-c", OTHER_ACCOUNT_SCRIPT, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=[],
        env=environment,
        cwd=config.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


READS_WORK = {"list_contexts": None, "read_context": None}

PERMISSION_CASES = [
    # (id, folder mode, file mode, account owning the file with its primary
    # group, expected error fragment per step, or None for success)
    (
        "read-only folder",
        0o555,
        0o600,
        "nobody",
        {**READS_WORK, "save_login": "permission denied", "logout": "permission denied"},
    ),
    (
        "read-only file",
        0o755,
        0o400,
        "nobody",
        {**READS_WORK, "save_login": "read-only", "logout": "read-only"},
    ),
    (
        "unreadable file of root",
        0o755,
        0o600,
        "root",
        {
            "list_contexts": "permission denied",
            "read_context": "permission denied",
            "save_login": "permission denied",
            "logout": "permission denied",
        },
    ),
    (
        "file of root, read-only for others",
        0o755,
        0o644,
        "root",
        {**READS_WORK, "save_login": "read-only", "logout": "read-only"},
    ),
    (
        "file of root, writable by all",
        0o755,
        0o666,
        "root",
        {
            **READS_WORK,
            "save_login": "it belongs to another account (uid 0, gid 0)",
            "logout": "it belongs to another account",
        },
    ),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("folder_mode", "file_mode", "owner", "expected"),
    [case[1:] for case in PERMISSION_CASES],
    ids=[case[0] for case in PERMISSION_CASES],
)
def test_permissions_as_other_account(
    shared_folder, hardening, folder_mode, file_mode, owner, expected
):
    # Root bypasses permission checks, so the account "nobody" plays the user.
    if os.geteuid() != 0:
        pytest.skip("only root can start a process as another account")
    nobody = pwd.getpwnam("nobody")
    folder = shared_folder / ".astro"
    folder.mkdir()
    config = folder / "config.yaml"
    shutil.copyfile(DATA / "cli_written.yaml", config)
    # The lock file exists and belongs to that account, as after an earlier write.
    lock = folder / "config.yaml.lock"
    lock.touch(mode=0o600)
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    os.chown(lock, nobody.pw_uid, nobody.pw_gid)
    account = pwd.getpwnam(owner)
    os.chown(config, account.pw_uid, account.pw_gid)
    config.chmod(file_mode)
    folder.chmod(folder_mode)
    before = config.read_bytes()

    results = run_as_nobody(config)
    hardening.add("Hostile input", "config files", 1)

    for step, fragment in expected.items():
        if fragment is None:
            assert results[step] is None, f"{step}: {results[step]}"
        else:
            assert results[step] is not None, f"{step} succeeded"
            error_type, message = results[step]
            assert error_type == "ConfigError", f"{step}: {error_type}"
            assert fragment in message, f"{step}: {message}"
            assert "\n" not in message
    assert config.read_bytes() == before
    assert leftover_temporary_files(folder) == []


def test_own_file_in_foreign_group_written(shared_folder, hardening):
    # A file of the user with a group the user is not in, as after "sudo cp"
    # and "chown user": the write goes through and the file gets the user's group.
    if os.geteuid() != 0:
        pytest.skip("only root can start a process as another account")
    nobody = pwd.getpwnam("nobody")
    folder = shared_folder / ".astro"
    folder.mkdir()
    config = folder / "config.yaml"
    shutil.copyfile(DATA / "cli_written.yaml", config)
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    os.chown(config, nobody.pw_uid, 0)

    results = run_as_nobody(config)
    hardening.add("Hostile input", "config files", 1)

    assert results == {
        "list_contexts": None,
        "read_context": None,
        "save_login": None,
        "logout": None,
    }
    status = config.stat()
    assert (status.st_uid, status.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert ConfigStore(config).read_context("localhost").token == "tok"
