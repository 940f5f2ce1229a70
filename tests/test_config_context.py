"""Tests of one login context's field format: tokens, the vault placeholder and Go timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from astro_jupyter.config_context import (
    ContextRecord,
    format_timestamp,
    parse_timestamp,
    parse_token,
)
from astro_jupyter.errors import InvalidInputError

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T21:04:05Z", datetime(2026, 12, 4, 21, 4, 5, tzinfo=UTC)),
        ("2026-12-04T21:04:05.5Z", datetime(2026, 12, 4, 21, 4, 5, 500000, tzinfo=UTC)),
        (
            "2026-12-04T21:04:05.123456789Z",
            datetime(2026, 12, 4, 21, 4, 5, 123456, tzinfo=UTC),
        ),
        (
            "2026-12-04T22:04:05.123456789+01:00",
            datetime(2026, 12, 4, 21, 4, 5, 123456, tzinfo=UTC),
        ),
        ("2026-12-04T16:34:05-04:30", datetime(2026, 12, 4, 21, 4, 5, tzinfo=UTC)),
        ("2026-12-04t21:04:05z", datetime(2026, 12, 4, 21, 4, 5, tzinfo=UTC)),
        ("2026-12-04 21:04:05", datetime(2026, 12, 4, 21, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text", [None, "", "0001-01-01T00:00:00Z", "tomorrow", "2026-13-01T00:00:00Z", "3600"]
)
def test_parse_timestamp_without_time(text):
    assert parse_timestamp(text) is None


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 12, 4, 21, 4, 5, tzinfo=UTC), "2026-12-04T21:04:05Z"),
        (datetime(2026, 12, 4, 21, 4, 5, 500000, tzinfo=UTC), "2026-12-04T21:04:05.5Z"),
        (datetime(2026, 12, 4, 21, 4, 5, 123456, tzinfo=UTC), "2026-12-04T21:04:05.123456Z"),
        (
            datetime(2026, 12, 4, 23, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "2026-12-04T21:04:05Z",
        ),
        (None, "0001-01-01T00:00:00Z"),
    ],
)
def test_format_timestamp_like_go(moment, expected):
    assert format_timestamp(moment) == expected


@pytest.mark.parametrize(
    ("token", "refresh_token", "expected"),
    [
        ("Bearer abc", "r", ("abc", False)),
        ("Bearer abc", "", ("abc", False)),
        ("abc", None, ("abc", False)),
        ("Bearer ", "", (None, True)),
        ("Bearer ", None, (None, True)),
        ("Bearer", "", (None, True)),
        ("Bearer ", "r", (None, False)),
        ("", "", (None, False)),
        (None, None, (None, False)),
    ],
)
def test_parse_token(token, refresh_token, expected):
    assert parse_token(token, refresh_token) == expected


def test_record_expiry_normalised_to_utc():
    plus_one = timezone(timedelta(hours=1))

    record = ContextRecord(
        domain="astronomer.io", expires_at=datetime(2026, 12, 4, 22, 4, 5, tzinfo=plus_one)
    )

    assert record.expires_at == datetime(2026, 12, 4, 21, 4, 5, tzinfo=UTC)
    assert record.expires_at.tzinfo is UTC


def test_record_rejects_empty_domain():
    with pytest.raises(InvalidInputError, match="domain"):
        ContextRecord(domain=" ")


def test_record_is_logged_in():
    assert ContextRecord(domain="astronomer.io", token="abc").is_logged_in is True
    assert ContextRecord(domain="astronomer.io").is_logged_in is False
    assert ContextRecord(domain="astronomer.io", in_vault=True).is_logged_in is False
