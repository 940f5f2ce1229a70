"""The CPU time that other programs used while the benchmarks ran, on Linux.

The figures of a 2-core machine change a lot when anything else runs, so the
report states how busy the machine was apart from the benchmarks. That is the
busy time of all CPUs in ``/proc/stat`` minus the CPU time of this process
and of its children that have exited (``getrusage``).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

__all__ = ["OtherCpuUsage"]

# Fields of the "cpu" line of /proc/stat that count busy time: user, nice,
# system, irq, softirq and steal. The others are idle and iowait, and guest
# time is already part of user time (proc(5)).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


class OtherCpuUsage:
    """A meter of the CPU seconds that other processes use between ``start()`` and ``stop()``."""

    def __init__(self) -> None:
        self._start: tuple[float, float, float] | None = None

    def start(self) -> None:
        """Take the first reading."""
        self._start = _reading()

    def stop(self) -> str:
        """Describe the other processes' CPU time since ``start()``, or why it is unknown."""
        end = _reading()
        if self._start is None or end[0] < 0 or self._start[0] < 0:
            return "unknown (needs Linux's /proc/stat)"
        busy_s = end[0] - self._start[0]
        own_s = end[1] - self._start[1]
        elapsed_s = end[2] - self._start[2]
        other_s = max(0.0, busy_s - own_s)
        return f"{other_s:.1f} CPU-seconds used by other processes during the {elapsed_s:.0f} s run"


def _reading() -> tuple[float, float, float]:
    """Return all CPUs' busy seconds (-1 when unknown), this process tree's CPU seconds, and now."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_s = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return _busy_seconds(), own_s, time.monotonic()


def _busy_seconds() -> float:
    try:
        first_line = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0]
    except (OSError, IndexError):
        return -1.0
    fields = first_line.split()
    if fields[0] != "cpu":
        return -1.0
    ticks = [int(value) for value in fields[1:]]
    busy_ticks = sum(ticks[index] for index in _BUSY_FIELDS if index < len(ticks))
    return busy_ticks / os.sysconf("SC_CLK_TCK")
