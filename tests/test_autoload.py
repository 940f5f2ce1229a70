"""A clean install from a wheel makes every IPython kernel load the extension by itself.

The module builds a wheel of this checkout and creates a new virtual
environment without this environment's packages. pip installs the wheel and
ipykernel into it from the configured package index, reusing pip's cache. The
tests then start real kernels of that environment. On a 2-core Linux machine with Python 3.11
and a warm pip cache, the whole module took about 30 s, nearly all of it in
pip. pip needs its package index; without one the set-up fails with pip's own
message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import KERNEL_START_TIMEOUT_S, RunningKernel

REPOSITORY = Path(__file__).resolve().parent.parent
KERNEL_CONFIG_ENTRY = "astro_jupyter-0.1.0.data/data/etc/ipython/ipython_kernel_config.json"
PIP_TIMEOUT_S = 240
# The module's set-up (wheel, environment, pip) runs inside the first test.
SETUP_TIMEOUT_S = 300

HEAVY_MODULES = ("requests", "ipywidgets", "ruamel.yaml", "filelock")
LIST_STATE = f"""
import json, sys
print(json.dumps({{
    "magics": sorted(name for name in get_ipython().magics_manager.magics["line"]
                     if name.startswith("astro_")),
    "heavy": [name for name in {HEAVY_MODULES!r} if name in sys.modules],
    "prefix": sys.prefix,
}}))
"""

pytestmark = pytest.mark.timeout(SETUP_TIMEOUT_S)


@dataclass
class InstalledEnvironment:
    """A new virtual environment in which pip installed only the wheel and ipykernel."""

    prefix: Path
    python: Path
    wheel: Path


def _run(command: list[str], env: dict[str, str], timeout_s: float, cwd: Path) -> str:
    """Run ``command`` in ``cwd`` and return its output, failing the test on a non-zero exit.

    ``cwd`` must not be the repository: ``python -m`` would import the package
    from there instead of the installed one.
    """
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout_s, check=False, cwd=cwd
    )
    assert completed.returncode == 0, (
        f"{' '.join(command)} failed with exit code {completed.returncode}:\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
    )
    return completed.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledEnvironment:
    """Build the wheel, create a new environment and pip install the wheel and ipykernel.

    This runs before the per-test environment is set up, so pip uses the real
    ``HOME`` and its cache. Astro variables are removed all the same.
    """
    folder = tmp_path_factory.mktemp("autoload")
    env = {name: value for name, value in os.environ.items() if not name.startswith("ASTRO_")}
    env.pop("PYTHONPATH", None)

    wheels = folder / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
         str(REPOSITORY)],
        env,
        PIP_TIMEOUT_S,
        folder,
    )
    (wheel,) = wheels.glob("astro_jupyter-*.whl")

    prefix = folder / "venv"
    _run([sys.executable, "-m", "venv", str(prefix)], env, PIP_TIMEOUT_S, folder)
    python = prefix / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", str(wheel), "ipykernel"],
        env,
        PIP_TIMEOUT_S,
        folder,
    )
    return InstalledEnvironment(prefix=prefix, python=python, wheel=wheel)


@pytest.fixture
def start_venv_kernel(
    installed: InstalledEnvironment, hermetic_env: Path, tmp_path: Path
) -> Iterator[object]:
    """Yield a function that starts a kernel of the new environment with extra variables."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = tmp_path / "kernels" / "clean-venv"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [str(installed.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "clean venv",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    spec_manager = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
    # Unix socket paths are limited to about 100 bytes, too short for tmp_path.
    socket_dir = Path(tempfile.mkdtemp(prefix="astro-autoload-"))
    kernels: list[RunningKernel] = []

    def start(**variables: str) -> RunningKernel:
        manager = KernelManager(kernel_name="clean-venv", kernel_spec_manager=spec_manager)
        manager.transport = "ipc"
        manager.ip = str(socket_dir / f"kernel{len(kernels)}")
        env = dict(os.environ)
        env["IPYTHONDIR"] = str(hermetic_env / ".ipython")
        env.update(variables)
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
    shutil.rmtree(socket_dir, ignore_errors=True)


def kernel_state(kernel: RunningKernel) -> dict[str, object]:
    """Return the kernel's astro_ magics, the heavy modules it imported, and its sys.prefix."""
    result = kernel.execute(LIST_STATE)
    assert result.status == "ok", result.reply
    return json.loads(result.stream("stdout").strip().splitlines()[-1])


def help_page(kernel: RunningKernel, magic: str) -> str:
    """Return the text that ``%magic?`` pages in the kernel."""
    result = kernel.execute(f"%{magic}?")
    assert result.status == "ok", result.reply
    pages = [item["data"]["text/plain"] for item in result.reply["payload"]
             if item.get("source") == "page"]
    assert len(pages) == 1, result.reply
    return pages[0]


def test_wheel_ships_config_and_marker(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        shipped = json.loads(wheel.read(KERNEL_CONFIG_ENTRY))
    assert "astro_jupyter/py.typed" in names
    assert "astro_jupyter/autoload.py" in names
    assert shipped == {"IPKernelApp": {"extra_extensions": ["astro_jupyter.autoload"]}}

    installed_config = installed.prefix / "etc" / "ipython" / "ipython_kernel_config.json"
    assert json.loads(installed_config.read_text(encoding="utf-8")) == shipped


def test_new_kernel_loads_extension(installed, start_venv_kernel):
    kernel = start_venv_kernel()
    state = kernel_state(kernel)
    assert Path(str(state["prefix"])).resolve() == installed.prefix.resolve()
    assert state["magics"] == [
        "astro_context", "astro_login", "astro_logout", "astro_whoami", "astro_workspace",
    ]
    assert state["heavy"] == []

    page = help_page(kernel, "astro_login")
    assert "%astro_login [-e EMAIL]" in page
    assert "--no-widget" in page
    assert "Examples" in page

    # A notebook written for manual loading still runs, without a message.
    loaded = kernel.execute("%load_ext astro_jupyter")
    assert loaded.status == "ok", loaded.reply
    assert loaded.stream("stdout") == ""
    assert loaded.stream("stderr") == ""


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_environment_variable_turns_autoload_off(start_venv_kernel, value):
    kernel = start_venv_kernel(ASTRO_JUPYTER_AUTOLOAD=value)
    assert kernel_state(kernel)["magics"] == []

    loaded = kernel.execute("%load_ext astro_jupyter")
    assert loaded.status == "ok", loaded.reply
    assert "astro_login" in kernel_state(kernel)["magics"]


def test_user_config_turns_autoload_off(start_venv_kernel, hermetic_env):
    profile = hermetic_env / ".ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_kernel_config.py").write_text(
        "c.IPKernelApp.extra_extensions = []\n", encoding="utf-8"
    )
    kernel = start_venv_kernel()
    assert kernel_state(kernel)["magics"] == []


def test_kernel_config_disable_and_enable(installed, start_venv_kernel, tmp_path):
    config_file = installed.prefix / "etc" / "ipython" / "ipython_kernel_config.json"
    original = config_file.read_bytes()
    command = [str(installed.python), "-m", "astro_jupyter.kernel_config"]
    try:
        disabled = _run([*command, "disable"], dict(os.environ), 60, tmp_path)
        assert "Removed astro_jupyter.autoload" in disabled
        assert kernel_state(start_venv_kernel())["magics"] == []

        enabled = _run([*command, "enable"], dict(os.environ), 60, tmp_path)
        assert "Added astro_jupyter.autoload" in enabled
        assert "astro_login" in kernel_state(start_venv_kernel())["magics"]

        status = _run([*command, "status"], dict(os.environ), 60, tmp_path)
        assert f"{config_file}: lists astro_jupyter.autoload" in status
    finally:
        config_file.write_bytes(original)
