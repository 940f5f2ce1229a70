"""The cost of ``%load_ext astro_jupyter`` in a started kernel, next to huggingface_hub's login.

Imports are cached per process, so every sample runs in a new kernel that has
imported neither package. Installing astro_jupyter makes every kernel of the
environment load it at start (``IPKernelApp.extra_extensions``), so these
kernels start with :data:`NO_EXTENSIONS` to begin without it. That autoload
does the same work as the ``%load_ext`` measured here, at each kernel's start.
The two statements take turns, kernel by kernel, so a change in the
machine's load reaches both alike. Two kinds of sample:

- time: ``time.perf_counter_ns()`` around the statement, and the resident set
  size (RSS, from ``/proc/self/statm``) before and after it;
- memory: ``tracemalloc``'s peak and retained bytes during the statement, in
  other kernels, because tracing slows every allocation and would inflate the
  times. These kernels also run an audit hook (PEP 578) that blocks and
  records every name lookup or connection to a host other than loopback.

tracemalloc counts the Python objects an import creates, byte for byte, and
is the same on every run. The RSS delta is what the operating system counts. It
also counts shared libraries mapped in and allocator arenas, and moves in
whole pages, so it is coarser and can be 0 when freed memory is reused.

huggingface_hub is only a comparison. Its kernels get ``HF_HUB_OFFLINE=1`` and
a private ``HF_HOME``, and the audit hook would stop any request it tried.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from kernels import KernelLauncher

__all__ = ["LOAD_STATEMENTS", "NO_EXTENSIONS", "LoadCost", "measure_load_costs"]

# The kernel option that drops the extensions that configuration loads at start.
NO_EXTENSIONS = ("--IPKernelApp.extra_extensions=[]",)

ASTRO_STATEMENT = "%load_ext astro_jupyter"
HF_STATEMENT = "from huggingface_hub import notebook_login"
LOAD_STATEMENTS = (ASTRO_STATEMENT, HF_STATEMENT)

_RESULT_PREFIX = "BENCHMARK-RESULT "

# Modules the cells use for measuring, imported before the clock starts.
_PRELUDE = """\
import ipaddress as _bench_ipaddress
import json as _bench_json
import os as _bench_os
import sys as _bench_sys
import time as _bench_time
import tracemalloc as _bench_tracemalloc


def _bench_rss_bytes():
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _bench_os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return -1


_BENCH_PACKAGES = ("astro_jupyter", "huggingface_hub")
_bench_preloaded = sorted(
    name for name in _bench_sys.modules if name.split(".")[0] in _BENCH_PACKAGES
)
"""

_TIME_CELL = (
    _PRELUDE
    + """
_bench_rss_before = _bench_rss_bytes()
_bench_started = _bench_time.perf_counter_ns()
{statement}
_bench_elapsed = _bench_time.perf_counter_ns() - _bench_started
_bench_rss_after = _bench_rss_bytes()
print("{prefix}" + _bench_json.dumps({{
    "elapsed_ns": _bench_elapsed,
    "rss_before": _bench_rss_before,
    "rss_after": _bench_rss_after,
    "preloaded": _bench_preloaded,
}}))
"""
)

_MEMORY_CELL = (
    _PRELUDE
    + """
_bench_network = []
_BENCH_LOOPBACK_NAMES = {{"localhost", "localhost.localdomain"}}


def _bench_is_loopback(host):
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or host in _BENCH_LOOPBACK_NAMES:
        return True
    try:
        return _bench_ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _bench_network_guard(event, args):
    if event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
    elif event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        host = args[1][0]
    else:
        return
    if not _bench_is_loopback(host):
        _bench_network.append(event + " " + str(host))
        raise ConnectionRefusedError("network use is blocked while the import is measured")


_bench_sys.addaudithook(_bench_network_guard)
_bench_tracemalloc.start()
{statement}
_bench_current, _bench_peak = _bench_tracemalloc.get_traced_memory()
_bench_tracemalloc.stop()
print("{prefix}" + _bench_json.dumps({{
    "peak": _bench_peak,
    "retained": _bench_current,
    "network": _bench_network,
    "preloaded": _bench_preloaded,
}}))
"""
)


@dataclass(frozen=True)
class LoadCost:
    """Medians for one statement, each sample in a new kernel.

    ``rss_added_kib`` is ``None`` where ``/proc/self/statm`` is missing.
    ``network_attempts`` lists every blocked lookup or connection off loopback.
    """

    statement: str
    time_samples: int
    memory_samples: int
    median_ms: float
    rss_added_kib: float | None
    peak_kib: float
    retained_kib: float
    network_attempts: tuple[str, ...]


def measure_load_costs(
    launcher: KernelLauncher,
    env: dict[str, str],
    hf_home: Path,
    *,
    time_samples: int,
    memory_samples: int,
) -> list[LoadCost]:
    """Measure each of :data:`LOAD_STATEMENTS` in new kernels and return one result each.

    ``launcher`` should start kernels with :data:`NO_EXTENSIONS`. A kernel
    that imported astro_jupyter before the statement makes this raise.

    Raises
    ------
    RuntimeError
        A cell failed, printed no result, or a statement tried to reach a
        host other than loopback.
    """
    kernel_env = {
        **env,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "HF_HOME": str(hf_home),
    }
    # pip compiles an installed package's bytecode, but an editable install has
    # none, and PYTHONDONTWRITEBYTECODE (set on some machines) stops Python from
    # writing it. Allow writing, and run one uncounted kernel per statement, so
    # that every counted sample reads compiled bytecode as an installed wheel does.
    kernel_env.pop("PYTHONDONTWRITEBYTECODE", None)
    for statement in LOAD_STATEMENTS:
        cell = _TIME_CELL.format(statement=statement, prefix=_RESULT_PREFIX)
        _run_sample(launcher, kernel_env, cell, statement)
    timings: dict[str, list[dict[str, int]]] = {statement: [] for statement in LOAD_STATEMENTS}
    memories: dict[str, list[dict[str, object]]] = {statement: [] for statement in LOAD_STATEMENTS}
    for _ in range(time_samples):
        for statement in LOAD_STATEMENTS:
            cell = _TIME_CELL.format(statement=statement, prefix=_RESULT_PREFIX)
            timings[statement].append(_run_sample(launcher, kernel_env, cell, statement))
    for _ in range(memory_samples):
        for statement in LOAD_STATEMENTS:
            cell = _MEMORY_CELL.format(statement=statement, prefix=_RESULT_PREFIX)
            memories[statement].append(_run_sample(launcher, kernel_env, cell, statement))

    costs = [
        _summarize(statement, timings[statement], memories[statement])
        for statement in LOAD_STATEMENTS
    ]
    for cost in costs:
        if cost.network_attempts:
            raise RuntimeError(
                f"{cost.statement!r} tried to reach the network: "
                f"{', '.join(cost.network_attempts)}."
            )
    return costs


def _run_sample(launcher: KernelLauncher, env: dict[str, str], cell: str, statement: str) -> dict:
    with launcher.start(env) as kernel:
        result = kernel.execute(cell)
    if not result.ok:
        raise RuntimeError(f"{statement!r} failed in a benchmark kernel: {result.error()}")
    for line in result.stdout().splitlines():
        if line.startswith(_RESULT_PREFIX):
            sample = json.loads(line.removeprefix(_RESULT_PREFIX))
            if sample["preloaded"]:
                raise RuntimeError(
                    f"The kernel had imported {', '.join(sample['preloaded'])} before "
                    f"{statement!r}, so the sample would not count that import."
                )
            return sample
    raise RuntimeError(f"The kernel that ran {statement!r} printed no result.")


def _summarize(statement: str, timings: list[dict], memories: list[dict]) -> LoadCost:
    rss_deltas = [
        (sample["rss_after"] - sample["rss_before"]) / 1024
        for sample in timings
        if sample["rss_before"] >= 0 and sample["rss_after"] >= 0
    ]
    network = tuple(attempt for sample in memories for attempt in sample["network"])
    return LoadCost(
        statement=statement,
        time_samples=len(timings),
        memory_samples=len(memories),
        median_ms=statistics.median(sample["elapsed_ns"] for sample in timings) / 1e6,
        rss_added_kib=statistics.median(rss_deltas) if rss_deltas else None,
        peak_kib=statistics.median(sample["peak"] for sample in memories) / 1024,
        retained_kib=statistics.median(sample["retained"] for sample in memories) / 1024,
        network_attempts=network,
    )
