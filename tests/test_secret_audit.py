"""End-to-end secret audit: every login flow in one real kernel, then a search of every artifact.

One kernel logs in to the emulator in every way the extension offers. These
are the text form in browser and link mode, the login panel with a pasted address and a
pasted token, a token typed after ``-t`` and one read from
``$ASTRO_JUPYTER_TOKEN``. It also renews the token and logs out. It goes
through the failures a user meets too: a denied sign-in, a callback with
another login's state, token endpoint errors, API errors, an HTTP timeout and a
callback timeout. The test plays the browser and the JupyterLab frontend. It
follows sign-in links, and it sends widget updates and clicks as comm
messages, so the kernel handles them as it would from JupyterLab.

Then every artifact of the session is searched for every secret the emulator
issued or received (authorization codes, access, id and refresh tokens, PKCE
verifiers), and for every 16-character window of each, so a secret cut short
is found too. The artifacts are the notebook saved with outputs and widget
state and IPython's history database. They also include the DEBUG log of
``astro_jupyter`` (with urllib3 and requests) in the kernel and in this
process, and every exception the cells raised with its ``str``, ``repr`` and
traceback, the ``repr`` and ``str`` of the public objects, every iopub
message, and every other file the session wrote under ``HOME``.

A token typed after ``-t`` is part of the cell's source by design, and the
magic warns about it. The audit therefore expects that one token in exactly
the places where a cell's source goes: the cell itself, its ``execute_input``
message and the input table of the history. It checks that the token is there,
so the search demonstrably looks in those places, and treats it as a secret
everywhere else: in outputs, logs, errors, reprs and widget state.

The saved widget state is what a frontend would save, because the test keeps
its own copy of every widget model, built from the comm messages the kernel sent and
the updates the test sent as the frontend, as JupyterLab does. Without a
browser it cannot be JupyterLab's own file, so the kernel's view of the same
state (``Widget.get_manager_state``) is searched as well. The browser tests
save a real notebook with widget state.
"""

from __future__ import annotations

import html
import json
import queue
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import ADA_EMAIL, Browser, login_link, start_logged_out_kernel

from astro_jupyter.emulator import follow_login_link

# Every window of this many characters of a secret is searched for.
WINDOW_CHARS = 16
SECTION = "Secret audit"
LINK_WAIT_S = 20.0
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
LINK_LOGIN = f"%astro_login localhost -e {ADA_EMAIL} -l"
# Characters that codes, verifiers (RFC 7636 section 4.1) and JWTs consist of.
# A window of a secret can only appear inside a run of them.
_SECRET_RUN = re.compile(rf"[A-Za-z0-9._~-]{{{WINDOW_CHARS},}}")
TYPED_TOKEN_MARK = "<the token typed after -t>"
_HREF = re.compile(r'href="([^"]+)"')


# The search


def secret_windows(secrets: Iterable[str]) -> dict[str, str]:
    """Map every WINDOW_CHARS-long window of each secret to that secret.

    A window that several secrets share is left out, because it identifies none of them:
    these are the JWT header and the claims that all tokens of the emulator
    have in common, which are public.
    """
    owners: dict[str, set[str]] = {}
    for secret in secrets:
        if len(secret) < WINDOW_CHARS:
            raise ValueError(f"A secret of {len(secret)} characters is shorter than a window.")
        for start in range(len(secret) - WINDOW_CHARS + 1):
            owners.setdefault(secret[start : start + WINDOW_CHARS], set()).add(secret)
    return {window: next(iter(found)) for window, found in owners.items() if len(found) == 1}


def secrets_in(text: str, windows: dict[str, str]) -> set[str]:
    """Return the secrets of which ``text`` contains at least one window."""
    found: set[str] = set()
    for run in _SECRET_RUN.finditer(text):
        chunk = run.group()
        for start in range(len(chunk) - WINDOW_CHARS + 1):
            secret = windows.get(chunk[start : start + WINDOW_CHARS])
            if secret is not None:
                found.add(secret)
    return found


def masked(secret: str) -> str:
    """Describe a secret in an assertion message without showing it."""
    return f"{secret[:4]}... ({len(secret)} characters)"


def test_search_finds_cut_secret() -> None:
    # The audit below passes only when it finds nothing, so its search must be
    # shown to find a secret cut short, escaped in JSON or inside a URL.
    secret = "Xq3_kP9-vZ2mLw8Tn4bR7yHc1uJd6sAe"
    other = "0123456789abcdefghijklmnopqrstuv"
    windows = secret_windows([secret, other])

    assert secrets_in(f"token={secret[:WINDOW_CHARS]}...", windows) == {secret}
    assert secrets_in(json.dumps({"t": secret[5 : 5 + WINDOW_CHARS]}), windows) == {secret}
    assert secrets_in(f"http://localhost/callback?code={secret}&state=x", windows) == {secret}
    assert secrets_in(secret[: WINDOW_CHARS - 1], windows) == set()
    # Pieces shorter than a window each are not reported.
    assert secrets_in(f"{secret[:12]} {secret[12:24]}", windows) == set()
    assert secrets_in("nothing to see", windows) == set()


# Playing the frontend


@dataclass
class Frontend:
    """The JupyterLab side of one kernel: widget models, and updates and clicks sent to them.

    The models start from each ``comm_open`` and follow every ``update`` and
    ``echo_update`` the kernel sends, in the order the client receives them.
    An update sent by the frontend applies at once, as in JupyterLab.
    """

    kernel: Any
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    _applied: int = 0

    def sync(self) -> None:
        """Receive the iopub messages sent so far and apply their widget changes."""
        while True:
            try:
                message = self.kernel.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                break
            self.kernel.iopub_messages.append(message)
        for message in self.kernel.iopub_messages[self._applied :]:
            self._apply(message)
        self._applied = len(self.kernel.iopub_messages)

    def _apply(self, message: dict[str, Any]) -> None:
        content = message["content"]
        if message["msg_type"] == "comm_open" and content.get("target_name") == "jupyter.widget":
            self.models[content["comm_id"]] = {
                "metadata": content.get("metadata", {}),
                "state": dict(content["data"]["state"]),
            }
        elif message["msg_type"] == "comm_msg" and content["comm_id"] in self.models:
            data = content["data"]
            if data.get("method") in ("update", "echo_update"):
                self.models[content["comm_id"]]["state"].update(data.get("state", {}))
        elif message["msg_type"] == "comm_close":
            self.models.pop(content["comm_id"], None)

    def _send(self, comm_id: str, data: dict[str, Any]) -> None:
        content = {"comm_id": comm_id, "data": data}
        self.kernel.kc.shell_channel.send(self.kernel.kc.session.msg("comm_msg", content))

    def set_value(self, comm_id: str, value: str) -> None:
        """Type ``value`` into a text field and leave it, which sends the value to the kernel."""
        self.sync()
        self.models[comm_id]["state"]["value"] = value
        self._send(comm_id, {"method": "update", "state": {"value": value}, "buffer_paths": []})

    def click(self, comm_id: str) -> None:
        """Click a button."""
        self.sync()
        self._send(comm_id, {"method": "custom", "content": {"event": "click"}})

    def value(self, comm_id: str) -> Any:
        self.sync()
        return self.models[comm_id]["state"].get("value")

    def saved_state(self) -> dict[str, Any]:
        """Return the widget state that JupyterLab writes into a notebook's metadata."""
        self.sync()
        state = {}
        for comm_id, model in self.models.items():
            model_state = model["state"]
            state[comm_id] = {
                "model_name": model_state.get("_model_name"),
                "model_module": model_state.get("_model_module"),
                "model_module_version": model_state.get("_model_module_version"),
                "state": model_state,
            }
        return {"version_major": 2, "version_minor": 0, "state": state}


# Running the session


def kernel_setup_cell(audit_dir: Path) -> str:
    """Return a cell that sends DEBUG logs to a file and records every exception a cell raises.

    Exceptions are recorded with each exception of their chain (``str`` and
    ``repr``) and the formatted traceback, then shown as IPython shows them.
    """
    return f"""\
import json
import logging
import traceback

_audit_log = logging.FileHandler({str(audit_dir / "kernel.log")!r}, encoding="utf-8")
_audit_log.setLevel(logging.DEBUG)
_audit_log.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
for _name in ("astro_jupyter", "urllib3", "requests"):
    logging.getLogger(_name).addHandler(_audit_log)
    logging.getLogger(_name).setLevel(logging.DEBUG)

def _record_exception(shell, etype, value, tb, tb_offset=None):
    chain, seen = [], value
    while seen is not None and len(chain) < 10:
        chain.append({{"str": str(seen), "repr": repr(seen)}})
        seen = seen.__cause__ or seen.__context__
    with open({str(audit_dir / "exceptions.jsonl")!r}, "a", encoding="utf-8") as out:
        formatted = "".join(traceback.format_exception(etype, value, tb))
        out.write(json.dumps({{"chain": chain, "traceback": formatted}}) + "\\n")
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

get_ipython().set_custom_exc((Exception,), _record_exception)
"""


def public_objects_cell(audit_dir: Path) -> str:
    """Return a cell that writes ``repr`` and ``str`` of the public objects to a file."""
    return f"""\
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.credentials import CredentialSource
from astro_jupyter.http_client import HttpClient
from astro_jupyter.settings import AstroLogin

_store = ConfigStore()
_objects = {{
    "LoginPanel": _panel,
    "LoginPanel widgets": _panel.widgets,
    "LoginFlow": _panel.flow,
    "LoginResult": _panel.result,
    "token LoginPanel": _token_panel,
    "token LoginFlow": _token_panel.flow,
    "token LoginResult": _token_panel.result,
    "Identity": astro_jupyter.whoami(),
    "AstroSession": astro_jupyter.session(),
    "AstroSession auth": astro_jupyter.session().auth,
    "ConfigStore": _store,
    "ContextRecord": _store.read_context("localhost"),
    "CredentialSource": CredentialSource.LOGIN,
    "HttpClient": HttpClient(timeout_s=5),
    "AstroLogin": AstroLogin.instance(),
    "LoginTracker": AstroLogin.instance().logins,
}}
for _number, _event in enumerate(_panel.flow.events + _token_panel.flow.events):
    _objects[f"LoginEvent {{_number}}"] = _event
with open({str(audit_dir / "reprs.json")!r}, "w", encoding="utf-8") as out:
    json.dump({{name: [repr(item), str(item)] for name, item in _objects.items()}}, out)
print(len(_objects))
"""


@dataclass
class Session:
    """The kernel, the frontend and the record of what ran."""

    kernel: Any
    frontend: Frontend
    emulator: Any
    cells: list[Any] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)
    failed_cells: int = 0
    follow_results: list[Any] = field(default_factory=list)

    def run(self, source: str, *, allow_stdin: bool = False, on_message: Any = None) -> Any:
        """Run a cell, keep it for the notebook, and return its result."""
        result = self.kernel.execute(source, allow_stdin=allow_stdin, on_message=on_message)
        outputs = []
        for message in result.messages:
            if message["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                outputs.append(nbformat.v4.output_from_msg(message))
        cell = nbformat.v4.new_code_cell(source, outputs=outputs)
        cell.execution_count = result.reply.get("execution_count")
        self.cells.append(cell)
        return result

    def flow(self, name: str) -> None:
        self.flows.append(name)

    def run_failing(self, source: str, *words: str, **options: Any) -> Any:
        """Run a cell that must fail with an error whose message contains ``words``."""
        result = self.run(source, **options)
        assert result.status == "error", result.reply
        self.failed_cells += 1
        message = result.reply["evalue"].lower()
        for word in words:
            assert word in message, result.reply["evalue"]
        return result

    def follow(self, url: str, **options: Any) -> Any:
        followed = follow_login_link(url, **options)
        self.follow_results.append(followed)
        return followed


def assert_ok(result: Any) -> None:
    assert result.status == "ok", (result.reply, result.text())


def with_query(url: str, **changes: str) -> str:
    """Return ``url`` with some query parameters replaced."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def request_callback(address: str) -> int:
    """GET a callback address on 127.0.0.1, as the browser does, and return the status."""
    parts = urllib.parse.urlsplit(address)
    connection = HTTPConnection("127.0.0.1", parts.port, timeout=10)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}", headers={"Host": parts.netloc})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def run_text_form_flows(session: Session) -> None:
    """Log in with the text form in browser and link mode, and use the login in later cells."""
    run = session.run

    session.flow("browser")
    browser = Browser()
    result = run(f"%astro_login localhost -e {ADA_EMAIL} --no-widget", on_message=browser)
    assert_ok(result)
    assert len(browser.links) == 1
    # No display in the kernel's environment, so the magic shows the link and
    # the test's browser follows it.
    assert "Not opening a browser" in result.stream("stdout")

    session.flow("link")
    assert_ok(run(LINK_LOGIN, on_message=Browser()))

    session.flow("later cells: token, whoami, API")
    assert_ok(
        run(
            "import astro_jupyter\n"
            "print(len(astro_jupyter.get_token()))\n"
            "print(astro_jupyter.whoami())\n"
            "with astro_jupyter.session() as astro:\n"
            '    print(astro.get("users/self").json()["username"])\n'
            "    print([w['name'] for w in astro.list_workspaces()])\n"
        )
    )

    session.flow("refresh near expiry")
    refreshes = session.emulator.count("refresh")
    assert_ok(
        run(
            "from datetime import datetime, timedelta, timezone\n"
            "from astro_jupyter.config_store import ConfigStore\n"
            "def expire_soon():\n"
            "    soon = datetime.now(timezone.utc) + timedelta(minutes=1)\n"
            '    ConfigStore().update_context("localhost", expires_at=soon)\n'
            "expire_soon()\n"
            "print(len(astro_jupyter.get_token()))\n"
        )
    )
    assert session.emulator.count("refresh") == refreshes + 1


def run_failure_flows(session: Session) -> None:
    """Run the failures: deny, wrong state, token and API errors, and timeouts."""
    run, emulator = session.run, session.emulator

    session.flow("refresh rejected (400)")
    emulator.fail("refresh", status=400, times=1)
    session.run_failing("expire_soon()\nastro_jupyter.get_token()", "renewed")

    session.flow("deny")
    session.run_failing(LINK_LOGIN, "denied", on_message=Browser(approve=False))

    session.flow("callback with another login's state")

    def wrong_state_first(message: dict[str, Any]) -> None:
        url = login_link(message)
        if url is None:
            return
        address = session.follow(url, reach_callback=False).url
        assert request_callback(with_query(address, state="another-login")) >= 400
        assert request_callback(address) == 200

    assert_ok(run(LINK_LOGIN, on_message=wrong_state_first))

    for status in (400, 500):
        session.flow(f"token endpoint {status}")
        emulator.fail("token", status=status, times=1)
        session.run_failing(LINK_LOGIN, str(status), on_message=Browser())

    session.flow("API 500 in the login's session check")
    emulator.fail("workspaces", status=500, times=1)
    session.run_failing(LINK_LOGIN, "500", on_message=Browser())

    session.flow("API 500 in a later cell")
    assert_ok(run(LINK_LOGIN, on_message=Browser()))
    emulator.fail("self", status=500, times=1)
    session.run_failing('astro_jupyter.session().get("users/self")', "500")

    session.flow("token endpoint timeout")
    emulator.fail("token", status=None, delay_s=3, times=1)
    assert_ok(run("%config AstroLogin.http_timeout_s = 1"))
    session.run_failing(LINK_LOGIN, "did not respond", on_message=Browser())
    assert_ok(run("%config AstroLogin.http_timeout_s = 30"))

    session.flow("callback timeout")

    def approve_elsewhere(message: dict[str, Any]) -> None:
        # Approved on a device that cannot reach the callback, and never pasted.
        url = login_link(message)
        if url is not None:
            session.follow(url, reach_callback=False)

    session.run_failing(f"{LINK_LOGIN} --timeout 2", "timed out", on_message=approve_elsewhere)


def typed_token_cell(token: str) -> str:
    return f"%astro_login localhost -t {token} --no-widget"


def run_token_flows(session: Session, typed_token: str) -> None:
    """Log in with a token typed after -t, and with one from $ASTRO_JUPYTER_TOKEN."""
    session.flow("token typed after -t")
    typed = session.run(typed_token_cell(typed_token))
    assert_ok(typed)
    assert "a token typed into a cell" in typed.text()

    session.flow("token from $ASTRO_JUPYTER_TOKEN")
    from_environment = session.run("%astro_login localhost -t --no-widget")
    assert_ok(from_environment)
    assert "ASTRO_JUPYTER_TOKEN" in from_environment.text()


def panel_model_ids(session: Session, panel_name: str) -> dict[str, str]:
    names = ("paste", "token", "login", "link", "message")
    result = session.run(
        f"print(json.dumps({{name: getattr({panel_name}.widgets, name).model_id "
        f"for name in {names!r}}}))"
    )
    assert_ok(result)
    return json.loads(result.text())


def wait_for_panel_link(session: Session, link_model: str) -> str:
    """Wait until the frontend's model of the panel's link widget contains the sign-in link."""
    deadline = time.monotonic() + LINK_WAIT_S
    while time.monotonic() < deadline:
        match = _HREF.search(session.frontend.value(link_model) or "")
        if match is not None:
            return html.unescape(match.group(1))
    raise AssertionError(f"the panel showed no sign-in link within {LINK_WAIT_S:g} s")


def run_panel_flows(session: Session, pasted_token: str) -> None:
    """Log in with the panel by pasted address and by pasted token, with a user's mistakes.

    The mistakes are a token in the address field, an address with another
    login's state, a denied sign-in, and an address in the token field.
    """
    run, frontend = session.run, session.frontend

    session.flow("panel: paste back the address")
    panel_cell = run(
        f'_panel = astro_jupyter.login_panel("localhost", email={ADA_EMAIL!r}, mode="link")\n'
        "_panel",
        allow_stdin=True,
    )
    assert_ok(panel_cell)
    assert any(WIDGET_VIEW in m["content"].get("data", {}) for m in panel_cell.messages)
    ids = panel_model_ids(session, "_panel")
    link = wait_for_panel_link(session, ids["link"])
    address = session.follow(link, reach_callback=False).url
    assert "code=" in address

    session.flow("panel: token pasted into the address field")
    frontend.set_value(ids["paste"], session.emulator.mint_access_token(ADA_EMAIL))
    assert_ok(run("print(_panel.flow.step.value)"))
    assert "callback address" in frontend.value(ids["message"])

    # The same code with another login's state is rejected and the login keeps waiting.
    frontend.set_value(ids["paste"], with_query(address, state="another-login"))
    assert_ok(run("print(_panel.flow.step.value)"))
    assert "state" in frontend.value(ids["message"])
    frontend.set_value(ids["paste"], address)
    waited = run("print(astro_jupyter.wait_for_login(20).email)")
    assert_ok(waited)
    assert waited.text().strip() == ADA_EMAIL
    assert frontend.value(ids["paste"]) == ""

    session.flow("panel: paste back a denied sign-in")
    assert_ok(
        run(
            f'_denied = astro_jupyter.login_panel("localhost", email={ADA_EMAIL!r}, mode="link")\n'
            "_denied",
            allow_stdin=True,
        )
    )
    denied_ids = panel_model_ids(session, "_denied")
    denied_link = wait_for_panel_link(session, denied_ids["link"])
    denied_address = session.follow(denied_link, approve=False, reach_callback=False).url
    frontend.set_value(denied_ids["paste"], denied_address)
    session.run_failing("astro_jupyter.wait_for_login(20)", "denied")

    session.flow("panel: paste a token")
    assert_ok(
        run(
            '_token_panel = astro_jupyter.login_panel("localhost", mode="token")\n_token_panel',
            allow_stdin=True,
        )
    )
    token_ids = panel_model_ids(session, "_token_panel")

    session.flow("panel: address pasted into the token field")
    frontend.set_value(token_ids["token"], address)
    frontend.click(token_ids["login"])
    assert_ok(run("print(_token_panel.flow)"))
    assert "token" in frontend.value(token_ids["message"]).lower()
    assert "received" not in frontend.value(token_ids["message"]).lower()

    frontend.set_value(token_ids["token"], pasted_token)
    frontend.click(token_ids["login"])
    waited = run("print(astro_jupyter.wait_for_login(20).email)")
    assert_ok(waited)
    assert frontend.value(token_ids["token"]) == ""


def read_history(history_path: Path, typed_token: str) -> tuple[str, int]:
    """Return every row of every table of IPython's history database as text.

    The typed token is taken out of the input table (``history``: session,
    line, source, raw source), where its cell's source is expected. Also
    returns how many input rows contained it.
    """
    rows, typed_rows = [], 0
    connection = sqlite3.connect(history_path)
    try:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        for (table,) in tables.fetchall():
            for row in connection.execute(f'SELECT * FROM "{table}"'):  # noqa: S608
                values = list(row)
                if table == "history" and any(typed_token in str(v) for v in values[2:]):
                    typed_rows += 1
                    values = [str(v).replace(typed_token, TYPED_TOKEN_MARK) for v in values]
                rows.append(json.dumps(values, default=str))
    finally:
        connection.close()
    return "\n".join(rows), typed_rows


@pytest.mark.usefixtures("ada_account")
def test_no_secret_in_any_artifact(
    emulator: Any,
    kernel_env: dict[str, str],
    start_kernel: Any,
    hermetic_env: Path,
    tmp_path: Path,
    hardening: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="astro_jupyter")
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    # Output history too, so the history database contains everything IPython can keep.
    profile = Path(kernel_env["IPYTHONDIR"]) / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        "c.HistoryManager.enabled = True\nc.HistoryManager.db_log_output = True\n",
        encoding="utf-8",
    )
    typed_token = emulator.mint_access_token(ADA_EMAIL)
    pasted_token = emulator.mint_access_token(ADA_EMAIL)
    kernel_env["ASTRO_JUPYTER_TOKEN"] = emulator.mint_access_token(ADA_EMAIL)

    kernel = start_logged_out_kernel(start_kernel, kernel_env)
    session = Session(kernel, Frontend(kernel), emulator)
    assert_ok(session.run(kernel_setup_cell(audit_dir)))

    run_text_form_flows(session)
    run_failure_flows(session)
    run_token_flows(session, typed_token)
    run_panel_flows(session, pasted_token)
    assert_ok(session.run(public_objects_cell(audit_dir)))

    session.flow("logout")
    assert_ok(session.run("%astro_logout localhost"))
    session.flow("token after logout")
    session.run_failing("astro_jupyter.get_token()", "not logged in")

    kernel_state_path = audit_dir / "kernel-widget-state.json"
    assert_ok(
        session.run(
            "from ipywidgets import Widget\n"
            f"with open({str(kernel_state_path)!r}, 'w', encoding='utf-8') as out:\n"
            "    json.dump(Widget.get_manager_state(), out)\n"
            "get_ipython().history_manager.writeout_cache()\n"
        )
    )

    notebook = nbformat.v4.new_notebook(cells=session.cells)
    notebook.metadata["widgets"] = {WIDGET_STATE: session.frontend.saved_state()}
    notebook_path = audit_dir / "audit.ipynb"
    nbformat.write(notebook, notebook_path)

    # The artifacts, by name. The typed token is taken out where its cell's source goes.
    typed_source = typed_token_cell(typed_token)
    saved = nbformat.read(notebook_path, as_version=4)
    typed_cells = [cell for cell in saved.cells if cell.source == typed_source]
    assert len(typed_cells) == 1, "the notebook has no cell with the typed token to search"
    typed_cells[0].source = typed_source.replace(typed_token, TYPED_TOKEN_MARK)
    iopub, typed_inputs = [], 0
    for message in kernel.iopub_messages:
        content = dict(message["content"])
        if message["msg_type"] == "execute_input" and content["code"] == typed_source:
            typed_inputs += 1
            content["code"] = typed_source.replace(typed_token, TYPED_TOKEN_MARK)
        iopub.append(json.dumps(content, default=str))
    assert typed_inputs == 1, "iopub has no execute_input with the typed token to search"
    history_path = Path(kernel_env["IPYTHONDIR"]) / "profile_default" / "history.sqlite"
    history_rows, typed_rows = read_history(history_path, typed_token)
    assert typed_rows == 1, "the history database has no input row with the typed token"

    test_process = {
        "emulator": [repr(emulator), str(emulator)],
        "follow results": [[repr(item), str(item)] for item in session.follow_results],
        "request log": [repr(record) for record in emulator.requests],
    }
    artifacts = {
        "notebook": nbformat.writes(saved),
        "history rows": history_rows,
        "kernel log": (audit_dir / "kernel.log").read_text(encoding="utf-8"),
        "test process log": "\n".join(caplog.text.splitlines()),
        "exceptions": (audit_dir / "exceptions.jsonl").read_text(encoding="utf-8"),
        "kernel reprs": (audit_dir / "reprs.json").read_text(encoding="utf-8"),
        "test process reprs": json.dumps(test_process, default=str),
        "kernel widget state": kernel_state_path.read_text(encoding="utf-8"),
        "iopub messages": "\n".join(iopub),
    }
    # Every other file the session wrote: lock files, history journals, stray temporary
    # files. Only config.yaml is left out, because it contains the tokens by design.
    config_path = hermetic_env / ".astro" / "config.yaml"
    for path in sorted(hermetic_env.rglob("*")):
        if path.is_file() and path != config_path:
            text = path.read_bytes().decode("utf-8", errors="replace")
            if path.name.startswith(history_path.name):
                # The rows were searched above. This also covers free pages and journals.
                text = text.replace(typed_token, TYPED_TOKEN_MARK)
            artifacts[f"file {path.relative_to(hermetic_env)}"] = text

    # The search covers what it claims: the panels' widgets, every failure, the flows' logs.
    assert "astro-login-panel" in artifacts["notebook"]
    assert "astro-login-panel" in artifacts["kernel widget state"]
    assert len(artifacts["exceptions"].splitlines()) == session.failed_cells
    assert "token exchange" in artifacts["kernel log"]

    secrets = emulator.issued_secrets()
    assert {typed_token, pasted_token, kernel_env["ASTRO_JUPYTER_TOKEN"]} <= secrets
    windows = secret_windows(secrets)
    found: dict[str, set[str]] = {}
    for name, text in artifacts.items():
        for secret in secrets_in(text, windows):
            found.setdefault(masked(secret), set()).add(name)

    hardening.add(SECTION, "flows run", len(session.flows))
    hardening.add(SECTION, "artifacts searched", len(artifacts))
    hardening.add(SECTION, "secrets searched", len(secrets))
    hardening.add(SECTION, "secrets found", len(found))
    assert found == {}
