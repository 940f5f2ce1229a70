"""Tests that the benchmarks run and report plausible figures. They assert no timings."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARK_SCRIPT = REPO_ROOT / "benchmarks" / "run.py"
RUN_TIMEOUT_S = 180.0

COST_LABELS = (
    "`get_token(store=store)`, one store reused",
    "`astro_jupyter.get_token()`, default store",
    "`get_token(store=ConfigStore())`, new store per call",
)
LOAD_LABELS = (
    "`%load_ext astro_jupyter`",
    "`from huggingface_hub import notebook_login`",
)
LOGIN_LABELS = (
    "text, first in a new kernel",
    "text, later in the same kernel",
    "panel, first in a new kernel",
    "panel, later in the same kernel",
)
FORMS = ("text", "panel")
# The Astro CLI's login sends auth config, organization lookup, token, user
# info, users/self, organization and workspaces.
ASTRO_CLI_REQUESTS = 7


def _run_benchmarks(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run the benchmark script with ``HOME`` and ``ASTRO_HOME`` at ``home``.

    The environment is built here because a module-scoped fixture runs before
    the per-test hermetic environment is in place.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("ASTRO_")}
    env["HOME"] = str(home)
    env["ASTRO_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, str(BENCHMARK_SCRIPT), *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _number(cell: str) -> float:
    """Parse a figure from the report and check that it is finite."""
    value = float(cell)
    assert math.isfinite(value), cell
    return value


def _table_rows(report: str, first_cell: str) -> list[list[str]]:
    """Return the cells of every table row whose first cell is ``first_cell``."""
    rows = []
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Run the benchmarks once with ``--quick`` and return the written report and stdout."""
    folder = tmp_path_factory.mktemp("bench")
    output = folder / "benchmarks.md"
    completed = _run_benchmarks(folder, "--quick", "--output", str(output))
    assert completed.returncode == 0, completed.stderr
    return output.read_text(encoding="utf-8"), completed.stdout


def test_quick_run_describes_run(quick_report):
    report, _stdout = quick_report
    for name in ("Date", "Commit", "Python", "Machine", "Other load"):
        assert len(_table_rows(report, name)) == 1, f"no {name} row"
    assert _table_rows(report, "Mode") == [["Mode", "quick"]]
    assert _table_rows(report, "Python")[0][1].startswith(".".join(map(str, sys.version_info[:2])))
    assert re.search(r"\b\d+ logical CPUs\b", _table_rows(report, "Machine")[0][1])


@pytest.mark.parametrize("label", COST_LABELS)
def test_quick_run_times_get_token(quick_report, label):
    report, _stdout = quick_report
    rows = _table_rows(report, label)
    assert len(rows) == 1
    _label, median, p95, batches = rows[0]
    assert float(median) > 0
    assert float(p95) >= float(median)
    assert re.fullmatch(r"5 × \d+", batches)


def test_quick_run_races_four_processes(quick_report):
    report, _stdout = quick_report
    rows = _table_rows(report, "1")
    assert len(rows) == 1
    _round, processes, refreshes, wall_ms, slowest_ms, agreeing, intact = rows[0]
    assert processes == "4"
    assert refreshes == "1"
    assert float(wall_ms) > 0
    assert float(slowest_ms) > 0
    assert agreeing == "4 of 4"
    assert intact == "yes"


def test_quick_run_has_baseline(quick_report):
    report, _stdout = quick_report
    rows = _table_rows(report, "baseline")
    assert len(rows) == 1
    _round, processes, refreshes, _wall_ms, _slowest_ms, agreeing, intact = rows[0]
    assert processes == "1"
    assert refreshes == "1"
    assert agreeing == "1 of 1"
    assert intact == "yes"


def test_quick_run_prints_report(quick_report):
    report, stdout = quick_report
    assert report in stdout


def test_zero_processes_rejected(hermetic_env):
    completed = _run_benchmarks(hermetic_env, "--quick", "--processes", "0")
    assert completed.returncode == 2
    assert "invalid --processes 0" in completed.stderr


def test_too_many_processes_rejected(hermetic_env):
    completed = _run_benchmarks(hermetic_env, "--processes", "65")
    assert completed.returncode == 2
    assert "invalid --processes 65: expected 1 to 64" in completed.stderr


@pytest.mark.parametrize("label", LOAD_LABELS)
def test_quick_run_times_loading(quick_report, label):
    report, _stdout = quick_report
    rows = _table_rows(report, label)
    assert len(rows) == 1
    _label, median_ms, time_samples, peak_kib, retained_kib, rss_kib, memory_samples = rows[0]
    assert _number(median_ms) > 0
    assert time_samples == "1"
    assert _number(peak_kib) > 0
    assert 0 <= _number(retained_kib) <= _number(peak_kib)
    assert rss_kib == "n/a" or _number(rss_kib) >= 0
    assert memory_samples == "1"


def test_quick_run_compares_loading(quick_report):
    report, _stdout = quick_report
    astro, other = LOAD_LABELS
    time_rows = _table_rows(report, f"{astro} time ÷ {other} time")
    peak_rows = _table_rows(report, f"{astro} traced peak ÷ {other} traced peak")
    network_rows = _table_rows(report, "Lookups or connections off loopback during the imports")
    assert len(time_rows) == 1
    assert len(peak_rows) == 1
    assert _number(time_rows[0][1]) > 0
    assert _number(peak_rows[0][1]) > 0
    assert network_rows == [["Lookups or connections off loopback during the imports", "0"]]


@pytest.mark.parametrize("label", LOGIN_LABELS)
def test_quick_run_times_login(quick_report, label):
    report, _stdout = quick_report
    rows = _table_rows(report, label)
    assert len(rows) == 1
    _label, samples, total, emulator, kernel_side, share, to_first, requests, after_last = rows[0]
    assert samples == "1"
    assert _number(total) > 0
    assert _number(emulator) > 0
    assert 0 < _number(kernel_side) <= _number(total)
    assert 0 < _number(share) <= 1
    assert _number(to_first) >= 0
    assert _number(requests) > 0
    assert _number(after_last) >= 0


@pytest.mark.parametrize("form", FORMS)
def test_quick_run_counts_requests(quick_report, form):
    report, _stdout = quick_report
    first_rows = _table_rows(report, f"{form}, first login")
    second_rows = _table_rows(report, f"{form}, second login")
    assert len(first_rows) == 1
    assert len(second_rows) == 1
    _label, first_count, first_auth_config, first_endpoints = first_rows[0]
    _label, second_count, second_auth_config, second_endpoints = second_rows[0]

    assert int(first_count) == len(first_endpoints.split(", "))
    assert int(second_count) == len(second_endpoints.split(", "))
    assert int(first_count) <= ASTRO_CLI_REQUESTS
    assert int(second_count) < int(first_count)
    assert first_auth_config == "1"
    assert second_auth_config == "0"
    assert first_endpoints.startswith("auth-config, ")
    assert "token" in second_endpoints.split(", ")
