"""The benchmark report: where the figures come from, and the figures, as Markdown."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from refresh_race import START_POLL_INTERVAL_S, RaceResult
from token_cost import CallCost

__all__ = ["RunInfo", "collect_run_info", "render_report"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_GIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunInfo:
    """When, on what code and on which machine the benchmarks ran."""

    date: str
    commit: str
    python: str
    machine: str
    mode: str
    command: str
    other_cpu_usage: str = "not measured"


def collect_run_info(*, mode: str, command: str) -> RunInfo:
    """Describe this run as it starts: UTC time, git commit, Python version and machine."""
    return RunInfo(
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        commit=_describe_commit(),
        python=f"{platform.python_version()} ({platform.python_implementation()})",
        machine=_describe_machine(),
        mode=mode,
        command=command,
    )


def render_report(info: RunInfo, costs: list[CallCost], races: list[RaceResult]) -> str:
    """Return the whole report as Markdown, ending in a newline.

    The first race result is the baseline, a refresh by one process alone.
    """
    cost_rows = [
        [
            cost.label,
            f"{cost.median_us:.1f}",
            f"{cost.p95_us:.1f}",
            f"{cost.batches} × {cost.calls_per_batch}",
        ]
        for cost in costs
    ]
    race_rows = [
        [
            "baseline" if number == 0 else str(number),
            str(race.processes),
            str(race.refresh_requests),
            f"{race.wall_time_ms:.1f}",
            f"{race.slowest_call_ms:.1f}",
            f"{race.agreeing_processes} of {race.processes}",
            "yes" if race.login_intact else "no",
        ]
        for number, race in enumerate(races)
    ]
    sections = [
        "# Benchmarks",
        f"Latest figures, written by `{info.command}`. How they are measured: "
        "[benchmarks/README.md](../benchmarks/README.md).",
        _table(
            ["Run", ""],
            [
                ["Date", info.date],
                ["Commit", info.commit],
                ["Python", info.python],
                ["Machine", info.machine],
                ["Other load", info.other_cpu_usage],
                ["Mode", info.mode],
            ],
        ),
        "## get_token() on a fresh token",
        "Cost of one call in microseconds: median and 95th percentile of the per-call means "
        "of the batches.",
        _table(["Call", "Median (µs)", "p95 (µs)", "Batches × calls"], cost_rows),
        "## Refresh race",
        "Processes that all find the token near expiry at the same moment and call "
        "`get_token()` once. The baseline is one process alone. The wall time runs from the "
        "start signal until the last call returns, and each process polls for the signal every "
        f"{START_POLL_INTERVAL_S * 1000:g} ms. "
        '"Same token" counts the processes that got the token now saved in config.yaml. '
        '"Login intact" means that the emulator did not revoke that token and that '
        "`GET v1/users/self` accepts it.",
        _table(
            [
                "Round",
                "Processes",
                "Refresh requests",
                "Wall time (ms)",
                "Slowest get_token() (ms)",
                "Same token",
                "Login intact",
            ],
            race_rows,
        ),
    ]
    return "\n\n".join(sections) + "\n"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _describe_commit() -> str:
    """Return the short commit hash, noting uncommitted changes to the package."""
    git = shutil.which("git")
    if git is None:
        return "unknown (git not found)"
    try:
        head = _run_git(git, "rev-parse", "--short", "HEAD")
        changes = _run_git(git, "status", "--porcelain", "--", "astro_jupyter")
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"
    if changes:
        return f"{head} with uncommitted changes to astro_jupyter/"
    return head


def _run_git(git: str, *arguments: str) -> str:
    completed = subprocess.run(
        [git, *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        check=True,
    )
    return completed.stdout.strip()


def _describe_machine() -> str:
    """Return the OS, architecture, logical CPU count, 1-minute load average and CPU model."""
    parts = [f"{platform.system()} {platform.release()} {platform.machine()}"]
    parts.append(f"{os.cpu_count()} logical CPUs")
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.2f} at the start")
    model = _cpu_model()
    if model:
        parts.append(model)
    return ", ".join(parts)


def _cpu_model() -> str | None:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return None
