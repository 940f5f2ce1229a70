"""Tests of ``python -m astro_jupyter.kernel_config``: merging into a shared kernel config file.

Another package may ship the same ``etc/ipython/ipython_kernel_config.json``,
and pip then keeps whichever was installed last, so ``enable`` and ``disable``
must keep every key they do not own.
"""

from __future__ import annotations

import json
import stat

import pytest

from astro_jupyter.errors import ConfigError
from astro_jupyter.kernel_config import (
    AUTOLOAD_EXTENSION,
    disable,
    enable,
    is_enabled,
    kernel_config_path,
    main,
)

OTHER_PACKAGE_CONFIG = {
    "IPKernelApp": {"extra_extensions": ["other_extension"], "matplotlib": "inline"},
    "InteractiveShell": {"ast_node_interactivity": "all"},
}


@pytest.fixture
def config_file(tmp_path):
    return kernel_config_path(tmp_path)


def write_json(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_path_under_prefix(tmp_path):
    assert kernel_config_path(tmp_path) == (
        tmp_path / "etc" / "ipython" / "ipython_kernel_config.json"
    )


def test_enable_creates_missing_file(config_file):
    assert enable(config_file) is True
    assert read_json(config_file) == {"IPKernelApp": {"extra_extensions": [AUTOLOAD_EXTENSION]}}
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o644


def test_enable_keeps_other_package_keys(config_file):
    write_json(config_file, OTHER_PACKAGE_CONFIG)
    assert enable(config_file) is True
    merged = read_json(config_file)
    assert merged["IPKernelApp"]["extra_extensions"] == ["other_extension", AUTOLOAD_EXTENSION]
    assert merged["IPKernelApp"]["matplotlib"] == "inline"
    assert merged["InteractiveShell"] == {"ast_node_interactivity": "all"}


def test_enable_twice_leaves_file_alone(config_file):
    enable(config_file)
    before = config_file.read_bytes()
    assert enable(config_file) is False
    assert config_file.read_bytes() == before


def test_disable_removes_only_ours(config_file):
    write_json(config_file, OTHER_PACKAGE_CONFIG)
    enable(config_file)
    assert disable(config_file) is True
    assert read_json(config_file) == OTHER_PACKAGE_CONFIG
    assert is_enabled(config_file) is False


def test_disable_drops_empty_sections(config_file):
    enable(config_file)
    assert disable(config_file) is True
    assert read_json(config_file) == {}


def test_disable_when_not_listed(config_file):
    write_json(config_file, OTHER_PACKAGE_CONFIG)
    before = config_file.read_bytes()
    assert disable(config_file) is False
    assert config_file.read_bytes() == before
    assert disable(kernel_config_path(config_file.parent / "elsewhere")) is False


def test_enable_keeps_file_mode(config_file):
    write_json(config_file, OTHER_PACKAGE_CONFIG)
    config_file.chmod(0o640)
    enable(config_file)
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "Cannot parse"),
        ("[1, 2]", "is not a JSON object"),
        ('{"IPKernelApp": "inline"}', "IPKernelApp in"),
        ('{"IPKernelApp": {"extra_extensions": "astro_jupyter"}}', "is not a list"),
    ],
    ids=["not-json", "array", "app-not-object", "extensions-not-list"],
)
def test_unusable_file_left_unchanged(config_file, content, expected):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(content, encoding="utf-8")
    for change in (enable, disable):
        with pytest.raises(ConfigError) as caught:
            change(config_file)
        assert expected in str(caught.value)
        assert "\n" not in str(caught.value)
        assert config_file.read_text(encoding="utf-8") == content
    assert [path.name for path in config_file.parent.iterdir()] == [config_file.name]


def test_command_line_round_trip(tmp_path, capsys):
    config_file = kernel_config_path(tmp_path)
    write_json(config_file, OTHER_PACKAGE_CONFIG)

    assert main(["enable", "--prefix", str(tmp_path)]) == 0
    assert f"Added {AUTOLOAD_EXTENSION} to {config_file}" in capsys.readouterr().out
    assert main(["status", "--prefix", str(tmp_path)]) == 0
    assert f"{config_file}: lists {AUTOLOAD_EXTENSION}" in capsys.readouterr().out

    assert main(["disable", "--prefix", str(tmp_path)]) == 0
    assert f"Removed {AUTOLOAD_EXTENSION} from {config_file}" in capsys.readouterr().out
    assert main(["status", "--prefix", str(tmp_path)]) == 0
    assert f"{config_file}: does not list {AUTOLOAD_EXTENSION}" in capsys.readouterr().out
    assert read_json(config_file) == OTHER_PACKAGE_CONFIG


def test_command_line_error_exit_code(tmp_path, capsys):
    config_file = kernel_config_path(tmp_path)
    config_file.parent.mkdir(parents=True)
    config_file.write_text("{not json", encoding="utf-8")
    assert main(["enable", "--prefix", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: Cannot parse")
    assert error.count("\n") == 1


def test_status_names_environment_switch(tmp_path, capsys, monkeypatch):
    enable(kernel_config_path(tmp_path))
    monkeypatch.setenv("ASTRO_JUPYTER_AUTOLOAD", "0")
    assert main(["status", "--prefix", str(tmp_path)]) == 0
    assert "$ASTRO_JUPYTER_AUTOLOAD turns autoload off" in capsys.readouterr().out


def test_shipped_file_matches_enable(tmp_path):
    from pathlib import Path

    shipped = Path(__file__).resolve().parent.parent / "jupyter-config" / "ipython" / (
        "ipython_kernel_config.json"
    )
    created = kernel_config_path(tmp_path)
    enable(created)
    assert read_json(shipped) == read_json(created)


@pytest.mark.parametrize("action", ["enable", "disable", "status"])
def test_missing_prefix_rejected(tmp_path, capsys, action):
    missing = tmp_path / "no-such-env"

    assert main([action, "--prefix", str(missing)]) == 1

    error = capsys.readouterr().err
    assert "is not a folder" in error
    assert len(error.strip().splitlines()) == 1
    assert not missing.exists()


def test_non_utf8_file_one_line_error(tmp_path):
    config_file = kernel_config_path(tmp_path)
    config_file.parent.mkdir(parents=True)
    content = b"\xff\xfe{\x00}\x00"
    config_file.write_bytes(content)

    with pytest.raises(ConfigError) as caught:
        enable(config_file)

    assert "Cannot parse" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert config_file.read_bytes() == content
