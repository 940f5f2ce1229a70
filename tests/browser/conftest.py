"""Fixtures for browser tests: headless Chromium driven by Playwright, and a JupyterLab server.

The browser and the server start once per test session. Each test gets a new
browser context, so cookies and storage do not carry over, and every kernel
the test started is shut down after it.

The server has its own ``HOME`` and Jupyter folders, separate from the
per-test ``HOME`` that the ``hermetic_env`` fixture sets for this process,
because it is started once for all tests. Its kernels inherit the server's
environment, not the test's.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from .chromium import launch_chromium
from .jupyter_server import JupyterServer
from .notebook_page import LAB, NotebookPage, UserInterface

VIEWPORT = {"width": 1280, "height": 900}
# Playwright's default for every action and wait, in milliseconds.
PAGE_TIMEOUT_MS = 30_000

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """Yield a started sync Playwright driver."""
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def chromium_browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Yield headless Chromium from Debian's package, with a temporary profile and HOME.

    Fails, and never skips, when Chromium is not installed.
    """
    with tempfile.TemporaryDirectory(prefix="astro-chromium-home-") as home:
        browser = launch_chromium(playwright_driver, Path(home))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def lab_server() -> Iterator[JupyterServer]:
    """Yield a JupyterLab server on 127.0.0.1, shared by all browser tests.

    Its kernels run this interpreter, so they import the astro_jupyter under test.
    """
    with JupyterServer() as server:
        yield server


@pytest.fixture(autouse=True)
def no_kernel_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete every session and kernel on the shared server after each test that used it.

    Fails the test when a kernel still runs afterwards. Being autouse, this
    fixture is torn down after ``browser_page``, so the page is closed by then
    and cannot start a new kernel.
    """
    if "lab_server" not in request.fixturenames:
        yield
        return
    server: JupyterServer = request.getfixturevalue("lab_server")
    yield
    server.delete_sessions()
    kernels = server.kernels()
    if kernels:
        pytest.fail(f"Kernels still run after their sessions were deleted: {kernels}")


@pytest.fixture
def browser_page(
    chromium_browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    """Yield a page in a new browser context, and close the context after the test.

    When the test failed, a screenshot of the page is saved as
    ``failure.png`` in the test's temporary folder.
    """
    context = chromium_browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            screenshot = tmp_path / "failure.png"
            try:
                page.screenshot(path=str(screenshot))
            except PlaywrightError as error:
                # A crashed or closed page must not hide the test's own failure.
                print(f"Taking a screenshot of the failed test's page failed: {error}")
            else:
                print(f"Screenshot of the failed test's page: {screenshot}")
        context.close()


@pytest.fixture
def write_notebook(lab_server: JupyterServer, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Return a function that writes a notebook into the server's root folder.

    ``write_notebook(cells, name=None)`` takes code cell sources as strings, or
    cells made with ``nbformat.v4``, and returns the notebook's path relative
    to the root folder, which is what ``NotebookPage`` takes. The default name
    is the test's name, with a number added for each further notebook.
    The notebook names the ``python3`` kernel, so it opens without a dialog.
    """
    base_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    written: list[str] = []

    def write(cells: Sequence[str | nbformat.NotebookNode], name: str | None = None) -> str:
        if name is None:
            suffix = f"_{len(written)}" if written else ""
            name = f"{base_name}{suffix}.ipynb"
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = dict(KERNELSPEC)
        notebook.cells = [
            nbformat.v4.new_code_cell(cell) if isinstance(cell, str) else cell for cell in cells
        ]
        nbformat.validate(notebook)
        path = lab_server.root_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, path)
        written.append(name)
        return name

    return write


@pytest.fixture
def open_notebook(browser_page: Page, lab_server: JupyterServer) -> Callable[..., NotebookPage]:
    """Return a function that opens a notebook in this test's page and waits for its kernel.

    ``open_notebook(path, ui="lab")`` returns the ``NotebookPage``. Pass
    ``ui="notebook7"`` for the Notebook 7 interface.
    """

    def open_page(path: str, ui: UserInterface = LAB) -> NotebookPage:
        return NotebookPage(browser_page, lab_server, path, ui=ui).open()

    return open_page


@pytest.fixture(scope="module")
def remote_browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """A second Chromium standing in for a browser on another machine than the kernel.

    ``localhost`` resolves to nothing in it, so the redirect to the kernel's
    loopback callback fails there as it would on another machine. The
    emulator stays reachable on 127.0.0.1.
    """
    with tempfile.TemporaryDirectory(prefix="astro-remote-chromium-home-") as home:
        browser = launch_chromium(
            playwright_driver, Path(home), ["--host-resolver-rules=MAP localhost ~NOTFOUND"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def other_device(remote_browser: Browser) -> Iterator[Page]:
    """A page of the remote browser, in a context of its own."""
    context = remote_browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def approve_on_other_device(page: Page, url: str | None) -> str:
    """Open the sign-in link on the other device, approve, and return the address it ends on.

    The redirect to the callback fails there. Chromium then shows its error
    page with the failed address in the address bar, which is what a user
    copies; Playwright reports that address as the failed request's URL.
    """
    assert url is not None
    page.goto(url)
    callback_failed = page.expect_event(
        "requestfailed", lambda request: "/callback?" in request.url
    )
    with callback_failed as failed:
        page.get_by_role("button", name="Approve").click()
    request = failed.value
    assert request.failure == "net::ERR_NAME_NOT_RESOLVED"
    return request.url
