#!/usr/bin/env python3
"""Run notebooks/quickstart.ipynb headlessly against the Astro emulator and report the outcome.

Usage: ``python3 tools/demo.py [--keep]``

The first run creates ``.venv`` in the repository and installs the project into
it. Then, inside that environment, the demo:

1. starts the Astro emulator on 127.0.0.1 with a free port, approving every
   login as ada@example.com;
2. runs the notebook in a real ipykernel with nbclient, with ``ASTRO_HOME`` in a
   temporary folder, so the user's own ``~/.astro`` is neither read nor written;
3. plays the user's browser: when a cell shows the emulator's sign-in link, a
   background thread opens it with ``follow_login_link``;
4. prints what the notebook printed, where the config was written, and whether
   any secret that the emulator issued appears in the executed notebook.

Exits 0 on success and 1 when a cell fails or a secret leaked.
"""

from __future__ import annotations

import bootstrap

if __name__ == "__main__":
    bootstrap.reexec_in_venv(__file__)

# The imports below need the packages installed in .venv, which the lines above switch to.
import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import nbformat  # noqa: E402
from ipykernel.kernelspec import write_kernel_spec  # noqa: E402
from jupyter_client import AsyncKernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError  # noqa: E402

from astro_jupyter.emulator import Emulator, follow_login_link  # noqa: E402

NOTEBOOK_PATH = bootstrap.REPO_ROOT / "notebooks" / "quickstart.ipynb"
DEMO_EMAIL = "ada@example.com"
DEMO_ORGANIZATION = "Ada Labs"
DEMO_WORKSPACE = "Research"
CELL_TIMEOUT_S = 60
BROWSER_JOIN_TIMEOUT_S = 15.0


class BrowserPlayingClient(NotebookClient):
    """A notebook client that opens the emulator's sign-in links as the user's browser would.

    Every output is checked for a ``text/plain`` line that starts with the
    emulator's authorize URL. Each new link is followed in a background thread,
    because the cell that shows it blocks until the browser reaches the kernel's
    loopback callback.
    """

    def __init__(self, notebook: Any, *, authorize_prefix: str, **kwargs: Any) -> None:
        super().__init__(notebook, **kwargs)
        self.on_cell_execute = self._record_cell
        self.current_cell_index: int | None = None
        self.browser_errors: list[str] = []
        self._authorize_prefix = authorize_prefix
        self._followed_links: set[str] = set()
        self._browser_threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def output(
        self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int
    ) -> Any:
        # nbclient calls this hook inside its event loop, which a failing browser
        # thread needs in order to interrupt the kernel.
        self._loop = asyncio.get_running_loop()
        for url in self._login_links(msg):
            if url in self._followed_links:
                continue
            self._followed_links.add(url)
            print(f"  Browser: opening the sign-in link of cell {cell_index + 1}.", flush=True)
            thread = threading.Thread(target=self._open_link, args=(url,), daemon=True)
            self._browser_threads.append(thread)
            thread.start()
        return super().output(outs, msg, display_id, cell_index)

    def join_browser(self) -> None:
        """Wait for every browser thread, so the report includes their errors."""
        for thread in self._browser_threads:
            thread.join(BROWSER_JOIN_TIMEOUT_S)
            if thread.is_alive():
                self.browser_errors.append(
                    f"following the sign-in link did not finish in {BROWSER_JOIN_TIMEOUT_S:g} s"
                )

    def _record_cell(self, cell: Any, cell_index: int, **_: Any) -> None:
        self.current_cell_index = cell_index

    def _login_links(self, msg: dict[str, Any]) -> list[str]:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            text = content.get("text", "")
        else:
            text = content.get("data", {}).get("text/plain", "")
        lines = (line.strip() for line in str(text).splitlines())
        return [line for line in lines if line.startswith(self._authorize_prefix)]

    def _open_link(self, url: str) -> None:
        try:
            page = follow_login_link(url)
        except Exception as error:  # any failure is reported after the run
            self._fail_login(f"following the sign-in link failed: {error}")
            return
        if page.status >= 400:
            self._fail_login(f"the sign-in ended with HTTP status {page.status}: {page!r}")

    def _fail_login(self, message: str) -> None:
        """Record a browser failure and interrupt the kernel, which cancels the waiting login.

        Without the interrupt the login cell would wait for the callback until
        the cell timeout.
        """
        self.browser_errors.append(message)
        if self.km is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.km.interrupt_kernel(), self._loop)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run notebooks/quickstart.ipynb against the Astro emulator and report."
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep the temporary folder with config.yaml and the executed notebook.",
    )
    return parser.parse_args()


def add_demo_account(emulator: Emulator) -> None:
    """Make the demo user a member of one organization with one workspace, and approve it.

    With a single workspace the login selects it, so the outcome names one. The
    emulator's default organization has two, and a headless kernel cannot ask
    which to use.
    """
    organization_id = emulator.add_organization(DEMO_ORGANIZATION, workspaces=(DEMO_WORKSPACE,))
    emulator.add_user(DEMO_EMAIL, organizations=(organization_id,))
    emulator.set_approve_as(DEMO_EMAIL)


def kernel_environment(emulator: Emulator, astro_home: Path) -> dict[str, str]:
    """Return the kernel's environment: this one without Astro variables, plus the demo's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ASTRO_")}
    env["ASTRO_HOME"] = str(astro_home)
    env["ASTRO_JUPYTER_API_URL"] = emulator.base_url
    env["ASTRO_JUPYTER_CALLBACK_PORT"] = "0"
    # Keep IPython's profile and history out of the user's home folder.
    env["IPYTHONDIR"] = str(astro_home / ".ipython")
    return env


def bypass_proxy_for_loopback() -> None:
    """Make requests (in this process and in the kernel) reach 127.0.0.1 directly.

    requests sends even loopback traffic through ``HTTP_PROXY`` unless ``NO_PROXY`` lists it.
    """
    for name in ("NO_PROXY", "no_proxy"):
        entries = [entry for entry in os.environ.get(name, "").split(",") if entry]
        os.environ[name] = ",".join([*entries, "127.0.0.1", "localhost", "::1"])


def make_kernel_manager(work_dir: Path) -> AsyncKernelManager:
    """Return a manager for a ``python3`` kernel that runs this interpreter.

    A ``python3`` kernel spec installed elsewhere could run another Python,
    one without astro_jupyter, so the demo writes its own.
    """
    kernels_dir = work_dir / "kernels"
    write_kernel_spec(kernels_dir / "python3")
    spec_manager = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=spec_manager)
    if os.name == "posix":
        # Unix sockets in the private work folder instead of loopback TCP ports,
        # which ipykernel 7 warns about on every start. The path must be absolute
        # because the kernel runs in another working folder.
        manager.transport = "ipc"
        manager.ip = str(work_dir / "kernel-ipc")
    return manager


def run_notebook(client: BrowserPlayingClient, env: dict[str, str]) -> str | None:
    """Run every cell and return None, or a one-line description of the failing cell."""
    try:
        client.execute(env=env, cleanup_kc=True)
    except CellExecutionError as error:
        return f"{describe_cell(client)} failed: {error.ename}: {first_line(error.evalue)}"
    except CellTimeoutError:
        return f"{describe_cell(client)} did not finish within {CELL_TIMEOUT_S} s"
    finally:
        client.join_browser()
    return None


def describe_cell(client: BrowserPlayingClient) -> str:
    index = client.current_cell_index
    if index is None:
        return "The kernel"
    source = first_line(client.nb.cells[index].source)
    return f"Cell {index + 1} ({source})"


def first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def print_cell_outputs(notebook: Any) -> None:
    """Print the text that each code cell wrote to stdout, indented under its cell number."""
    for index, cell in enumerate(notebook.cells):
        texts = [
            output.get("text", "")
            for output in cell.get("outputs", [])
            if output.get("output_type") == "stream" and output.get("name") == "stdout"
        ]
        if not texts:
            continue
        print(f"  [cell {index + 1}] {first_line(cell.source)}")
        for line in "".join(texts).splitlines():
            print(f"      {line}")


def check_no_secrets(emulator: Emulator, notebook: Any) -> str | None:
    """Return an error message if a secret the emulator issued or received is in the notebook."""
    secrets = emulator.issued_secrets()
    if not secrets:
        return "The emulator issued no secret, so the login cannot have worked."
    text = nbformat.writes(notebook)
    leaked = sum(1 for secret in secrets if secret in text)
    if leaked:
        return (
            f"{leaked} of the {len(secrets)} secrets the emulator issued or received appear in "
            "the executed notebook."
        )
    print(
        f"None of the {len(secrets)} secrets the emulator issued or received (tokens, codes, "
        "PKCE verifier) appears in the executed notebook."
    )
    return None


def run_demo(work_dir: Path, *, keep: bool) -> int:
    """Run the notebook against a fresh emulator, print the outcome and return the exit code."""
    astro_home = work_dir / "astro-home"
    astro_home.mkdir()
    config_path = astro_home / ".astro" / "config.yaml"
    with Emulator(host="127.0.0.1", port=0) as emulator:
        add_demo_account(emulator)
        print(f"Astro emulator listening on {emulator.base_url}, approving {DEMO_EMAIL}.")
        print(
            f"ASTRO_HOME is the temporary folder {astro_home}: "
            "your own ~/.astro is neither read nor written."
        )
        print(f"Running {NOTEBOOK_PATH.relative_to(bootstrap.REPO_ROOT)} in a new kernel ...")

        notebook = nbformat.read(NOTEBOOK_PATH, as_version=4)
        client = BrowserPlayingClient(
            notebook,
            authorize_prefix=emulator.oauth_base_url + "authorize?",
            km=make_kernel_manager(work_dir),
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(NOTEBOOK_PATH.parent)}},
        )
        failure = run_notebook(client, kernel_environment(emulator, astro_home))
        if keep:
            nbformat.write(notebook, work_dir / "quickstart.executed.ipynb")
        print_cell_outputs(notebook)

        sys.stdout.flush()
        for message in client.browser_errors:
            print(f"Browser: {message}", file=sys.stderr)
        if failure:
            print(failure, file=sys.stderr)
            return 1
        leak = check_no_secrets(emulator, notebook)
        if leak:
            print(leak, file=sys.stderr)
            return 1

    if not config_path.is_file():
        print(f"The login finished, but {config_path} was not written.", file=sys.stderr)
        return 1
    removal = "kept" if keep else "removed at exit; --keep keeps it"
    print(f"Config written to {config_path} ({removal}).")
    return 0


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    bypass_proxy_for_loopback()
    work_dir = Path(tempfile.mkdtemp(prefix="astro-jupyter-demo-"))
    try:
        exit_code = run_demo(work_dir, keep=args.keep)
    finally:
        if args.keep:
            print(f"Kept {work_dir}, with config.yaml and the executed notebook.")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    if exit_code == 0:
        print(f"Demo finished in {time.monotonic() - started:.1f} s.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
