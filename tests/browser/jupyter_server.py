"""Start and stop a private JupyterLab 4 server on 127.0.0.1 for browser tests.

The server runs ``python -m jupyterlab`` with a random token on a port that the
operating system picks. Its root folder, settings, kernel specs, runtime files
and its ``HOME`` are temporary folders of its own, so it neither reads nor
writes the user's Jupyter, IPython or Astro files. Kernels inherit the
server's environment, so they see the same folders and any extra variables
passed to ``JupyterServer``.

When the ``notebook`` package is installed in the server's Python, the same
server also serves the Notebook 7 interface at ``/notebooks/<path>``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

__all__ = ["JupyterServer", "JupyterServerError"]

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
REQUEST_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 40

# Variables of the outer environment that would point the server or its
# kernels at the user's own Jupyter, IPython or Astro files, or at a display.
_CLEARED_PREFIXES = ("JUPYTER", "JPY_", "ASTRO_", "XDG_")
_CLEARED_VARIABLES = ("IPYTHONDIR", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY")

# Written into the server's own JupyterLab settings folder. saveState makes
# JupyterLab store widget state in the saved .ipynb. The notification settings
# keep JupyterLab from fetching news or checking for updates on the internet,
# and from showing a toast that requests permission to do so.
_LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class JupyterServerError(RuntimeError):
    """The Jupyter server failed to start, stopped early, or a REST request to it failed."""


class JupyterServer:
    """A JupyterLab server process on 127.0.0.1 with its own temporary folders.

    Use it as a context manager, or call ``start()`` and ``stop()``. ``python``
    is the interpreter that runs the server and, through the kernel spec that
    is written for it, every kernel. ``extra_env`` is added last to the
    server's environment, so its kernels see it too.
    """

    def __init__(
        self,
        *,
        python: str | os.PathLike[str] = sys.executable,
        extra_env: Mapping[str, str] | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.python = str(python)
        self.extra_env = dict(extra_env or {})
        self.start_timeout_s = start_timeout_s
        self.token = secrets.token_hex(24)
        self.port: int | None = None
        self._base_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._serves_notebook7: bool | None = None
        # Urllib would send requests through a proxy from the environment
        # unless NO_PROXY lists loopback, so proxies are switched off.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # Folders ------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        """The temporary folder that contains all of the server's folders and its log."""
        if self._base_dir is None:
            raise JupyterServerError("The Jupyter server has not been started.")
        return self._base_dir

    @property
    def root_dir(self) -> Path:
        """The folder the server serves: notebook paths in URLs are relative to it."""
        return self.base_dir / "root"

    @property
    def home_dir(self) -> Path:
        """The ``HOME`` of the server and its kernels."""
        return self.base_dir / "home"

    @property
    def settings_dir(self) -> Path:
        """The JupyterLab user settings folder (``JUPYTERLAB_SETTINGS_DIR``)."""
        return self.base_dir / "lab-settings"

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self.base_dir / "server.log"

    # URLs ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server's URL, ending with a slash, such as ``http://127.0.0.1:PORT/``."""
        if self.port is None:
            raise JupyterServerError("The Jupyter server has not been started.")
        return f"http://127.0.0.1:{self.port}/"

    def lab_url(self, path: str) -> str:
        """Return the JupyterLab URL that opens the notebook at ``path`` in a fresh workspace.

        ``reset`` makes JupyterLab ignore the saved layout, so tabs that an earlier
        test left open are not restored. The token logs the browser in.
        """
        return f"{self.base_url}lab/tree/{_quote_path(path)}?reset&token={self.token}"

    def notebook7_url(self, path: str) -> str:
        """Return the Notebook 7 URL that opens the notebook at ``path``.

        Raises ``JupyterServerError`` when the server does not serve Notebook 7.
        """
        if not self.serves_notebook7():
            raise JupyterServerError(
                "This Jupyter server does not serve Notebook 7 at /notebooks/: install the "
                f"notebook package into {self.python}'s environment."
            )
        return f"{self.base_url}notebooks/{_quote_path(path)}?token={self.token}"

    def serves_notebook7(self) -> bool:
        """Return whether the server serves Notebook 7, which the ``notebook`` package adds.

        Notebook 7 registers ``/tree``, and without it the server returns 404
        there. The result is cached.
        """
        if self._serves_notebook7 is None:
            status, _body = self._request("GET", "tree")
            if status not in (200, 404):
                raise JupyterServerError(f"GET /tree failed: HTTP {status}")
            self._serves_notebook7 = status == 200
        return self._serves_notebook7

    # Lifecycle ----------------------------------------------------------

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> JupyterServer:
        """Start the server and return once ``GET /api/status`` succeeds.

        Raises ``JupyterServerError`` with the end of the server's log when the
        process exits early or does not respond within ``start_timeout_s``
        seconds, and when ``python`` cannot be started. The process is stopped
        and its folders are removed in each case.
        """
        if self._process is not None:
            raise JupyterServerError("The Jupyter server is already running.")
        self._base_dir = Path(tempfile.mkdtemp(prefix="astro-jupyter-server-"))
        command = [
            self.python,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            # Port 0 lets the operating system pick a free port, which the server
            # then records in its runtime info file.
            "--ServerApp.port=0",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.terminals_enabled=False",
            # The server refuses to run as root without this, and CI runs as root.
            "--ServerApp.allow_root=True",
            # Keep JupyterLab from contacting a news feed, an update check or
            # a package index.
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            # jupyter-lsp otherwise runs `npm prefix -g` to look for language
            # servers, a child process that the tests do not need.
            "--LanguageServerManager.autodetect=False",
        ]
        try:
            env = self._prepare_folders()
            with open(self.log_path, "wb") as log:
                self._process = subprocess.Popen(
                    command,
                    cwd=self.root_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self._wait_until_ready()
        except OSError as error:
            self.stop()
            raise JupyterServerError(
                f"Starting the Jupyter server with {self.python} failed: {error}"
            ) from error
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and every process it started, then remove its folders.

        SIGTERM makes the server shut its kernels down and exit. A server still
        running after ``STOP_GRACE_S`` seconds is killed, and so is any kernel
        that outlived it. Calling ``stop()`` again does nothing.
        """
        process = self._process
        if process is not None:
            self._process = None
            children = _descendants(process.pid)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            _kill_survivors(children)
        self.port = None
        self._serves_notebook7 = None
        if self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def is_running(self) -> bool:
        """Return whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def child_pids(self) -> list[int]:
        """Return the process ids of the processes that the server started and that still run.

        These are its kernels, and whatever the kernels started.
        """
        if self._process is None:
            return []
        return [child.pid for child in _descendants(self._process.pid)]

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the server's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return f"(the log {self.log_path} cannot be read: {error})"
        return "\n".join(text.splitlines()[-lines:])

    # REST API -----------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Send a request to the server's REST API and return the decoded JSON reply.

        ``path`` is relative to ``/api/``, such as ``"sessions"``. Returns None
        for an empty reply (HTTP 204). Raises ``JupyterServerError`` on an
        error status.
        """
        status, payload = self._request(method, f"api/{path}", body)
        if status >= 400:
            detail = payload.decode("utf-8", errors="replace")[:500]
            raise JupyterServerError(f"{method} /api/{path} failed: HTTP {status} {detail}")
        return json.loads(payload) if payload else None

    def sessions(self) -> list[dict[str, Any]]:
        """Return the server's sessions, each linking a notebook path to a kernel."""
        return self.api("GET", "sessions")

    def kernels(self) -> list[dict[str, Any]]:
        """Return the server's running kernels."""
        return self.api("GET", "kernels")

    def delete_session(self, session_id: str) -> None:
        """Delete one session, which shuts its kernel down.

        A session that is already gone is ignored, because the browser can
        delete it at the same moment.
        """
        self._delete(f"sessions/{session_id}")

    def delete_sessions(self, path: str | None = None) -> int:
        """Delete the sessions of the notebook at ``path``, or all sessions, and their kernels.

        Without ``path``, also shut down any kernel that no session used.
        Returns the number of sessions deleted.
        """
        deleted = 0
        for session in self.sessions():
            if path is None or session["path"] == path:
                self.delete_session(session["id"])
                deleted += 1
        if path is None:
            for kernel in self.kernels():
                self._delete(f"kernels/{kernel['id']}")
        return deleted

    # Internals ----------------------------------------------------------

    def _prepare_folders(self) -> dict[str, str]:
        """Create the server's folders and return the environment that points at them."""
        folders = {
            "HOME": self.home_dir,
            "JUPYTER_CONFIG_DIR": self.base_dir / "jupyter-config",
            "JUPYTER_DATA_DIR": self.base_dir / "jupyter-data",
            "JUPYTER_RUNTIME_DIR": self.base_dir / "jupyter-runtime",
            "IPYTHONDIR": self.base_dir / "ipython",
            "JUPYTERLAB_SETTINGS_DIR": self.settings_dir,
            "JUPYTERLAB_WORKSPACES_DIR": self.base_dir / "lab-workspaces",
        }
        self.root_dir.mkdir()
        for folder in folders.values():
            folder.mkdir()
        for name, settings in _LAB_SETTINGS.items():
            settings_file = self.settings_dir / name
            settings_file.parent.mkdir(parents=True, exist_ok=True)
            settings_file.write_text(json.dumps(settings), encoding="utf-8")
        self._write_kernel_spec(folders["JUPYTER_DATA_DIR"])

        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_CLEARED_PREFIXES) and name not in _CLEARED_VARIABLES
        }
        env.update({name: str(folder) for name, folder in folders.items()})
        env["JUPYTER_TOKEN"] = self.token
        env["PYTHONUNBUFFERED"] = "1"
        for name in ("NO_PROXY", "no_proxy"):
            env[name] = "127.0.0.1,localhost,::1"
        env.update(self.extra_env)
        return env

    def _write_kernel_spec(self, data_dir: Path) -> None:
        """Write a ``python3`` kernel spec that runs ``self.python``.

        It goes into the server's own data folder, which Jupyter searches first.
        The spec that ipykernel installs runs ``python`` from ``PATH``, which
        could be another interpreter without astro_jupyter.
        """
        spec = {
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": True},
        }
        spec_dir = data_dir / "kernels" / "python3"
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        info_file = (
            self.base_dir / "jupyter-runtime" / f"jpserver-{self._require_process().pid}.json"
        )
        last_error = "no runtime info file yet"
        while time.monotonic() < deadline:
            returncode = self._require_process().poll()
            if returncode is not None:
                raise JupyterServerError(
                    f"The Jupyter server exited with code {returncode} while starting. "
                    f"Last lines of its log:\n{self.log_tail()}"
                )
            if self.port is None:
                self.port = _read_port(info_file)
            if self.port is not None:
                try:
                    status, _body = self._request("GET", "api/status")
                except OSError as error:
                    last_error = f"GET /api/status failed: {error}"
                else:
                    if status == 200:
                        return
                    last_error = f"GET /api/status returned HTTP {status}"
            time.sleep(0.1)
        raise JupyterServerError(
            f"The Jupyter server did not respond to GET /api/status within "
            f"{self.start_timeout_s:g} s ({last_error}). "
            f"Last lines of its log:\n{self.log_tail()}"
        )

    def _delete(self, path: str) -> None:
        """Send ``DELETE /api/<path>``, treating 404 (already gone) as success."""
        status, payload = self._request("DELETE", f"api/{path}")
        if status not in (204, 404):
            detail = payload.decode("utf-8", errors="replace")[:500]
            raise JupyterServerError(f"DELETE /api/{path} failed: HTTP {status} {detail}")

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise JupyterServerError("The Jupyter server has not been started.")
        return self._process

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Send a request with the token and return the HTTP status and the body.

        Raises ``OSError`` (``urllib.error.URLError`` included) when the server
        cannot be reached.
        """
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 (the URL is always the loopback server)
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT_S) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()


def _quote_path(path: str) -> str:
    return urllib.parse.quote(path.lstrip("/"))


def _read_port(info_file: Path) -> int | None:
    """Return the port from the server's runtime info file, or None until it is written."""
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # The server writes the file once it listens. A partly written file
        # fails to parse, and the next poll reads it again.
        return None
    return int(info["port"])


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_survivors(processes: list[psutil.Process]) -> None:
    """Terminate, then kill, any of ``processes`` that is still alive."""
    alive = [process for process in processes if process.is_running()]
    for process in alive:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    still_alive = psutil.wait_procs(alive, timeout=STOP_GRACE_S / 2)[1]
    for process in still_alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(still_alive, timeout=STOP_GRACE_S / 2)
