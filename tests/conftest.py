"""Shared fixtures: a hermetic environment for every test, the Astro emulator, real kernels
and logins to the emulator.

Every test runs with ``HOME`` and ``ASTRO_HOME`` in its own temporary folder,
without Astro, browser or Jupyter path variables, so no test reads or writes the
user's real Astro CLI config or opens a real browser. A session-wide check fails
the run if the real config folder changed anyway. The ``AstroLogin`` settings
singleton is cleared before and after every test.

Kernels are real ipykernel processes started from this interpreter, so they
import the astro_jupyter under test.
"""

from __future__ import annotations

import html
import json
import os
import queue
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hardening_tally import HardeningTally
from ruamel.yaml import YAML

# Variables that could point a test at real state or real programs: the user's
# Jupyter and IPython folders, and a browser or display the login could open.
_CLEARED_VARIABLES = (
    "BROWSER",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "IPYTHONDIR",
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_DATA_DIR",
    "JUPYTER_PATH",
    "JUPYTER_PREFER_ENV_PATH",
    "JUPYTER_RUNTIME_DIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
)
# Every variable with this prefix is cleared: the Astro CLI's (ASTRO_DOMAIN,
# ASTRO_API_TOKEN, ...) and astro_jupyter's own (ASTRO_JUPYTER_*).
_CLEARED_PREFIX = "ASTRO_"

KERNEL_START_TIMEOUT_S = 60.0
CELL_TIMEOUT_S = 60.0
LOGIN_TIMEOUT_S = 20.0

# The account that ada_account creates in the emulator.
ADA_EMAIL = "ada@example.com"
ADA_ORGANIZATION = "Ada Labs"
ADA_WORKSPACE = "Research"

_LINK_HTML = re.compile(r'<a href="([^"]+)" target="_blank" rel="noopener noreferrer"')


def _real_astro_folders() -> list[Path]:
    """Return the Astro CLI config folders of the user running the tests."""
    folders = [Path(os.path.expanduser("~")) / ".astro"]
    if os.environ.get("ASTRO_HOME"):
        folders.append(Path(os.environ["ASTRO_HOME"]) / ".astro")
    return folders


def _snapshot_folder(folder: Path) -> dict[str, tuple[int, int]] | None:
    """Return the (mtime in ns, size) of the folder and everything in it, or None if it is absent.

    Only metadata is read, never file contents.
    """
    if not folder.exists():
        return None
    entries: dict[str, tuple[int, int]] = {}
    for dirpath, _dirnames, filenames in os.walk(folder):
        for path in [Path(dirpath), *(Path(dirpath, name) for name in filenames)]:
            status = path.lstat()
            entries[str(path.relative_to(folder))] = (status.st_mtime_ns, status.st_size)
    return entries


def _describe_changes(
    before: dict[str, tuple[int, int]] | None, after: dict[str, tuple[int, int]] | None
) -> list[str]:
    if before is None or after is None:
        return ["folder created" if before is None else "folder deleted"]
    changes = [f"{name} added" for name in sorted(after.keys() - before.keys())]
    changes += [f"{name} removed" for name in sorted(before.keys() - after.keys())]
    changes += [
        f"{name} modified"
        for name in sorted(before.keys() & after.keys())
        if before[name] != after[name]
    ]
    return changes


_HARDENING_TALLY = pytest.StashKey[HardeningTally]()
_SESSION_START = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hardening-report",
        metavar="PATH",
        default=None,
        help="Write the hardening tests' summary table to PATH as Markdown.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_HARDENING_TALLY] = HardeningTally()
    config.stash[_SESSION_START] = time.monotonic()


@pytest.fixture
def hardening(request: pytest.FixtureRequest) -> HardeningTally:
    """The run's tally of faults, hostile inputs, concurrent writes and secrets tried."""
    return request.config.stash[_HARDENING_TALLY]


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    tally = config.stash[_HARDENING_TALLY]
    lines = tally.text_lines()
    if not lines:
        return
    terminalreporter.section("hardening summary")
    for line in lines:
        terminalreporter.write_line(line)
    report_path = config.getoption("--hardening-report")
    if report_path:
        outcome = "passed" if exitstatus == 0 else f"failed (pytest exit code {exitstatus})"
        duration_s = time.monotonic() - config.stash[_SESSION_START]
        Path(report_path).write_text(
            tally.markdown(outcome=outcome, duration_s=duration_s), encoding="utf-8"
        )
        terminalreporter.write_line(f"Hardening figures written to {report_path}")


@pytest.fixture(scope="session", autouse=True)
def real_astro_config_untouched() -> Iterator[None]:
    """Fail the session if the user's real Astro config folder changed while the tests ran.

    The snapshot is taken before any test patches ``HOME``. An ``astro`` command
    run by hand during the test session would also trip this check.
    """
    folders = _real_astro_folders()
    before = {folder: _snapshot_folder(folder) for folder in folders}
    yield
    for folder in folders:
        after = _snapshot_folder(folder)
        if after == before[folder]:
            continue
        changes = ", ".join(_describe_changes(before[folder], after))
        pytest.fail(f"The tests changed the real Astro config folder {folder}: {changes}")


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``HOME`` and ``ASTRO_HOME`` at a fresh folder and clear outside settings.

    Returns the folder. The Astro config of the test is ``<folder>/.astro/config.yaml``.
    """
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(_CLEARED_PREFIX) or name in _CLEARED_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ASTRO_HOME", str(home))
    monkeypatch.setenv("IPYTHONDIR", str(home / ".ipython"))
    # requests sends loopback traffic through a configured proxy unless NO_PROXY lists it.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost,::1")
    return home


@pytest.fixture
def astro_config_path(hermetic_env: Path) -> Path:
    """Return the path of the test's Astro config file (it may not exist yet)."""
    return hermetic_env / ".astro" / "config.yaml"


@pytest.fixture
def emulator() -> Iterator[Any]:
    """Yield a started Astro emulator on 127.0.0.1 and a free port. It approves no login itself."""
    from astro_jupyter.emulator import Emulator

    server = Emulator(host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kernel_env(emulator: Any, hermetic_env: Path) -> dict[str, str]:
    """Return the environment for a kernel that logs in to the emulator.

    It is this test's hermetic environment plus the emulator's API URL and a
    callback port of 0 (any free port). Tests may add variables before starting
    the kernel.
    """
    env = dict(os.environ)
    env["ASTRO_JUPYTER_API_URL"] = emulator.base_url
    env["ASTRO_JUPYTER_CALLBACK_PORT"] = "0"
    env["IPYTHONDIR"] = str(hermetic_env / ".ipython")
    return env


@pytest.fixture(autouse=True)
def clear_astro_login() -> Iterator[None]:
    """Clear the ``AstroLogin`` settings singleton before and after every test.

    An instance keeps the defaults it read from the environment, so a test's
    settings would otherwise reach the next test.
    """
    from astro_jupyter.settings import AstroLogin

    AstroLogin.clear_instance()
    yield
    AstroLogin.clear_instance()


@pytest.fixture
def emulator_settings(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the ``AstroLogin`` settings at this test's emulator, with callback port 0.

    Sets ``ASTRO_JUPYTER_API_URL`` to the emulator's base URL and
    ``ASTRO_JUPYTER_CALLBACK_PORT`` to 0 (any free port), for this process and the
    processes it starts, and clears the singleton so its next instance reads them.
    """
    from astro_jupyter.settings import AstroLogin

    monkeypatch.setenv("ASTRO_JUPYTER_API_URL", emulator.base_url)
    monkeypatch.setenv("ASTRO_JUPYTER_CALLBACK_PORT", "0")
    AstroLogin.clear_instance()


@pytest.fixture
def shell() -> Iterator[Any]:
    """Yield the in-process IPython shell with astro_jupyter loaded, cleared after the test."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "astro_jupyter")
    yield shell
    InteractiveShell.clear_instance()


def port_is_free(port: int) -> bool:
    """Return whether a socket can bind ``port`` on 127.0.0.1 now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def nothing_listens_on(port: int) -> bool:
    """Return whether no socket listens on ``port`` of 127.0.0.1 now.

    SO_REUSEADDR is set as the callback server sets it, so connections of an
    earlier listener in TIME_WAIT do not count, unlike with ``port_is_free``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def kernel_spec_manager(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Return a kernel spec manager whose only ``python3`` kernel runs this interpreter.

    A ``python3`` spec installed elsewhere (for example by the user) could run
    another Python that lacks the astro_jupyter under test.
    """
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    kernels_dir = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels_dir / "python3")
    return KernelSpecManager(kernel_dirs=[str(kernels_dir)])


@dataclass
class ExecutionResult:
    """The outcome of one cell run in a kernel: its execute_reply content and its iopub messages."""

    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["status"]

    def text(self) -> str:
        """Return everything the cell showed as text: streams and ``text/plain`` of displays."""
        parts = []
        for message in self.messages:
            content = message["content"]
            if message["msg_type"] == "stream":
                parts.append(content["text"])
            elif message["msg_type"] in ("display_data", "update_display_data", "execute_result"):
                parts.append(content["data"].get("text/plain", "") + "\n")
        return "".join(parts)

    def stream(self, name: str) -> str:
        """Return the text the cell wrote to one stream, ``stdout`` or ``stderr``."""
        return "".join(
            message["content"]["text"]
            for message in self.messages
            if message["msg_type"] == "stream" and message["content"]["name"] == name
        )


class RunningKernel:
    """A started kernel with a blocking client that never replies to input requests.

    Every iopub message received is kept in ``iopub_messages``, so a test can
    check all of them for leaked secrets.
    """

    def __init__(self, manager: Any, client: Any) -> None:
        self.km = manager
        self.kc = client
        self.iopub_messages: list[dict[str, Any]] = []

    def execute(
        self,
        code: str,
        *,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        timeout_s: float = CELL_TIMEOUT_S,
        allow_stdin: bool = False,
    ) -> ExecutionResult:
        """Run ``code`` and return its reply and iopub messages once the kernel is idle again.

        ``on_message`` is called with each iopub message of this execution as it
        arrives, while the cell still runs. ``allow_stdin`` informs the kernel that
        an interactive frontend is attached, as JupyterLab does. Nothing answers
        a prompt, so only use it for cells that do not prompt. Raises
        ``TimeoutError`` when the cell does not finish within ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        msg_id = self.kc.execute(code, allow_stdin=allow_stdin)
        messages = []
        while True:
            message = self._next_message(self.kc.get_iopub_msg, deadline, timeout_s, code)
            self.iopub_messages.append(message)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(message)
            if on_message is not None:
                on_message(message)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        while True:
            reply = self._next_message(self.kc.get_shell_msg, deadline, timeout_s, code)
            if reply["parent_header"].get("msg_id") == msg_id:
                return ExecutionResult(reply=reply["content"], messages=messages)

    def iopub_text(self, *, skip_inputs: bool = False) -> str:
        """Return the content of every iopub message received so far, as JSON text.

        With ``skip_inputs``, the ``execute_input`` messages (which repeat each
        cell's source) are left out.
        """
        contents = [
            message["content"]
            for message in self.iopub_messages
            if not (skip_inputs and message["msg_type"] == "execute_input")
        ]
        return json.dumps(contents, default=str)

    @staticmethod
    def _next_message(
        receive: Callable[..., dict[str, Any]], deadline: float, timeout_s: float, code: str
    ) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise queue.Empty
            return receive(timeout=remaining)
        except queue.Empty:
            raise TimeoutError(
                f"The kernel did not finish this cell within {timeout_s:g} s: {code!r}"
            ) from None


@pytest.fixture
def kernel_socket_dir() -> Iterator[Path]:
    """Yield a private folder for the kernels' Unix sockets, removed after the test.

    It is created directly in the system's temporary folder because a Unix
    socket path is limited to about 100 bytes.
    """
    folder = Path(tempfile.mkdtemp(prefix="astro-kernel-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _use_ipc_transport(manager: Any, socket_dir: Path, name: str) -> None:
    """Connect to the kernel over Unix sockets instead of loopback TCP ports, on POSIX.

    jupyter_client picks TCP ports by binding port 0 and closing the socket
    before the kernel binds it, so a kernel started at the same moment by
    another process can take the port. Unix sockets in a private folder cannot
    collide, and ipykernel 7 stops warning about unencrypted TCP.
    """
    if os.name != "posix":
        return
    manager.transport = "ipc"
    manager.ip = str(socket_dir / name)


@pytest.fixture
def start_kernel(
    kernel_spec_manager: Any, kernel_socket_dir: Path, tmp_path: Path
) -> Iterator[Callable[[dict[str, str]], RunningKernel]]:
    """Yield a function that starts a real kernel with the given environment.

    The kernel's working folder is the test's temporary folder. Every kernel
    started is shut down when the test ends, also when it fails.
    """
    from jupyter_client import KernelManager

    kernels: list[RunningKernel] = []

    def start(env: dict[str, str]) -> RunningKernel:
        manager = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
        _use_ipc_transport(manager, kernel_socket_dir, f"kernel{len(kernels)}")
        manager.start_kernel(env=env, cwd=str(tmp_path))
        client = manager.client()
        kernel = RunningKernel(manager, client)
        kernels.append(kernel)
        client.start_channels()
        client.wait_for_ready(timeout=KERNEL_START_TIMEOUT_S)
        return kernel

    yield start

    for kernel in kernels:
        kernel.kc.stop_channels()
        kernel.km.shutdown_kernel(now=True)


@pytest.fixture
def execute_notebook(
    kernel_spec_manager: Any, kernel_socket_dir: Path, tmp_path: Path
) -> Callable[..., Any]:
    """Return a function that runs a notebook headlessly with nbclient, as papermill would.

    The function takes the notebook and the kernel environment, runs every cell
    with no stdin, and returns the executed notebook. A failing cell raises
    ``nbclient.exceptions.CellExecutionError``. The kernel is always shut down.
    """
    from jupyter_client import AsyncKernelManager
    from nbclient import NotebookClient

    def execute(notebook: Any, env: dict[str, str]) -> Any:
        manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
        _use_ipc_transport(manager, kernel_socket_dir, "notebook-kernel")
        client = NotebookClient(notebook, km=manager, timeout=CELL_TIMEOUT_S)
        client.execute(env=env, cwd=str(tmp_path), cleanup_kc=True)
        return notebook

    return execute


@pytest.fixture
def leaked_secrets(emulator: Any) -> Callable[[str], list[str]]:
    """Return a function that lists the emulator's issued secrets found in a text.

    Each secret found is masked to its first 4 characters and its length, so a
    failing assert does not print it.
    """

    def find(text: str) -> list[str]:
        secrets: Iterable[str] = emulator.issued_secrets()
        found = [secret for secret in secrets if secret in text]
        return [f"{secret[:4]}... ({len(secret)} characters)" for secret in found]

    return find


def read_config(path: Path) -> dict[str, Any]:
    """Return the parsed content of a config.yaml, read as plain data."""
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


@pytest.fixture
def ada_account(emulator: Any) -> str:
    """Create ada@example.com as a member of one organization with one workspace.

    With a single workspace the login selects it, so the summary names it.
    Returns the organization id.
    """
    organization_id = emulator.add_organization(ADA_ORGANIZATION, workspaces=(ADA_WORKSPACE,))
    emulator.add_user(ADA_EMAIL, organizations=(organization_id,))
    return organization_id


def login_link(message: dict[str, Any]) -> str | None:
    """Return the sign-in URL that a display_data message shows, or None for other messages.

    The URL must appear both as the ``href`` of the HTML link and on a line of
    its own in the plain-text form.
    """
    if message["msg_type"] != "display_data":
        return None
    data = message["content"]["data"]
    match = _LINK_HTML.search(data.get("text/html", ""))
    if match is None:
        return None
    url = html.unescape(match.group(1))
    plain_lines = [line.strip() for line in data.get("text/plain", "").splitlines()]
    assert url in plain_lines, "the text/plain form does not show the link on a line of its own"
    return url


class Browser:
    """An ``on_message`` callback that follows each sign-in link as the user's browser would."""

    def __init__(self, *, approve: bool = True) -> None:
        self.approve = approve
        self.links: list[str] = []

    def __call__(self, message: dict[str, Any]) -> None:
        from astro_jupyter.emulator import follow_login_link

        url = login_link(message)
        if url is None:
            return
        self.links.append(url)
        follow_login_link(url, approve=self.approve)


def start_logged_out_kernel(start_kernel: Any, env: dict[str, str]) -> Any:
    """Start a kernel and load the extension in it, without logging in."""
    kernel = start_kernel(env)
    loaded = kernel.execute("%load_ext astro_jupyter")
    assert loaded.status == "ok", loaded.reply
    return kernel


def start_logged_in_kernel(start_kernel: Any, env: dict[str, str], email: str) -> Any:
    """Start a kernel, load the extension and log in to the emulator as ``email`` by link.

    The test plays the browser, so the login is the real one: authorize,
    loopback callback, token exchange and saving to config.yaml.
    """
    kernel = start_logged_out_kernel(start_kernel, env)
    browser = Browser()
    login = kernel.execute(f"%astro_login localhost -e {email} -l", on_message=browser)
    assert login.status == "ok", login.reply
    assert len(browser.links) == 1
    return kernel


class LinkFollower:
    """A stand-in for the user's browser that follows each sign-in link a ``LoginFlow`` shows.

    Each link is followed with ``follow_login_link(url, **follow_args)`` on a
    thread of its own. The flow calls its listeners on its own thread, which
    must stay free to receive the callback that following the link leads to.

    Use it as a context manager around ``flow.start().wait(...)``. Leaving the
    block joins every thread, also when the login raised. ``results`` contains
    what each ``follow_login_link`` call returned.
    """

    def __init__(self, flow: Any, **follow_args: Any) -> None:
        self.results: list[Any] = []
        self._follow_args = follow_args
        self._threads: list[threading.Thread] = []
        flow.subscribe(self._on_event)

    def __enter__(self) -> LinkFollower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for thread in self._threads:
            thread.join(LOGIN_TIMEOUT_S)

    def _on_event(self, event: Any) -> None:
        if event.authorize_url:
            thread = threading.Thread(target=self._follow, args=(event.authorize_url,))
            self._threads.append(thread)
            thread.start()

    def _follow(self, url: str) -> None:
        from astro_jupyter.emulator import follow_login_link

        self.results.append(follow_login_link(url, **self._follow_args))


def log_in_by_link(emulator: Any, store: Any, *, email: str = ADA_EMAIL, **follow_args: Any) -> Any:
    """Log ``email`` in to the emulator's localhost context by link, playing the browser.

    Returns the ``LoginResult`` once the login is saved in ``store``. The result
    contains no token. ``follow_args`` are passed to ``follow_login_link``.
    """
    from astro_jupyter.login_flow import LoginFlow, LoginMode, LoginOptions

    options = LoginOptions(
        domain="localhost", api_base_url=emulator.base_url, callback_port=0, callback_timeout_s=10
    )
    flow = LoginFlow(options, store, mode=LoginMode.LINK, email=email)
    with LinkFollower(flow, **follow_args):
        return flow.start().wait(LOGIN_TIMEOUT_S)


@pytest.fixture
def saved_login(emulator: Any, ada_account: str, astro_config_path: Path) -> Any:
    """Log ada@example.com in to the emulator's localhost context in this process, by link.

    The login is saved in the test's config.yaml as %astro_login saves it.
    Returns the ``LoginResult``, which contains no token.
    """
    from astro_jupyter.config_store import ConfigStore

    return log_in_by_link(emulator, ConfigStore(astro_config_path))


def whoami_fields(output: str) -> dict[str, str]:
    """Return the ``Label: value`` lines of ``%astro_whoami`` as a dict."""
    fields = {}
    for line in output.splitlines():
        label, _, value = line.partition(":")
        fields[label] = value.strip()
    return fields
