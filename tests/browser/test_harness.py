"""Tests of the browser test harness itself, with plain ipywidgets in JupyterLab and Notebook 7.

Each browser test opens a notebook in headless Chromium against the shared
JupyterLab server and acts as a user: it types, clicks and saves. The server
tests at the end start servers of their own, or fake ones, without a browser.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from .chromium import require_chromium
from .jupyter_server import JupyterServer, JupyterServerError
from .notebook_page import NOTEBOOK7, NotebookPage

REPO_ROOT = Path(__file__).resolve().parents[2]
WIDGET_STATE_KEY = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_KEY = "application/vnd.jupyter.widget-view+json"

# A form whose button handler runs in the kernel and writes its reply into a
# Label. The reply contains the typed value's length, which only the kernel
# computes, so the test can tell the reply came from the kernel.
GREETER_CELL = """\
import ipywidgets as widgets

name = widgets.Text(placeholder="Your name")
name.add_class("harness-name")
greet = widgets.Button(description="Greet")
greet.add_class("harness-greet")
reply = widgets.Label()
reply.add_class("harness-reply")


def on_greet(_button):
    reply.value = f"Kernel got {name.value!r}, {len(name.value)} characters"


greet.on_click(on_greet)
widgets.VBox([name, greet, reply])
"""
TYPED_NAME = "Ada Lovelace"
EXPECTED_REPLY = "Kernel got 'Ada Lovelace', 12 characters"

# The timer fires after the cell has finished, so the new value reaches the
# browser while no cell runs.
TIMER_DELAY_S = 2.0
TIMER_CELL = f"""\
import threading

import ipywidgets as widgets

status = widgets.Label("waiting for the timer")
status.add_class("harness-status")
display(status)


def set_status():
    status.value = "set by thread " + threading.current_thread().name


threading.Timer({TIMER_DELAY_S}, set_status).start()
"""

ENVIRONMENT_CELL = """\
import json
import os
import sys

import astro_jupyter

print(json.dumps({
    "HOME": os.environ.get("HOME"),
    "ASTRO_HOME": os.environ.get("ASTRO_HOME"),
    "IPYTHONDIR": os.environ.get("IPYTHONDIR"),
    "JUPYTER_CONFIG_DIR": os.environ.get("JUPYTER_CONFIG_DIR"),
    "python": sys.executable,
    "astro_jupyter": astro_jupyter.__file__,
}))
"""


def fill_and_click_greet(notebook: NotebookPage) -> None:
    """Type the name into the greeter form of cell 0 and click its button."""
    output = notebook.output(0)
    output.locator(".harness-name input").fill(TYPED_NAME)
    output.get_by_role("button", name="Greet").click()


def widget_models(saved: Any) -> dict[str, dict[str, Any]]:
    """Return the widget models stored in a saved notebook, by model id."""
    return saved.metadata["widgets"][WIDGET_STATE_KEY]["state"]


def models_named(models: dict[str, dict[str, Any]], model_name: str) -> list[dict[str, Any]]:
    """Return the states of the widget models whose ``model_name`` is ``model_name``."""
    return [model["state"] for model in models.values() if model["model_name"] == model_name]


def test_lab_widgets_click_and_save(
    write_notebook: Callable[..., str],
    open_notebook: Callable[..., NotebookPage],
    tmp_path: Path,
) -> None:
    notebook = open_notebook(write_notebook([GREETER_CELL]))
    notebook.run_cell(0)
    output = notebook.output(0)
    assert output.get_by_placeholder("Your name").is_visible()

    fill_and_click_greet(notebook)
    reply = output.locator(".harness-reply")
    notebook.wait_for_output_text(0, EXPECTED_REPLY)
    assert reply.inner_text() == EXPECTED_REPLY

    screenshot = notebook.screenshot(output, tmp_path / "shots" / "greeter.png")
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    saved = notebook.save()
    models = widget_models(saved)
    texts = models_named(models, "TextModel")
    assert len(texts) == 1
    assert texts[0]["value"] == TYPED_NAME
    assert texts[0]["_dom_classes"] == ["harness-name"]
    labels = models_named(models, "LabelModel")
    assert [label["value"] for label in labels] == [EXPECTED_REPLY]
    buttons = models_named(models, "ButtonModel")
    assert [button["description"] for button in buttons] == ["Greet"]
    widget_views = [output for output in saved.cells[0].outputs if WIDGET_VIEW_KEY in output.data]
    assert len(widget_views) == 1
    assert widget_views[0].data[WIDGET_VIEW_KEY]["model_id"] in models


def test_notebook7_widgets_click_and_save(
    lab_server: JupyterServer,
    write_notebook: Callable[..., str],
    open_notebook: Callable[..., NotebookPage],
) -> None:
    assert lab_server.serves_notebook7()
    notebook = open_notebook(write_notebook([GREETER_CELL]), ui=NOTEBOOK7)
    notebook.run_cell(0)

    fill_and_click_greet(notebook)
    notebook.wait_for_output_text(0, EXPECTED_REPLY)

    saved = notebook.save()
    assert saved.cells[0].outputs
    models = widget_models(saved)
    texts = models_named(models, "TextModel")
    assert [text["value"] for text in texts] == [TYPED_NAME]
    labels = models_named(models, "LabelModel")
    assert [label["value"] for label in labels] == [EXPECTED_REPLY]


def test_background_thread_updates_widget(
    write_notebook: Callable[..., str], open_notebook: Callable[..., NotebookPage]
) -> None:
    notebook = open_notebook(write_notebook([TIMER_CELL]))
    notebook.run_cell(0)
    finished_count = notebook.execution_count(0)
    status = notebook.output(0).locator(".harness-status")
    assert status.inner_text() == "waiting for the timer"

    notebook.wait_for_output_text(0, "set by thread", timeout_s=TIMER_DELAY_S + 10)
    assert status.inner_text().startswith("set by thread ")
    assert "MainThread" not in status.inner_text()
    assert notebook.execution_count(0) == finished_count


def test_run_all_and_shutdown_kernel(
    lab_server: JupyterServer,
    write_notebook: Callable[..., str],
    open_notebook: Callable[..., NotebookPage],
) -> None:
    path = write_notebook(["answer = 6 * 7", "", "print(f'answer is {answer}')"])
    notebook = open_notebook(path)
    notebook.run_all()
    notebook.wait_for_output_text(2, "answer is 42")
    assert notebook.execution_count(0) == 1
    assert notebook.execution_count(2) == 2
    assert [session["path"] for session in lab_server.sessions()] == [path]

    assert notebook.shutdown_kernel() == 1
    assert lab_server.sessions() == []
    assert lab_server.kernels() == []


def test_kernel_uses_server_environment(
    lab_server: JupyterServer,
    hermetic_env: Path,
    write_notebook: Callable[..., str],
    open_notebook: Callable[..., NotebookPage],
) -> None:
    notebook = open_notebook(write_notebook([ENVIRONMENT_CELL]))
    notebook.run_cell(0)
    kernel_env = json.loads(notebook.output(0).inner_text())

    # The server's folders, not this test's hermetic HOME and not the user's.
    assert kernel_env["HOME"] == str(lab_server.home_dir)
    assert kernel_env["HOME"] != str(hermetic_env)
    assert kernel_env["HOME"] != pwd.getpwuid(os.getuid()).pw_dir
    assert kernel_env["ASTRO_HOME"] is None
    assert kernel_env["IPYTHONDIR"] == str(lab_server.base_dir / "ipython")
    assert kernel_env["JUPYTER_CONFIG_DIR"] == str(lab_server.base_dir / "jupyter-config")
    # The kernel runs the server's interpreter, with the editable install.
    assert kernel_env["python"] == lab_server.python
    assert Path(kernel_env["astro_jupyter"]).is_relative_to(REPO_ROOT)


def test_server_stop_ends_kernels() -> None:
    with JupyterServer() as server:
        kernel = server.api("POST", "kernels", {"name": "python3"})
        assert [entry["id"] for entry in server.kernels()] == [kernel["id"]]
        pids = server.child_pids()
        assert len(pids) == 1
        base_dir = server.base_dir

    assert not server.is_running()
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []
    assert not base_dir.exists()


def write_fake_python(folder: Path, script: str) -> Path:
    """Write an executable shell script to use in place of the server's Python."""
    path = folder / "fake-python"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_server_exit_reports_log(tmp_path: Path) -> None:
    fake = write_fake_python(tmp_path, "echo 'fake server: bad option' >&2\nexit 3")
    server = JupyterServer(python=fake)

    with pytest.raises(JupyterServerError) as raised:
        server.start()

    message = str(raised.value)
    assert "exited with code 3" in message
    assert "fake server: bad option" in message
    assert not server.is_running()


def test_server_start_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "fake.pid"
    fake = write_fake_python(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60")
    server = JupyterServer(python=fake, start_timeout_s=1.0)

    with pytest.raises(JupyterServerError) as raised:
        server.start()

    assert "did not respond to GET /api/status within 1 s" in str(raised.value)
    assert not server.is_running()
    assert not psutil.pid_exists(int(pid_file.read_text(encoding="utf-8")))


def test_server_missing_python(tmp_path: Path) -> None:
    server = JupyterServer(python=tmp_path / "no-such-python")

    with pytest.raises(JupyterServerError) as raised:
        server.start()

    assert "no-such-python" in str(raised.value)
    assert not server.is_running()


def test_missing_chromium_fails(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception) as raised:
        require_chromium(tmp_path / "chromium")

    assert "apt-get install -y chromium" in str(raised.value)
