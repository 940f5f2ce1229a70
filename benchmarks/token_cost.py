"""The cost of one ``get_token()`` call when the stored token is fresh.

Each variant is timed in batches. A batch runs the call enough times to take
about ``target_batch_s`` (found by doubling the count first), and its mean per
call is one sample. The median and 95th percentile of the samples are
reported, in microseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import astro_jupyter
from astro_jupyter.config_cache import SETTLE_WINDOW_NS
from astro_jupyter.config_store import ConfigStore
from astro_jupyter.credentials import get_token
from astro_jupyter.emulator import Emulator

__all__ = ["CallCost", "measure_call_cost", "measure_token_costs"]

# The count doubling stops here even if a batch is still shorter than the target.
_MAX_CALLS_PER_BATCH = 1 << 20


@dataclass(frozen=True)
class CallCost:
    """Timing of one call variant: median and 95th percentile of batch means, in microseconds."""

    label: str
    batches: int
    calls_per_batch: int
    median_us: float
    p95_us: float


def measure_call_cost(
    label: str, call: Callable[[], object], *, batches: int, target_batch_s: float
) -> CallCost:
    """Time ``call`` in ``batches`` batches of equal size and return the summary."""
    calls = _calls_per_batch(call, target_batch_s)
    samples_us = []
    for _ in range(batches):
        started_ns = time.perf_counter_ns()
        for _ in range(calls):
            call()
        elapsed_ns = time.perf_counter_ns() - started_ns
        samples_us.append(elapsed_ns / calls / 1000)
    return CallCost(
        label=label,
        batches=batches,
        calls_per_batch=calls,
        median_us=statistics.median(samples_us),
        p95_us=_percentile(samples_us, 95),
    )


def measure_token_costs(
    emulator: Emulator, store: ConfigStore, *, batches: int, target_batch_s: float
) -> list[CallCost]:
    """Time ``get_token()`` three ways on the fresh login in ``store``.

    Raises
    ------
    RuntimeError
        A call returned another token than the stored one, or the calls sent
        a request, which means the token was not fresh and the figures would
        include refreshes.
    """
    expected = store.read_context("localhost")
    variants: list[tuple[str, Callable[[], str]]] = [
        ("`get_token(store=store)`, one store reused", lambda: get_token(store=store)),
        ("`astro_jupyter.get_token()`, default store", astro_jupyter.get_token),
        (
            "`get_token(store=ConfigStore())`, new store per call",
            lambda: get_token(store=ConfigStore()),
        ),
    ]
    requests_before = len(emulator.requests)
    # The parse cache skips a file changed within its settle window, and the
    # login has just written this one.
    time.sleep(2 * SETTLE_WINDOW_NS / 1e9)

    costs = []
    for label, call in variants:
        if expected is None or call() != expected.token:
            raise RuntimeError(f"{label} did not return the stored token.")
        costs.append(measure_call_cost(label, call, batches=batches, target_batch_s=target_batch_s))

    sent = len(emulator.requests) - requests_before
    if sent:
        raise RuntimeError(
            f"get_token() sent {sent} requests while the token was fresh, so the timings would "
            "include refreshes. Check the expiry stored by the login."
        )
    return costs


def _calls_per_batch(call: Callable[[], object], target_batch_s: float) -> int:
    """Return the smallest power of two of calls that takes at least ``target_batch_s``."""
    calls = 1
    while calls < _MAX_CALLS_PER_BATCH:
        started = time.perf_counter()
        for _ in range(calls):
            call()
        if time.perf_counter() - started >= target_batch_s:
            break
        calls *= 2
    return calls


def _percentile(samples: list[float], percent: int) -> float:
    """Return the ``percent``-th percentile, interpolating between samples."""
    if len(samples) == 1:
        return samples[0]
    cut_points = statistics.quantiles(samples, n=100, method="inclusive")
    return cut_points[percent - 1]
