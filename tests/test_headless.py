"""Notebooks run headlessly with nbclient, as papermill runs them, against the Astro emulator.

A headless kernel has no stdin, so nothing may prompt. The tests run small
notebooks built with nbformat, and ``notebooks/headless.ipynb``, with each
source of credentials: ``$ASTRO_API_TOKEN``, ``$ASTRO_JUPYTER_TOKEN`` with
``%astro_login -t``, and a refreshable login saved in config.yaml. They check
the cell outputs, config.yaml, and that the executed notebook contains no secret
that the emulator issued.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import ADA_EMAIL, ADA_WORKSPACE, read_config, whoami_fields

from astro_jupyter.config_store import ConfigStore
from astro_jupyter.credentials import CredentialSource

HEADLESS_NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "headless.ipynb"

# The user behind the stand-in Astro API token. The emulator adds it to its
# default organization, so it is not the user of any saved login.
API_TOKEN_EMAIL = "scheduler@example.com"

# What the Credentials line of %astro_whoami shows for each source.
API_TOKEN_CREDENTIALS = CredentialSource.API_TOKEN.describe()
LOGIN_CREDENTIALS = CredentialSource.LOGIN.describe()
TOKEN_LOGIN_CREDENTIALS = CredentialSource.TOKEN_LOGIN.describe()

# A cell that prints the SHA-256 digest of get_token()'s result, so a test can
# compare tokens without any token reaching an output.
TOKEN_DIGEST_CELL = (
    "import hashlib\n"
    "import astro_jupyter\n"
    "print(hashlib.sha256(astro_jupyter.get_token().encode()).hexdigest())"
)

_EXPIRY_MINUTES = re.compile(r"\(in (?P<minutes>\d+) minutes\)$")
# "-e" as an option name, not as part of a word such as "-email" or "name-e".
_EMAIL_OPTION = re.compile(r"(?<![\w-])-e(?![\w-])")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build_notebook(*sources: str, failing: tuple[int, ...] = ()) -> Any:
    """Return a notebook with one code cell per source.

    The cells at the indexes in ``failing`` are tagged ``raises-exception``,
    so nbclient records their error and runs the next cell.
    """
    cells = []
    for index, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        if index in failing:
            cell.metadata["tags"] = ["raises-exception"]
        cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def cell_stdout(cell: Any) -> str:
    """Return the text that an executed cell wrote to stdout."""
    return "".join(
        output["text"]
        for output in cell.outputs
        if output["output_type"] == "stream" and output["name"] == "stdout"
    )


def cell_failure(cell: Any) -> tuple[str, str]:
    """Return the exception name and message that a failed cell showed.

    IPython shows a ``UsageError`` as one stderr line ``UsageError: message``
    and no error output. Other exceptions get an error output.
    """
    errors = [output for output in cell.outputs if output["output_type"] == "error"]
    if errors:
        assert len(errors) == 1, cell.outputs
        return errors[0]["ename"], errors[0]["evalue"]
    stderr = "".join(
        output["text"]
        for output in cell.outputs
        if output["output_type"] == "stream" and output["name"] == "stderr"
    )
    name, separator, message = stderr.partition(": ")
    assert separator, f"the cell showed no error: {cell.outputs}"
    assert message.endswith("\n"), stderr
    return name, message.removesuffix("\n")


def expiry_minutes(expires: str) -> int:
    """Return N from an ``Expires:`` value that ends in ``(in N minutes)``."""
    match = _EXPIRY_MINUTES.search(expires)
    assert match is not None, expires
    return int(match["minutes"])


def inject_parameters(notebook: Any, source: str) -> None:
    """Insert an ``injected-parameters`` cell after the ``parameters`` cell, as papermill does."""
    tagged = [
        index
        for index, cell in enumerate(notebook.cells)
        if "parameters" in cell.metadata.get("tags", [])
    ]
    assert len(tagged) == 1, "the notebook must have exactly one cell tagged 'parameters'"
    injected = nbformat.v4.new_code_cell(source)
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(tagged[0] + 1, injected)


@pytest.mark.parametrize("saved", [False, True], ids=["no-config", "saved-login"])
def test_api_token_wins(
    saved: bool,
    request: pytest.FixtureRequest,
    emulator: Any,
    kernel_env: dict[str, str],
    execute_notebook: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    if saved:
        request.getfixturevalue("saved_login")
        config_before = astro_config_path.read_bytes()
        modified_before = astro_config_path.stat().st_mtime_ns
    api_token = emulator.mint_access_token(API_TOKEN_EMAIL)
    kernel_env["ASTRO_API_TOKEN"] = api_token
    self_requests_before = emulator.count("self")
    notebook = build_notebook(
        "%load_ext astro_jupyter",
        TOKEN_DIGEST_CELL,
        "with astro_jupyter.session() as astro:\n"
        '    print(astro.get("users/self").json()["username"])',
        "%astro_whoami",
    )

    execute_notebook(notebook, kernel_env)

    _, digest_cell, session_cell, whoami_cell = notebook.cells
    assert cell_stdout(digest_cell).strip() == sha256_hex(api_token)
    # The emulator returns users/self of the user that the bearer token belongs to.
    assert cell_stdout(session_cell).strip() == API_TOKEN_EMAIL
    assert emulator.count("self") == self_requests_before + 1
    fields = whoami_fields(cell_stdout(whoami_cell))
    assert fields["Credentials"] == API_TOKEN_CREDENTIALS
    assert fields["Email"] == "unknown (an API token has none)"
    assert 59 <= expiry_minutes(fields["Expires"]) <= 60
    if saved:
        assert astro_config_path.read_bytes() == config_before
        assert astro_config_path.stat().st_mtime_ns == modified_before
    else:
        assert not astro_config_path.parent.exists()
    assert leaked_secrets(nbformat.writes(notebook)) == []


def test_token_login_from_environment(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    execute_notebook: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    token = emulator.mint_access_token(ADA_EMAIL)
    kernel_env["ASTRO_JUPYTER_TOKEN"] = token
    notebook = build_notebook(
        "%load_ext astro_jupyter",
        "%astro_login localhost -t",
        "%astro_whoami",
        TOKEN_DIGEST_CELL,
    )

    execute_notebook(notebook, kernel_env)

    _, login_cell, whoami_cell, digest_cell = notebook.cells
    login_output = cell_stdout(login_cell)
    assert "Using the access token from $ASTRO_JUPYTER_TOKEN." in login_output
    assert f"Logged in to localhost as {ADA_EMAIL}." in login_output
    assert "a token typed into a cell" not in login_output
    fields = whoami_fields(cell_stdout(whoami_cell))
    assert fields["Credentials"] == TOKEN_LOGIN_CREDENTIALS
    assert fields["Email"] == ADA_EMAIL
    assert fields["Domain"] == "localhost"
    assert cell_stdout(digest_cell).strip() == sha256_hex(token)
    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["token"] == f"Bearer {token}"
    assert not context["refreshtoken"]
    assert leaked_secrets(nbformat.writes(notebook)) == []


def test_saved_login_refreshed_near_expiry(
    emulator: Any,
    saved_login: Any,
    kernel_env: dict[str, str],
    execute_notebook: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    store = ConfigStore(astro_config_path)
    store.update_context("localhost", expires_at=datetime.now(timezone.utc) + timedelta(minutes=2))
    before = store.read_context("localhost")
    assert before is not None
    refreshes_before = emulator.count("refresh")
    notebook = build_notebook("%load_ext astro_jupyter", TOKEN_DIGEST_CELL, "%astro_whoami")

    execute_notebook(notebook, kernel_env)

    _, digest_cell, whoami_cell = notebook.cells
    assert emulator.count("refresh") == refreshes_before + 1
    after = store.read_context("localhost")
    assert after is not None
    assert after.token != before.token
    assert after.refresh_token
    assert after.refresh_token != before.refresh_token
    assert after.expires_at is not None
    assert after.expires_at - datetime.now(timezone.utc) > timedelta(minutes=30)
    assert cell_stdout(digest_cell).strip() == sha256_hex(after.token or "")
    fields = whoami_fields(cell_stdout(whoami_cell))
    assert fields["Credentials"] == LOGIN_CREDENTIALS
    assert fields["Email"] == ADA_EMAIL
    assert expiry_minutes(fields["Expires"]) >= 30
    assert leaked_secrets(nbformat.writes(notebook)) == []


def test_no_credentials_fail_clearly(
    emulator: Any,
    kernel_env: dict[str, str],
    execute_notebook: Any,
    astro_config_path: Path,
) -> None:
    notebook = build_notebook(
        "%load_ext astro_jupyter\nimport astro_jupyter",
        "astro_jupyter.get_token()",
        "astro_jupyter.session()",
        "%astro_whoami",
        "%astro_login localhost -l",
        "%astro_login localhost -t",
        failing=(1, 2, 3, 4, 5),
    )

    execute_notebook(notebook, kernel_env)

    _, token_cell, session_cell, whoami_cell, link_cell, token_login_cell = notebook.cells
    for cell, expected_name in [
        (token_cell, "NotLoggedInError"),
        (session_cell, "NotLoggedInError"),
        (whoami_cell, "UsageError"),
    ]:
        name, message = cell_failure(cell)
        assert name == expected_name, cell.source
        assert "\n" not in message, cell.source
        assert "%astro_login" in message, cell.source

    # An error raised by a Python call shows one line too, not a traceback.
    for cell in (token_cell, session_cell):
        (error,) = [output for output in cell.outputs if output["output_type"] == "error"]
        assert len(error["traceback"]) == 1, error["traceback"]
        assert "NotLoggedInError" in error["traceback"][0]
        assert "Traceback" not in error["traceback"][0]

    name, message = cell_failure(link_cell)
    assert name == "UsageError"
    assert "\n" not in message
    assert _EMAIL_OPTION.search(message), message

    name, message = cell_failure(token_login_cell)
    assert name == "UsageError"
    assert "\n" not in message
    assert "ASTRO_JUPYTER_TOKEN" in message

    # Each failure happened before any request, so the emulator received none.
    assert emulator.requests == []
    assert not astro_config_path.parent.exists()


def test_headless_notebook_stored_clean() -> None:
    notebook = nbformat.read(HEADLESS_NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]

    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert "parameters" in code_cells[0].metadata.get("tags", [])
    for cell in code_cells:
        assert cell.outputs == [], cell.id
        assert cell.execution_count is None, cell.id


@pytest.mark.parametrize("source", ["api-token", "jupyter-token", "saved-login"])
def test_headless_notebook_runs(
    source: str,
    request: pytest.FixtureRequest,
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    execute_notebook: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    expected_credentials = {
        "api-token": API_TOKEN_CREDENTIALS,
        "jupyter-token": TOKEN_LOGIN_CREDENTIALS,
        "saved-login": LOGIN_CREDENTIALS,
    }[source]
    if source == "api-token":
        kernel_env["ASTRO_API_TOKEN"] = emulator.mint_access_token(ADA_EMAIL)
    elif source == "jupyter-token":
        kernel_env["ASTRO_JUPYTER_TOKEN"] = emulator.mint_access_token(ADA_EMAIL)
    else:
        request.getfixturevalue("saved_login")
    notebook = nbformat.read(HEADLESS_NOTEBOOK, as_version=4)
    inject_parameters(notebook, 'domain = "localhost"')

    execute_notebook(notebook, kernel_env)

    cells = {cell.id: cell for cell in notebook.cells}
    whoami_output = cell_stdout(cells["whoami"])
    assert f"Credentials: {expected_credentials}\n" in whoami_output
    assert "Domain: localhost\n" in whoami_output
    workspaces_output = cell_stdout(cells["list-workspaces"])
    lines = workspaces_output.splitlines()
    assert lines[0] == f"Workspaces of organization {ada_account}:"
    assert len(lines) == 2, workspaces_output
    assert lines[1].startswith(f"  {ADA_WORKSPACE} (ws-")
    if source == "api-token":
        assert not astro_config_path.parent.exists()
    assert emulator.issued_secrets()
    assert leaked_secrets(nbformat.writes(notebook)) == []
