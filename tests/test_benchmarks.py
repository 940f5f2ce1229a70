"""Tests that the benchmarks run and report plausible figures. They assert no timings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARK_SCRIPT = REPO_ROOT / "benchmarks" / "run.py"
RUN_TIMEOUT_S = 100.0

COST_LABELS = (
    "`get_token(store=store)`, one store reused",
    "`astro_jupyter.get_token()`, default store",
    "`get_token(store=ConfigStore())`, new store per call",
)


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
