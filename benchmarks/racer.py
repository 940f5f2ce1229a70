"""Wait for the start file, call get_token() once and report, as one process of the race.

Usage: ``python racer.py READY_FILE START_FILE WAIT_S POLL_INTERVAL_S``

It imports everything ``get_token()`` needs first, then creates READY_FILE
and polls for START_FILE every POLL_INTERVAL_S seconds, for at most WAIT_S
seconds. It prints one JSON line: the SHA-256 of the token (never the token),
how long the call took, and when it returned, in nanoseconds of
``CLOCK_MONOTONIC``, which all processes on one machine share.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import astro_jupyter
import astro_jupyter.credentials  # noqa: F401 - imported before the start, so it is not timed


def _monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def main() -> int:
    ready_file, start_file = Path(sys.argv[1]), Path(sys.argv[2])
    wait_s, poll_interval_s = float(sys.argv[3]), float(sys.argv[4])

    ready_file.touch()
    deadline = time.monotonic() + wait_s
    while not start_file.exists():
        if time.monotonic() > deadline:
            print(f"The start file {start_file} did not appear within {wait_s} s.", file=sys.stderr)
            return 2
        time.sleep(poll_interval_s)

    called_ns = _monotonic_ns()
    token = astro_jupyter.get_token()
    returned_ns = _monotonic_ns()

    report = {
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "call_ns": returned_ns - called_ns,
        "returned_ns": returned_ns,
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
