"""Phrasing a token's expiry for people: local time and "in 47 minutes"."""

from __future__ import annotations

from datetime import datetime

__all__ = ["describe_expiry"]


def _amount(value: int, unit: str) -> str:
    return f"{value} {unit}" if value == 1 else f"{value} {unit}s"


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 90:
        return _amount(minutes, "minute")
    hours = round(seconds / 3600)
    if hours < 48:
        return _amount(hours, "hour")
    return _amount(round(seconds / 86400), "day")


def describe_expiry(expires_at: datetime, now: datetime) -> str:
    """Return e.g. ``"2026-12-04 22:47 CET (in 47 minutes)"`` or ``"… (expired 3 minutes ago)"``.

    Both datetimes must be timezone-aware; the time is shown in the local zone.
    """
    local = expires_at.astimezone()
    stamp = f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".rstrip()
    remaining = (expires_at - now).total_seconds()
    if remaining >= 0:
        return f"{stamp} (in {_span(remaining)})"
    return f"{stamp} (expired {_span(-remaining)} ago)"
