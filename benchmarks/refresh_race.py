"""The refresh race: many processes find the stored token near expiry at the same moment.

Each round moves the stored expiry inside ``get_token()``'s refresh margin,
starts the racer processes (``racer.py``), waits until all of them have
imported astro_jupyter, and then creates the start file. The wall time runs
from just before the start file is created until the last racer's
``get_token()`` returns. Racers poll for the start file every
:data:`START_POLL_INTERVAL_S`, so each may start up to that much late.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypedDict

import requests

from astro_jupyter.config_store import ConfigStore
from astro_jupyter.emulator import Emulator

__all__ = ["RaceResult", "run_race"]

RACER_SCRIPT = Path(__file__).resolve().with_name("racer.py")
START_POLL_INTERVAL_S = 0.002
READY_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10.0
_READY_POLL_INTERVAL_S = 0.01


class _RacerReport(TypedDict):
    """The JSON line that ``racer.py`` prints."""

    sha256: str
    call_ns: int
    returned_ns: int


@dataclass(frozen=True)
class RaceResult:
    """The outcome of one round of the refresh race."""

    processes: int
    refresh_requests: int
    wall_time_ms: float
    slowest_call_ms: float
    agreeing_processes: int
    login_intact: bool

    @property
    def correct(self) -> bool:
        """Whether exactly one refresh served every process and the login survived."""
        return (
            self.refresh_requests == 1
            and self.agreeing_processes == self.processes
            and self.login_intact
        )


def run_race(
    emulator: Emulator, store: ConfigStore, processes: int, work_folder: Path
) -> RaceResult:
    """Run one round with ``processes`` racers against the login in ``store``.

    ``work_folder`` must not exist yet. It receives the ready and start files.

    Raises
    ------
    RuntimeError
        A racer was not ready or did not finish in time. Every racer is
        killed before this returns or raises.
    """
    store.update_context("localhost", expires_at=datetime.now(timezone.utc) + timedelta(minutes=1))
    refreshes_before = emulator.count("refresh")
    work_folder.mkdir()
    start_file = work_folder / "start"
    ready_files = [work_folder / f"ready-{index}" for index in range(processes)]

    racers: list[subprocess.Popen[str]] = []
    try:
        for ready_file in ready_files:
            racers.append(_start_racer(ready_file, start_file))
        _wait_until_ready(racers, ready_files)
        started_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        start_file.touch()
        reports = _collect_reports(racers)
    finally:
        _stop(racers)

    saved = store.read_context("localhost")
    token = saved.token if saved else None
    expected_hash = hashlib.sha256(token.encode()).hexdigest() if token else None
    returned = [report for report in reports if report is not None]
    last_return_ns = max((report["returned_ns"] for report in returned), default=started_ns)
    slowest_call_ns = max((report["call_ns"] for report in returned), default=0)
    return RaceResult(
        processes=processes,
        refresh_requests=emulator.count("refresh") - refreshes_before,
        wall_time_ms=(last_return_ns - started_ns) / 1e6,
        slowest_call_ms=slowest_call_ns / 1e6,
        agreeing_processes=sum(report["sha256"] == expected_hash for report in returned),
        login_intact=token is not None and _login_works(emulator, token),
    )


def _start_racer(ready_file: Path, start_file: Path) -> subprocess.Popen[str]:
    wait_s = READY_TIMEOUT_S + FINISH_TIMEOUT_S
    command = [
        sys.executable,
        str(RACER_SCRIPT),
        str(ready_file),
        str(start_file),
        str(wait_s),
        str(START_POLL_INTERVAL_S),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_ready(racers: list[subprocess.Popen[str]], ready_files: list[Path]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not all(ready_file.exists() for ready_file in ready_files):
        exited = [racer for racer in racers if racer.poll() is not None]
        if exited:
            _stdout, stderr = exited[0].communicate()
            raise RuntimeError(
                f"Racer process {exited[0].pid} exited with code {exited[0].returncode} "
                f"before the start: {stderr.strip()}"
            )
        if time.monotonic() > deadline:
            ready = sum(ready_file.exists() for ready_file in ready_files)
            raise RuntimeError(
                f"Only {ready} of {len(racers)} racer processes were ready after "
                f"{READY_TIMEOUT_S:g} s."
            )
        time.sleep(_READY_POLL_INTERVAL_S)


def _collect_reports(racers: list[subprocess.Popen[str]]) -> list[_RacerReport | None]:
    """Return each racer's report, or None for a racer that failed (its error is printed)."""
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    reports: list[_RacerReport | None] = []
    for racer in racers:
        try:
            stdout, stderr = racer.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"Racer process {racer.pid} was still running {FINISH_TIMEOUT_S:g} s after the "
                "start."
            ) from None
        if racer.returncode != 0:
            last_line = (stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"Racer process {racer.pid} failed: {last_line}", file=sys.stderr)
            reports.append(None)
            continue
        reports.append(json.loads(stdout))
    return reports


def _stop(racers: list[subprocess.Popen[str]]) -> None:
    for racer in racers:
        if racer.poll() is None:
            racer.kill()
        racer.wait()
        for stream in (racer.stdout, racer.stderr):
            if stream is not None:
                stream.close()


def _login_works(emulator: Emulator, access_token: str) -> bool:
    """Return whether the token is unrevoked and ``GET v1/users/self`` accepts it."""
    if emulator.revoked(access_token):
        return False
    response = requests.get(
        f"{emulator.base_url}v1/users/self",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=HTTP_TIMEOUT_S,
    )
    response.close()
    return response.status_code == 200
