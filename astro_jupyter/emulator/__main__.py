"""Command line entry point: ``python -m astro_jupyter.emulator``.

Starts an emulator, prints where it listens and serves until SIGINT or
SIGTERM, then stops it and exits 0. The first line printed is always
``Astro emulator listening on <base_url>``, so a parent process can read the
URL. It rejects any host but a loopback address.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .emulator import Emulator
from .server import loopback_bind_address

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m astro_jupyter.emulator",
        description=(
            "Serve an emulated Astro control plane and OAuth server on a loopback port, "
            "for trying astro_jupyter without an Astro account. Stop it with Ctrl+C or SIGTERM."
        ),
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on: 127.0.0.1, ::1 or localhost (default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="TCP port to listen on; 0 picks a free port (default: %(default)s)",
    )
    parser.add_argument(
        "--approve",
        metavar="EMAIL",
        default=None,
        help=(
            "approve every login at once as EMAIL, without the approval page "
            "(default: show the page with Approve and Deny buttons)"
        ),
    )
    parser.add_argument(
        "--page-size-max",
        type=int,
        default=100,
        help="maximum number of items per page of a list endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--access-token-ttl-s",
        type=int,
        default=3600,
        help="lifetime of issued access tokens, in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log every request (method, path without query, status) to stderr",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM and return the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        loopback_bind_address(args.host)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    try:
        emulator = Emulator(
            args.host,
            args.port,
            approve_as=args.approve,
            page_size_max=args.page_size_max,
            access_token_ttl_s=args.access_token_ttl_s,
        )
        emulator.start()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"error: failed to listen on {args.host} port {args.port}: {exc.strerror}; "
            "choose another --port",
            file=sys.stderr,
        )
        return 1

    try:
        print(f"Astro emulator listening on {emulator.base_url}", flush=True)
        print(f"To use it, set ASTRO_JUPYTER_API_URL={emulator.base_url}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        stop_requested.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
