"""The example notebooks in ``notebooks/``: stored clean, each one run by a test.

``NOTEBOOK_TESTS`` names the test that runs each notebook against the emulator,
and ``test_every_notebook_has_a_test`` fails when a notebook is added without
one. That check reads the test files, so it cannot tell whether the named test
runs the whole notebook. Each of those tests checks that itself, through the
outputs of the notebook's last cells.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import (
    ADA_EMAIL,
    ADA_ORGANIZATION,
    ADA_WORKSPACE,
    CELL_TIMEOUT_S,
    LOGIN_TIMEOUT_S,
    _use_ipc_transport,
    login_link,
    read_config,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

# Each notebook, and the test (file relative to the repository, and function) that runs it.
NOTEBOOK_TESTS = {
    "quickstart.ipynb": ("tests/test_notebooks.py", "test_quickstart_runs"),
    "headless.ipynb": ("tests/test_headless.py", "test_headless_notebook_runs"),
    "remote-hub.ipynb": (
        "tests/browser/test_remote_hub_notebook.py",
        "test_remote_hub_notebook_runs",
    ),
}


def stored_notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def module_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_notebook_has_a_test() -> None:
    names = {path.name for path in stored_notebooks()}

    assert names, f"no notebook found in {NOTEBOOK_DIR}"
    assert names - NOTEBOOK_TESTS.keys() == set(), "add a test that runs each new notebook"
    assert NOTEBOOK_TESTS.keys() - names == set(), "a notebook named here no longer exists"


@pytest.mark.parametrize("name", sorted(NOTEBOOK_TESTS))
def test_notebook_test_exists(name: str) -> None:
    test_file, test_function = NOTEBOOK_TESTS[name]
    path = REPO_ROOT / test_file

    assert path.is_file(), test_file
    assert test_function in module_functions(path), f"{test_file} has no {test_function}"
    # The notebook's path is built from its file name in the test module.
    assert f'"{name}"' in path.read_text(encoding="utf-8"), f"{test_file} never names {name}"


@pytest.mark.parametrize("path", stored_notebooks(), ids=lambda path: path.name)
def test_notebook_stored_clean(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]

    # JupyterLab shows a kernel selection dialog when the notebook names no kernel.
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert notebook.metadata["kernelspec"]["language"] == "python"
    assert code_cells
    for cell in notebook.cells:
        assert cell.get("id"), "every cell needs an id, which tests use to find it"
    for cell in code_cells:
        assert cell.outputs == [], cell.id
        assert cell.execution_count is None, cell.id
    assert "widgets" not in notebook.metadata, "saved widget state can hold a pasted secret"


class LinkFollowingClient:
    """Run a notebook with nbclient and follow each sign-in link it shows, as a browser would.

    A cell that shows a link waits for the browser, so each link is followed on
    a thread of its own while the cell runs.
    """

    def __init__(self, notebook: Any, manager: Any, cwd: Path) -> None:
        from nbclient import NotebookClient

        follower = self

        class Client(NotebookClient):
            def output(
                self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int
            ) -> Any:
                url = login_link(msg)
                if url is not None:
                    follower.follow(url)
                return super().output(outs, msg, display_id, cell_index)

        self.links: list[str] = []
        self.pages: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._client = Client(notebook, km=manager, timeout=CELL_TIMEOUT_S)
        self._cwd = cwd

    def follow(self, url: str) -> None:
        from astro_jupyter.emulator import follow_login_link

        self.links.append(url)
        thread = threading.Thread(target=lambda: self.pages.append(follow_login_link(url)))
        self._threads.append(thread)
        thread.start()

    def execute(self, env: dict[str, str]) -> None:
        try:
            self._client.execute(env=env, cwd=str(self._cwd), cleanup_kc=True)
        finally:
            for thread in self._threads:
                thread.join(LOGIN_TIMEOUT_S)


def cell_stdout(cell: Any) -> str:
    return "".join(
        output["text"]
        for output in cell.outputs
        if output["output_type"] == "stream" and output["name"] == "stdout"
    )


def test_quickstart_runs(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    kernel_spec_manager: Any,
    kernel_socket_dir: Path,
    astro_config_path: Path,
    leaked_secrets: Any,
    tmp_path: Path,
) -> None:
    from jupyter_client import AsyncKernelManager

    notebook = nbformat.read(NOTEBOOK_DIR / "quickstart.ipynb", as_version=4)
    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager)
    _use_ipc_transport(manager, kernel_socket_dir, "quickstart-kernel")
    client = LinkFollowingClient(notebook, manager, tmp_path)

    client.execute(kernel_env)

    assert len(client.links) == 1
    assert client.links[0].startswith(emulator.oauth_base_url)
    assert [page.status for page in client.pages] == [200]
    cells = {cell.id: cell for cell in notebook.cells}
    login_output = cell_stdout(cells["login"])
    assert f"Logged in to localhost as {ADA_EMAIL}." in login_output
    assert f"Organization: {ADA_ORGANIZATION} ({ada_account})" in login_output
    whoami_output = cell_stdout(cells["whoami"])
    assert f"Email: {ADA_EMAIL}\n" in whoami_output
    assert f"Organization ID: {ada_account}\n" in whoami_output
    api_output = cell_stdout(cells["call-api"])
    assert f"<{ADA_EMAIL}>" in api_output
    assert f"Workspace: {ADA_WORKSPACE} (" in api_output

    context = read_config(astro_config_path)["contexts"]["localhost"]
    token = context["token"].removeprefix("Bearer ")
    assert f"({len(token)} characters)" in api_output
    assert emulator.issued_secrets()
    assert leaked_secrets(nbformat.writes(notebook)) == []
