"""A Playwright page object for one notebook open in JupyterLab 4 or Notebook 7.

It drives the notebook the way a user does: it opens the URL, waits for the
kernel, selects cells and presses keys, clicks toolbar buttons and menus, and
reads the rendered output. Only ``shutdown_kernel`` goes around the browser,
through the server's REST API.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Literal

import nbformat
from playwright.sync_api import Locator, Page, expect

from .jupyter_server import JupyterServer

__all__ = ["LAB", "NOTEBOOK7", "NotebookPage", "UserInterface"]

UserInterface = Literal["lab", "notebook7"]
LAB: UserInterface = "lab"
NOTEBOOK7: UserInterface = "notebook7"

DEFAULT_TIMEOUT_S = 30.0
# Seconds between two reads of the file on disk while waiting for a save.
_SAVE_POLL_S = 0.05

# The kernel item of JupyterLab's status bar reads "<kernel name> | <status>".
# "No Kernel | Idle" is shown before a kernel is attached, so it must not count.
_LAB_STATUS_IDLE = re.compile(r"^(?!No Kernel).+ \| Idle$")
_EXECUTION_COUNT = re.compile(r"^\[(\d+)\]:$")


class NotebookPage:
    """One notebook file, opened in a browser page through one of the two interfaces.

    ``path`` is relative to the server's root folder, as in the server's URLs.
    ``timeout_s`` is the default for every wait. Each method also takes its own.
    """

    def __init__(
        self,
        page: Page,
        server: JupyterServer,
        path: str,
        *,
        ui: UserInterface = LAB,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if ui not in (LAB, NOTEBOOK7):
            raise ValueError(f"Invalid user interface {ui!r}: expected {LAB!r} or {NOTEBOOK7!r}.")
        self.page = page
        self.server = server
        self.path = path
        self.ui = ui
        self.timeout_s = timeout_s

    @property
    def file_path(self) -> Path:
        """The notebook file on disk."""
        return self.server.root_dir / self.path

    @property
    def notebook(self) -> Locator:
        """The notebook widget that contains the cells."""
        return self.page.locator(".jp-NotebookPanel .jp-Notebook")

    @property
    def toolbar(self) -> Locator:
        """The toolbar above the notebook, with the save and run buttons."""
        return self.page.locator(".jp-NotebookPanel-toolbar")

    # Opening ------------------------------------------------------------

    def open(self, *, timeout_s: float | None = None) -> NotebookPage:
        """Open the notebook and return once its kernel is idle.

        JupyterLab opens it in a fresh workspace (``?reset``), so tabs left by
        an earlier test do not come back. The notebook needs a ``kernelspec``
        in its metadata, or the interface shows a dialog to select a kernel.
        """
        timeout_s = self._timeout(timeout_s)
        if self.ui == LAB:
            url = self.server.lab_url(self.path)
        else:
            url = self.server.notebook7_url(self.path)
        self.page.goto(url, timeout=timeout_s * 1000)
        expect(self.notebook).to_be_visible(timeout=timeout_s * 1000)
        self.wait_for_kernel_idle(timeout_s=timeout_s)
        return self

    def wait_for_kernel_idle(self, *, timeout_s: float | None = None) -> None:
        """Wait until the interface shows that the notebook's kernel is started and idle.

        The execution indicator in the notebook toolbar shows idle while no
        kernel is attached yet, so it counts only once the kernel name button
        names a kernel. JupyterLab's status bar shows both in one text item,
        which Notebook 7 does not have.
        """
        timeout_ms = self._timeout(timeout_s) * 1000
        if self.ui == LAB:
            status = self.page.locator("#jp-main-statusbar").get_by_text(_LAB_STATUS_IDLE)
            expect(status).to_be_visible(timeout=timeout_ms)
            return
        kernel_name = self.toolbar.locator(".jp-Toolbar-kernelName")
        expect(kernel_name).not_to_have_text(
            re.compile(r"^\s*(No Kernel)?\s*$"), timeout=timeout_ms
        )
        indicator = self.toolbar.locator(".jp-Notebook-ExecutionIndicator")
        expect(indicator).to_have_attribute("data-status", "idle", timeout=timeout_ms)

    # Cells --------------------------------------------------------------

    def cell(self, index: int) -> Locator:
        """Return the cell at ``index``, counting from 0 and including markdown cells."""
        return self.notebook.locator(".jp-Cell").nth(index)

    def output(self, index: int) -> Locator:
        """Return the output area of the code cell at ``index``."""
        return self.cell(index).locator(".jp-OutputArea")

    def execution_count(self, index: int) -> int | None:
        """Return the execution count in the cell's prompt, or None for ``[ ]`` and ``[*]``."""
        prompt = self.cell(index).locator(".jp-InputArea-prompt").inner_text().strip()
        match = _EXECUTION_COUNT.match(prompt)
        return int(match.group(1)) if match else None

    def run_cell(self, index: int, *, wait: bool = True, timeout_s: float | None = None) -> None:
        """Select the cell at ``index`` and run it with Ctrl+Enter.

        Ctrl+Enter runs the cell in place. Shift+Enter would also select the
        next cell, and on the last cell it adds an empty one, which would then
        be saved. With ``wait``, return once the prompt shows a new execution
        count. Without it, return at once, for a cell that blocks until the
        test acts on its output.
        """
        cell = self.cell(index)
        before = self.execution_count(index)
        # A click on the prompt selects the cell in command mode, without
        # moving focus into its editor or into a widget in its output.
        cell.locator(".jp-InputArea-prompt").click()
        self.page.keyboard.press("Control+Enter")
        if wait:
            self._wait_for_new_counts({index: before}, timeout_s)

    def run_all(self, *, wait: bool = True, timeout_s: float | None = None) -> None:
        """Run every cell with the menu item Run > Run All Cells.

        With ``wait``, return once every code cell with source shows a new
        execution count. Code cells without source are not run, so they are
        not waited for.
        """
        before = {index: self.execution_count(index) for index in self._code_cells_with_source()}
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        if wait:
            self._wait_for_new_counts(before, timeout_s)

    def wait_for_output_text(
        self, index: int, text: str | re.Pattern[str], *, timeout_s: float | None = None
    ) -> Locator:
        """Wait until the output area of the cell at ``index`` contains ``text`` and return it."""
        output = self.output(index)
        expect(output).to_contain_text(text, timeout=self._timeout(timeout_s) * 1000)
        return output

    # Files and screenshots ----------------------------------------------

    def save(self, *, timeout_s: float | None = None) -> nbformat.NotebookNode:
        """Click the toolbar's save button, wait until the file on disk changes, and read it.

        The button is used rather than Ctrl+S, because JupyterLab ignores
        Ctrl+S while the focus is inside a widget's input. Raises
        ``TimeoutError`` when the file does not change within the timeout.
        """
        timeout_s = self._timeout(timeout_s)
        before = _file_state(self.file_path)
        self.toolbar.locator('[data-command="docmanager:save"]').click()
        deadline = time.monotonic() + timeout_s
        while True:
            if _file_state(self.file_path) != before:
                # Jupyter Server writes the file in place after keeping a
                # backup copy, so a read can see it empty or half written.
                # Only a file that parses as a whole is the saved notebook.
                try:
                    return nbformat.read(self.file_path, as_version=4)
                except (nbformat.reader.NotJSONError, ValueError):
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.file_path} did not change into a complete notebook within "
                    f"{timeout_s:g} s after clicking the save button."
                )
            time.sleep(_SAVE_POLL_S)

    def screenshot(self, target: Locator | None, path: str | Path) -> Path:
        """Save a PNG screenshot of ``target``, or of the whole page when it is None.

        Missing parent folders of ``path`` are created. Returns ``path``.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if target is None:
            self.page.screenshot(path=str(path))
        else:
            target.screenshot(path=str(path))
        return path

    # Kernel -------------------------------------------------------------

    def shutdown_kernel(self) -> int:
        """Delete this notebook's sessions on the server, which shuts their kernels down.

        The page stays open and shows that the kernel is gone. Returns the
        number of sessions deleted.
        """
        return self.server.delete_sessions(self.path)

    # Internals ----------------------------------------------------------

    def _timeout(self, timeout_s: float | None) -> float:
        return self.timeout_s if timeout_s is None else timeout_s

    def _code_cells_with_source(self) -> list[int]:
        indexes = []
        for index in range(self.notebook.locator(".jp-Cell").count()):
            cell = self.cell(index)
            if "jp-CodeCell" not in (cell.get_attribute("class") or "").split():
                continue
            if cell.locator(".jp-InputArea-editor").inner_text().strip():
                indexes.append(index)
        return indexes

    def _wait_for_new_counts(self, before: dict[int, int | None], timeout_s: float | None) -> None:
        """Wait until each cell in ``before`` shows an execution count other than its old one.

        A kernel numbers its executions upward, so a finished new run always
        shows a count that differs from the previous one.
        """
        deadline = time.monotonic() + self._timeout(timeout_s)
        for index, old_count in before.items():
            if old_count is None:
                new_count = re.compile(r"^\[\d+\]:$")
            else:
                new_count = re.compile(rf"^\[(?!{old_count}\])\d+\]:$")
            remaining_ms = max(deadline - time.monotonic(), 0.001) * 1000
            prompt = self.cell(index).locator(".jp-InputArea-prompt")
            expect(prompt).to_have_text(new_count, timeout=remaining_ms)


def _file_state(path: Path) -> tuple[int, str] | None:
    """Return the modification time in ns and the SHA-256 of the file, or None if it is absent."""
    try:
        status = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, digest
