"""Figures that the hardening tests record, printed as one table at the end of the run.

A test takes the ``hardening`` fixture and calls ``hardening.add(section, item, count)``
for what it actually tried: faults injected, hostile inputs generated, processes and
writes in a concurrency run, secrets searched and found. The figures are summed
over the run, so the table reflects only the tests that ran, and a test that failed
still shows what it tried before it failed.

``pytest --hardening-report=PATH`` also writes the table to PATH as Markdown. The
``=`` form matters once PATH exists: pytest takes an existing path given as a
separate word for a test path, and then does not load this folder's conftest
before it parses the options.
"""

from __future__ import annotations

import platform
import subprocess
import threading
import time
from pathlib import Path

__all__ = ["HardeningTally"]

# Sections in the order the table shows them. A section not listed here comes after them.
SECTION_ORDER = (
    "Fault matrix",
    "Hostile input",
    "Callback server",
    "Concurrency and crashes",
    "Secret audit",
)


class HardeningTally:
    """Counts per (section, item), safe to add to from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, section: str, item: str, count: int = 1) -> None:
        """Add ``count`` to the figure ``item`` of ``section``."""
        if count < 0:
            raise ValueError(f"Invalid count {count} for {section}/{item}: must be 0 or more.")
        with self._lock:
            key = (section, item)
            self._counts[key] = self._counts.get(key, 0) + count

    def get(self, section: str, item: str) -> int:
        """Return the figure ``item`` of ``section``, 0 if nothing was recorded."""
        with self._lock:
            return self._counts.get((section, item), 0)

    def rows(self) -> list[tuple[str, str, int]]:
        """Return (section, item, count) rows, sections in table order, items as recorded."""
        with self._lock:
            counts = dict(self._counts)

        def section_rank(section: str) -> tuple[int, str]:
            if section in SECTION_ORDER:
                return (SECTION_ORDER.index(section), "")
            return (len(SECTION_ORDER), section)

        sections = sorted({section for section, _ in counts}, key=section_rank)
        return [
            (section, item, count)
            for section in sections
            for (row_section, item), count in counts.items()
            if row_section == section
        ]

    def text_lines(self) -> list[str]:
        """Return the table as aligned plain-text lines for the terminal."""
        rows = self.rows()
        if not rows:
            return []
        section_width = max(len(section) for section, _, _ in rows)
        item_width = max(len(item) for _, item, _ in rows)
        return [
            f"{section:<{section_width}}  {item:<{item_width}}  {count:>8}"
            for section, item, count in rows
        ]

    def markdown(self, *, outcome: str, duration_s: float) -> str:
        """Return the table as a Markdown page with the commit and machine it was measured on."""
        lines = [
            "# Hardening figures",
            "",
            "Written by `python3 tools/test.py --hardening-report=docs/hardening.md`. Each "
            "figure counts what the hardening tests tried in that run, summed over the tests "
            "that record it (`hardening.add` in `tests/`).",
            "",
            "| Run |  |",
            "|---|---|",
            f"| Date | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} |",
            f"| Commit | {_commit()} |",
            f"| Python | {platform.python_version()} ({platform.python_implementation()}) |",
            f"| Machine | {platform.system()} {platform.machine()} |",
            f"| Outcome | {outcome}, {duration_s:.0f} s |",
            "",
            "| Section | Figure | Value |",
            "|---|---|---|",
        ]
        lines += [f"| {section} | {item} | {count} |" for section, item, count in self.rows()]
        return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, fixed arguments
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "unknown"

