"""The account magics in a real ipykernel, after a real login to the Astro emulator.

Each test logs in with ``%astro_login localhost -l`` while the test plays the
browser, then runs ``%astro_whoami``, ``%astro_context``, ``%astro_workspace``
or ``%astro_logout`` in the same kernel. It checks what the magic printed, what
config.yaml contains afterwards, and that no secret the emulator issued reached
any iopub message other than ``execute_input``, which repeats the cell's source.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ADA_EMAIL, read_config, start_logged_in_kernel, whoami_fields

from astro_jupyter.config_store import ConfigStore, ContextRecord
from astro_jupyter.credentials import CredentialSource

# A second account whose organization has two workspaces with spaces in their
# names. Its login selects no workspace, because a headless kernel cannot ask.
LIN_EMAIL = "lin@example.com"
LIN_ORGANIZATION = "Lin Analytics"
LIN_WORKSPACES = ("Data Engineering", "Machine Learning Lab")

# A context of another domain, written as if `astro login` had saved it.
OTHER_DOMAIN = "astronomer.io"
OTHER_EMAIL = "grace@example.com"
# A context of a third domain after `astro logout`, with an email and no token.
LOGGED_OUT_DOMAIN = "astronomer-dev.io"

# A POSIX TZ value for UTC+05:30 named IST, which needs no time zone database.
KERNEL_TIME_ZONE = "IST-5:30"
KERNEL_UTC_OFFSET = timedelta(hours=5, minutes=30)

_CONTEXT_LINE = re.compile(r"^(?P<marker>[* ]) (?P<domain>\S+) +(?P<email>\S+) +(?P<state>\S.*)$")
_WORKSPACE_LINE = re.compile(r"^(?P<marker>[* ]) (?P<name>.+?)  +(?P<id>\S+)$")
_EXPIRY = re.compile(r"^(?P<stamp>.+) \(in (?P<minutes>\d+) minutes\)$")


@pytest.fixture
def lin_account(emulator: Any) -> str:
    """Create lin@example.com in an organization with two workspaces and return its id."""
    organization_id = emulator.add_organization(LIN_ORGANIZATION, workspaces=LIN_WORKSPACES)
    emulator.add_user(LIN_EMAIL, organizations=(organization_id,))
    return organization_id


def listed_contexts(output: str) -> dict[str, dict[str, str]]:
    """Return the lines of ``%astro_context`` by domain, each with marker, email and state."""
    contexts = {}
    for line in output.splitlines():
        match = _CONTEXT_LINE.match(line)
        assert match is not None, f"unexpected %astro_context line: {line!r}"
        contexts[match["domain"]] = {
            "marker": match["marker"],
            "email": match["email"],
            "state": match["state"],
        }
    return contexts


def listed_workspaces(output: str) -> dict[str, dict[str, str]]:
    """Return the lines of ``%astro_workspace`` by workspace name, each with marker and id."""
    workspaces = {}
    for line in output.splitlines():
        match = _WORKSPACE_LINE.match(line)
        assert match is not None, f"unexpected %astro_workspace line: {line!r}"
        workspaces[match["name"]] = {"marker": match["marker"], "id": match["id"]}
    return workspaces


def workspace_ids_from_api(
    emulator: Any, config_path: Path, organization_id: str
) -> dict[str, str]:
    """Return the organization's workspace ids by name, asking the emulator's API directly.

    The request uses the token that the login saved, so it checks the magic
    against the API without going through astro_jupyter.
    """
    token = read_config(config_path)["contexts"]["localhost"]["token"]
    url = f"{emulator.base_url}v1/organizations/{organization_id}/workspaces"
    with requests.get(url, headers={"Authorization": token}, timeout=10) as response:
        response.raise_for_status()
        body = response.json()
    return {workspace["name"]: workspace["id"] for workspace in body["workspaces"]}


def write_other_contexts(emulator: Any, config_path: Path) -> str:
    """Add a logged-in context for another domain and a logged-out one.

    Neither becomes the current context. Returns the token of the logged-in one.
    """
    store = ConfigStore(config_path)
    token = emulator.mint_access_token(OTHER_EMAIL)
    store.save_login(
        ContextRecord(
            domain=OTHER_DOMAIN,
            token=token,
            expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
            user_email=OTHER_EMAIL,
        ),
        make_current=False,
    )
    store.save_login(
        ContextRecord(domain=LOGGED_OUT_DOMAIN, user_email=OTHER_EMAIL), make_current=False
    )
    return token


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# A cell that prints the SHA-256 digest of get_token()'s result, so a test can
# compare tokens without any token reaching an output.
TOKEN_DIGEST_CELL = (
    "import hashlib\n"
    "import astro_jupyter\n"
    "print(hashlib.sha256(astro_jupyter.get_token().encode()).hexdigest())\n"
)


def test_whoami_after_login(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel_env["TZ"] = KERNEL_TIME_ZONE
    kernel = start_logged_in_kernel(start_kernel, kernel_env, ADA_EMAIL)
    stored = ConfigStore(astro_config_path).read_context("localhost")
    assert stored is not None
    assert stored.expires_at is not None

    result = kernel.execute("%astro_whoami")

    assert result.status == "ok", result.reply
    fields = whoami_fields(result.stream("stdout"))
    assert fields["Email"] == ADA_EMAIL
    assert fields["Domain"] == "localhost"
    assert fields["Organization"] == ada_account
    assert fields["Workspace"] == stored.workspace
    assert fields["Credentials"] == CredentialSource.LOGIN.describe()

    expiry = _EXPIRY.match(fields["Expires"])
    assert expiry is not None, fields["Expires"]
    local_expiry = stored.expires_at.astimezone(timezone(KERNEL_UTC_OFFSET))
    assert expiry["stamp"] == f"{local_expiry:%Y-%m-%d %H:%M} IST"
    minutes_left = (stored.expires_at - datetime.now(timezone.utc)).total_seconds() / 60
    assert abs(int(expiry["minutes"]) - minutes_left) <= 1
    assert emulator.issued_secrets()
    assert leaked_secrets(kernel.iopub_text(skip_inputs=True)) == []


def test_context_lists_and_marks_current(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_in_kernel(start_kernel, kernel_env, ADA_EMAIL)
    write_other_contexts(emulator, astro_config_path)

    result = kernel.execute("%astro_context")

    assert result.status == "ok", result.reply
    contexts = listed_contexts(result.stream("stdout"))
    assert list(contexts) == ["localhost", OTHER_DOMAIN, LOGGED_OUT_DOMAIN]
    assert contexts["localhost"] == {"marker": "*", "email": ADA_EMAIL, "state": "logged in"}
    assert contexts[OTHER_DOMAIN] == {"marker": " ", "email": OTHER_EMAIL, "state": "logged in"}
    assert contexts[LOGGED_OUT_DOMAIN] == {
        "marker": " ",
        "email": OTHER_EMAIL,
        "state": "logged out",
    }
    assert leaked_secrets(kernel.iopub_text(skip_inputs=True)) == []


def test_context_switch_to_written_context(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_in_kernel(start_kernel, kernel_env, ADA_EMAIL)
    other_token = write_other_contexts(emulator, astro_config_path)
    contexts_before = read_config(astro_config_path)["contexts"]

    switched = kernel.execute(f"%astro_context switch {OTHER_DOMAIN}")
    listing = kernel.execute("%astro_context")
    token_cell = kernel.execute(TOKEN_DIGEST_CELL)
    whoami_cell = kernel.execute("print(astro_jupyter.whoami().email)")

    assert switched.status == "ok", switched.reply
    assert (
        switched.stream("stdout") == f"Current context: {OTHER_DOMAIN} (for the Astro CLI too).\n"
    )
    config = read_config(astro_config_path)
    assert config["context"] == OTHER_DOMAIN
    assert config["contexts"] == contexts_before

    assert listing.status == "ok", listing.reply
    contexts = listed_contexts(listing.stream("stdout"))
    assert contexts[OTHER_DOMAIN]["marker"] == "*"
    assert contexts["localhost"]["marker"] == " "

    # Later cells follow the switch, so they use the other context's login.
    assert token_cell.status == "ok", token_cell.reply
    assert token_cell.stream("stdout").strip() == sha256_hex(other_token)
    assert whoami_cell.status == "ok", whoami_cell.reply
    assert whoami_cell.stream("stdout") == f"{OTHER_EMAIL}\n"
    assert leaked_secrets(kernel.iopub_text(skip_inputs=True)) == []


def test_context_switch_unknown_domain(
    ada_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_in_kernel(start_kernel, kernel_env, ADA_EMAIL)
    config_before = astro_config_path.read_bytes()

    result = kernel.execute("%astro_context switch nowhere.example.com")

    assert result.status == "error"
    assert result.reply["ename"] == "UsageError"
    message = result.reply["evalue"]
    assert "\n" not in message
    assert "nowhere.example.com" in message
    assert "known contexts: localhost" in message
    assert f"UsageError: {message}" in result.stream("stderr")
    assert astro_config_path.read_bytes() == config_before
    assert leaked_secrets(kernel.iopub_text(skip_inputs=True)) == []


def test_workspace_list_and_switch_by_name(
    emulator: Any,
    lin_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_in_kernel(start_kernel, kernel_env, LIN_EMAIL)
    expected_ids = workspace_ids_from_api(emulator, astro_config_path, lin_account)
    assert sorted(expected_ids) == sorted(LIN_WORKSPACES)
    target_name = "Machine Learning Lab"
    target_id = expected_ids[target_name]

    before = kernel.execute("%astro_workspace")
    switched = kernel.execute(f"%astro_workspace switch {target_name}")
    after = kernel.execute("%astro_workspace")
    whoami_cell = kernel.execute("%astro_whoami")

    assert before.status == "ok", before.reply
    listed = listed_workspaces(before.stream("stdout"))
    assert {name: line["id"] for name, line in listed.items()} == expected_ids
    assert [line["marker"] for line in listed.values()] == [" ", " "]

    assert switched.status == "ok", switched.reply
    assert switched.stream("stdout") == f"Workspace: {target_name} ({target_id})\n"
    context = read_config(astro_config_path)["contexts"]["localhost"]
    assert context["workspace"] == target_id
    assert context["last_used_workspace"] == target_id

    assert after.status == "ok", after.reply
    marked = listed_workspaces(after.stream("stdout"))
    assert marked[target_name]["marker"] == "*"
    assert marked["Data Engineering"]["marker"] == " "
    assert whoami_cell.status == "ok", whoami_cell.reply
    assert whoami_fields(whoami_cell.stream("stdout"))["Workspace"] == target_id
    assert leaked_secrets(kernel.iopub_text(skip_inputs=True)) == []


def test_logout_blanks_config(
    emulator: Any,
    ada_account: str,
    kernel_env: dict[str, str],
    start_kernel: Any,
    astro_config_path: Path,
    leaked_secrets: Any,
) -> None:
    kernel = start_logged_in_kernel(start_kernel, kernel_env, ADA_EMAIL)
    refreshes_before = emulator.count("refresh")

    logout = kernel.execute("%astro_logout")
    token_cell = kernel.execute(TOKEN_DIGEST_CELL)
    whoami_cell = kernel.execute("%astro_whoami")

    assert logout.status == "ok", logout.reply
    assert logout.stream("stdout").startswith("Logged out of localhost: ")
    config = read_config(astro_config_path)
    context = config["contexts"]["localhost"]
    assert context["token"] == ""
    assert context["refreshtoken"] == ""
    assert context["user_email"] == ""
    assert config["context"] == ""
    # As with `astro logout`, only the credentials are blanked, so the organization stays.
    assert context["organization"] == ada_account

    assert token_cell.status == "error"
    assert token_cell.reply["ename"] == "NotLoggedInError"
    message = token_cell.reply["evalue"]
    assert "\n" not in message
    assert "%astro_login" in message
    assert emulator.count("refresh") == refreshes_before

    assert whoami_cell.status == "error"
    assert whoami_cell.reply["ename"] == "UsageError"
    assert "%astro_login" in whoami_cell.reply["evalue"]
    assert leaked_secrets(kernel.iopub_text(skip_inputs=True)) == []
