#!/usr/bin/env python3
"""Run every benchmark against a local Astro emulator, print the report and save it.

The benchmarks: get_token() on a fresh token, the refresh race of many
processes, ``%load_ext astro_jupyter`` in new kernels next to huggingface_hub's
login import, and logins from kernels with their requests counted.

Usage, inside the project's virtual environment:
``python benchmarks/run.py [--quick] [--processes N] [--rounds N] [--output PATH]``.
``python3 tools/bench.py`` creates that environment first and runs this.

Exits 0 when the refresh race ended with one refresh and an intact login in
every round, 1 when it did not or a measurement failed, and 2 on invalid
arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from importlib.metadata import version
from pathlib import Path

# Python puts this script's folder first on sys.path, so its sibling modules import by name.
from cpu_load import OtherCpuUsage
from environment import isolated_astro_home, log_in
from kernels import KernelLauncher
from load_cost import NO_EXTENSIONS, measure_load_costs
from login_cost import FORM_OPTIONS, measure_logins, summarize_logins
from refresh_race import RaceResult, run_race
from report import REPO_ROOT, KernelFigures, collect_run_info, render_report
from token_cost import CallCost, measure_token_costs

from astro_jupyter.config_store import ConfigStore
from astro_jupyter.emulator import Emulator

DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"
EMAIL = "ada@example.com"

# Race processes and rounds when not given, for a full and a --quick run.
FULL_DEFAULTS = {"processes": 16, "rounds": 3}
QUICK_DEFAULTS = {"processes": 4, "rounds": 1}
# Upper bounds on the options, so that a run stays short and starts a bounded
# number of processes.
MAX_PROCESSES = 64
MAX_ROUNDS = 20
# Batches per call variant and the target duration of one batch, in seconds.
FULL_BATCHES = (30, 0.1)
QUICK_BATCHES = (5, 0.01)
# Kernels per statement for the load times and for the load memory, and, for
# each form of the login, kernels and logins per kernel.
FULL_KERNELS = {"load_time": 7, "load_memory": 3, "login_kernels": 3, "logins_per_kernel": 4}
QUICK_KERNELS = {"load_time": 1, "load_memory": 1, "login_kernels": 1, "logins_per_kernel": 2}
# Packages whose versions the figures measured in kernels depend on.
KERNEL_PACKAGES = ("ipykernel", "jupyter_client", "ipywidgets", "huggingface_hub")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Measure get_token() on a fresh token, the refresh race of many processes, "
            "loading the extension in new kernels and logging in from kernels, against an "
            "Astro emulator on 127.0.0.1. Prints a Markdown report."
        )
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"run in a few seconds, to check that the benchmarks work: {QUICK_BATCHES[0]} short "
            f"batches per call, {QUICK_DEFAULTS['processes']} processes and "
            f"{QUICK_DEFAULTS['rounds']} round unless given. Writes a file only with --output."
        ),
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help=(
            f"number of processes in the refresh race, 1 to {MAX_PROCESSES} (default: "
            f"{FULL_DEFAULTS['processes']}, or {QUICK_DEFAULTS['processes']} with --quick)"
        ),
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help=(
            f"rounds of the refresh race, 1 to {MAX_ROUNDS} "
            f"(default: {FULL_DEFAULTS['rounds']}, or {QUICK_DEFAULTS['rounds']} with --quick)"
        ),
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help=(
            "write the report to this Markdown file "
            "(default: docs/benchmarks.md, or no file with --quick)"
        ),
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line and fill in the defaults of a full or a quick run."""
    parser = _build_parser()
    args = parser.parse_args(argv)

    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    if args.processes is None:
        args.processes = defaults["processes"]
    if args.rounds is None:
        args.rounds = defaults["rounds"]
    if args.output is None and not args.quick:
        args.output = DEFAULT_OUTPUT

    if not 1 <= args.processes <= MAX_PROCESSES:
        parser.error(f"invalid --processes {args.processes}: expected 1 to {MAX_PROCESSES}")
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"invalid --rounds {args.rounds}: expected 1 to {MAX_ROUNDS}")
    return args


def run_benchmarks(
    args: argparse.Namespace,
) -> tuple[list[CallCost], list[RaceResult], KernelFigures]:
    """Log in to a new emulator in a throwaway config folder and run every benchmark.

    The first race result is the baseline, a refresh by one process alone.
    """
    batches, target_batch_s = QUICK_BATCHES if args.quick else FULL_BATCHES
    with isolated_astro_home() as home, Emulator(host="127.0.0.1", port=0) as emulator:
        os.environ["ASTRO_JUPYTER_API_URL"] = emulator.base_url
        store = ConfigStore()
        log_in(emulator, store, EMAIL)

        print("Timing get_token() on a fresh token ...", flush=True)
        costs = measure_token_costs(emulator, store, batches=batches, target_batch_s=target_batch_s)

        print("Refresh by 1 process alone, for comparison ...", flush=True)
        races = [run_race(emulator, store, 1, home / "race-baseline")]
        for number in range(1, args.rounds + 1):
            print(f"Refresh race, round {number}: {args.processes} processes ...", flush=True)
            races.append(run_race(emulator, store, args.processes, home / f"race-{number}"))

        kernel = run_kernel_benchmarks(home, QUICK_KERNELS if args.quick else FULL_KERNELS)
    return costs, races, kernel


def run_kernel_benchmarks(home: Path, counts: dict[str, int]) -> KernelFigures:
    """Measure loading the extension and logging in, in real kernels under ``home``.

    The logins go to an emulator of their own, which approves every sign-in,
    and save to a config folder of their own, so the other benchmarks' login
    is left alone.
    """
    env = dict(os.environ)
    env["IPYTHONDIR"] = str(home / ".ipython")
    env["JUPYTER_CONFIG_DIR"] = str(home / ".jupyter")

    print("Timing %load_ext astro_jupyter and huggingface_hub's import in new kernels ...")
    load_costs = measure_load_costs(
        KernelLauncher(home / "load", NO_EXTENSIONS),
        env,
        home / "huggingface",
        time_samples=counts["load_time"],
        memory_samples=counts["load_memory"],
    )

    login_home = home / "logins"
    login_home.mkdir()
    with Emulator(host="127.0.0.1", port=0, approve_as=EMAIL) as emulator:
        login_env = {
            **env,
            "HOME": str(login_home),
            "ASTRO_HOME": str(login_home),
            "ASTRO_JUPYTER_API_URL": emulator.base_url,
            "ASTRO_JUPYTER_CALLBACK_PORT": "0",
        }
        store = ConfigStore(environ=login_env)
        samples = []
        for form in FORM_OPTIONS:
            print(f"Logging in from new kernels, {form} form ...", flush=True)
            samples += measure_logins(
                KernelLauncher(home / f"login-{form}"),
                login_env,
                emulator,
                store,
                EMAIL,
                form=form,
                kernels=counts["login_kernels"],
                logins_per_kernel=counts["logins_per_kernel"],
            )
    login_costs, request_counts = summarize_logins(samples)
    packages = ", ".join(f"{name} {version(name)}" for name in KERNEL_PACKAGES)
    return KernelFigures(load_costs, login_costs, request_counts, packages)


def _figure_options(args: argparse.Namespace) -> list[str]:
    """Return the options given that change the figures, to name the command in the report."""
    options = ["--quick"] if args.quick else []
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    if args.processes != defaults["processes"]:
        options += ["--processes", str(args.processes)]
    if args.rounds != defaults["rounds"]:
        options += ["--rounds", str(args.rounds)]
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Describe the run before it starts, so the load average does not count the
    # benchmarks' own processes.
    command = " ".join(["python3 tools/bench.py", *_figure_options(args)])
    info = collect_run_info(mode="quick" if args.quick else "full", command=command)
    other_cpu_usage = OtherCpuUsage()
    other_cpu_usage.start()
    try:
        costs, races, kernel = run_benchmarks(args)
    except (RuntimeError, TimeoutError) as error:
        print(f"The benchmarks failed: {error}", file=sys.stderr)
        return 1
    info = dataclasses.replace(info, other_cpu_usage=other_cpu_usage.stop())

    report = render_report(info, costs, races, kernel)
    print()
    print(report)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report, encoding="utf-8")
        print(f"Wrote {args.output}")

    failed = [number for number, race in enumerate(races) if not race.correct]
    if failed:
        rounds = ", ".join("baseline" if number == 0 else str(number) for number in failed)
        print(
            f"The refresh race went wrong in round(s) {rounds}: expected one refresh request, "
            "the same token in every process and an intact login.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
