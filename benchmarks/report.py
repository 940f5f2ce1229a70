"""The benchmark report: where the figures come from, and the figures, as Markdown."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from load_cost import ASTRO_STATEMENT, LoadCost
from login_cost import LoginCost, RequestCount
from refresh_race import START_POLL_INTERVAL_S, RaceResult
from token_cost import CallCost

from astro_jupyter.auth_config_cache import DEFAULT_TTL_S

__all__ = ["KernelFigures", "RunInfo", "collect_run_info", "render_report"]

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


@dataclass(frozen=True)
class KernelFigures:
    """The figures measured in real kernels: loading, logging in, requests per login.

    ``packages`` names the versions of the packages that the figures depend on.
    """

    load_costs: list[LoadCost]
    login_costs: list[LoginCost]
    request_counts: list[RequestCount]
    packages: str


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


def render_report(
    info: RunInfo, costs: list[CallCost], races: list[RaceResult], kernel: KernelFigures
) -> str:
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
        *_kernel_sections(kernel),
    ]
    return "\n\n".join(sections) + "\n"


def _kernel_sections(kernel: KernelFigures) -> list[str]:
    """Return the Markdown sections of the figures measured in kernels."""
    return [
        "## Loading the extension in a kernel",
        "Each sample runs in a new ipykernel started with jupyter_client, because imports are "
        "cached per process. One uncounted kernel per statement first writes the compiled "
        "bytecode, which pip writes when it installs a wheel. Time: "
        "`time.perf_counter_ns()` around the statement in the kernel, median over the time "
        "samples. Traced peak and retained: `tracemalloc` during "
        "the statement, in other kernels because tracing slows it, median over the memory "
        "samples. tracemalloc counts the Python objects the import creates. RSS added is the "
        "resident set size from `/proc/self/statm` after minus before, from the timing "
        "kernels: it also counts shared libraries and allocator arenas, in whole pages. "
        "huggingface_hub runs with `HF_HUB_OFFLINE=1`, and during the memory samples an audit "
        "hook blocked and counted every name lookup and connection off loopback. "
        f"Versions: {kernel.packages}.",
        _table(
            [
                "Statement",
                "Median (ms)",
                "Time samples",
                "Traced peak (KiB)",
                "Retained (KiB)",
                "RSS added (KiB)",
                "Memory samples",
            ],
            [_load_row(cost) for cost in kernel.load_costs],
        ),
        _table(["Comparison", "Value"], _load_comparison_rows(kernel.load_costs)),
        "## Logging in from a kernel",
        "`%astro_login localhost -e EMAIL -l` against the emulator on 127.0.0.1, in the text "
        "form (`--no-widget`) and with the login panel. The benchmark plays the browser. Total "
        "runs from just before the browser requests the kernel's loopback callback until the "
        'benchmark reads "Logged in to" on iopub (printed, or a widget update), after the '
        "kernel saved config.yaml. Emulator handlers is the sum of the emulator's service "
        "times for the kernel's requests in that span, and kernel-side is total minus that. "
        "The phases split the total: until the kernel's first request reaches the emulator, "
        "until the last response is ready, and from then until the result is read. Each "
        "column is a median on its own, so the columns need not add up.",
        _table(
            [
                "Login",
                "Samples",
                "Total (ms)",
                "Emulator handlers (ms)",
                "Kernel-side (ms)",
                "Kernel-side ÷ total",
                "To first request (ms)",
                "Requests (ms)",
                "After last response (ms)",
            ],
            [_login_row(cost) for cost in kernel.login_costs],
        ),
        "## Requests per login",
        "Requests that one login sent to the emulator, counted in its request log, in the "
        "first kernel of each form. The browser's requests are not counted. The Astro CLI's "
        "`astro login` sends seven on every login: auth config, organization lookup, token, "
        "user info, `users/self`, organization and workspaces. astro_jupyter keeps the auth "
        f"config of each API base URL for {DEFAULT_TTL_S / 60:g} minutes in the kernel, so a "
        "second login within that time skips it.",
        _table(
            ["Login", "Requests", "Auth config requests", "Endpoints in order"],
            [
                [
                    count.label,
                    str(len(count.endpoints)),
                    str(count.auth_config_requests),
                    ", ".join(count.endpoints),
                ]
                for count in kernel.request_counts
            ],
        ),
    ]


def _load_row(cost: LoadCost) -> list[str]:
    rss = "n/a" if cost.rss_added_kib is None else f"{cost.rss_added_kib:.0f}"
    return [
        f"`{cost.statement}`",
        f"{cost.median_ms:.1f}",
        str(cost.time_samples),
        f"{cost.peak_kib:.0f}",
        f"{cost.retained_kib:.0f}",
        rss,
        str(cost.memory_samples),
    ]


def _load_comparison_rows(costs: list[LoadCost]) -> list[list[str]]:
    astro = next(cost for cost in costs if cost.statement == ASTRO_STATEMENT)
    others = [cost for cost in costs if cost.statement != ASTRO_STATEMENT]
    rows = []
    for other in others:
        name = f"`{other.statement}`"
        rows.append(
            [f"`{astro.statement}` time ÷ {name} time", f"{astro.median_ms / other.median_ms:.2f}"]
        )
        rows.append(
            [
                f"`{astro.statement}` traced peak ÷ {name} traced peak",
                f"{astro.peak_kib / other.peak_kib:.2f}",
            ]
        )
    attempts = sum(len(cost.network_attempts) for cost in costs)
    rows.append(["Lookups or connections off loopback during the imports", str(attempts)])
    return rows


def _login_row(cost: LoginCost) -> list[str]:
    return [
        cost.label,
        str(cost.samples),
        f"{cost.total_ms:.1f}",
        f"{cost.emulator_ms:.2f}",
        f"{cost.kernel_ms:.1f}",
        f"{cost.kernel_ms / cost.total_ms:.2f}",
        f"{cost.to_first_request_ms:.1f}",
        f"{cost.requests_ms:.1f}",
        f"{cost.after_last_response_ms:.1f}",
    ]


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
