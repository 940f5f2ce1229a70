"""Judging the query string of an OAuth redirect to the loopback callback.

The browser's redirect and an address the user pasted both end here. The
judgment depends only on the query and the login's ``state``: it sends nothing
and raises nothing.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs

__all__ = ["CallbackOutcome", "parse_callback_query"]

# A real callback has 2 to 4 parameters, and parse_qs raises ValueError beyond this many.
_MAX_QUERY_FIELDS = 50
_MAX_DESCRIPTION_CHARS = 300
# RFC 6749 appendix A: a code is VSCHAR (0x20-0x7E), an error is NQSCHAR (VSCHAR
# without '"' and '\\').
_VISIBLE_ASCII = re.compile(r"[\x20-\x7e]+")
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True)
class CallbackOutcome:
    """Verdict on one request to the callback.

    Exactly one of ``code`` and ``error`` is set when ``accepted`` is true.
    ``ignored_reason`` is set when the request must not affect the login: it is
    ``"missing state"``, ``"repeated state"``, ``"wrong state"`` or
    ``"unreadable query"``.
    """

    accepted: bool
    code: str | None = field(default=None, repr=False)
    error: str | None = None
    error_description: str | None = None
    ignored_reason: str | None = None
    # The state matched but the response had no usable code: missing, repeated or malformed.
    missing_code: bool = False

    def __repr__(self) -> str:
        code = "<hidden>" if self.code else None
        return (
            f"CallbackOutcome(accepted={self.accepted}, code={code}, error={self.error!r}, "
            f"ignored_reason={self.ignored_reason!r})"
        )


def _printable(text: str) -> str:
    """Return ``text`` as one line without control or format characters, for a message."""
    visible = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(visible.split())


def _read_error(params: dict[str, list[str]]) -> CallbackOutcome:
    """Judge a response with an ``error`` parameter whose ``state`` matched."""
    errors = params["error"]
    descriptions = params.get("error_description", [])
    if len(errors) > 1 or len(descriptions) > 1:
        return CallbackOutcome(
            accepted=True,
            error="invalid_request",
            error_description="the response has more than one error or error_description",
        )
    error = errors[0] if _ERROR_CODE.fullmatch(errors[0]) else "invalid_request"
    description = _printable(descriptions[0] if descriptions else "")
    return CallbackOutcome(
        accepted=True,
        error=error,
        error_description=description[:_MAX_DESCRIPTION_CHARS] or None,
    )


def _read_code(params: dict[str, list[str]]) -> CallbackOutcome:
    """Judge a response without an ``error`` parameter whose ``state`` matched."""
    codes = [code for code in params.get("code", []) if code]
    problem = None
    if not codes:
        problem = "the response has no code"
    elif len(params["code"]) > 1:
        problem = "the response has more than one code"
    elif not _VISIBLE_ASCII.fullmatch(codes[0]):
        problem = "the response's code contains characters that no authorization code has"
    if problem:
        return CallbackOutcome(
            accepted=True, error="invalid_request", error_description=problem, missing_code=True
        )
    return CallbackOutcome(accepted=True, code=codes[0])


def parse_callback_query(query: str, expected_state: str) -> CallbackOutcome:
    """Judge a callback query string against the state the login sent.

    A query that cannot be decoded (invalid UTF-8 in a percent-escape, or more
    than 50 parameters) is ignored, and so is one whose ``state`` is missing,
    repeated or wrong: nothing shows that it belongs to this login. With the
    right ``state``, a repeated or malformed ``code`` or ``error`` makes the
    outcome an ``invalid_request`` error, never a guess at which value was
    meant. This function raises no exception.
    """
    try:
        params = parse_qs(
            query, keep_blank_values=True, max_num_fields=_MAX_QUERY_FIELDS, errors="strict"
        )
    except ValueError:
        # UnicodeDecodeError is a ValueError too.
        return CallbackOutcome(accepted=False, ignored_reason="unreadable query")

    states = [state for state in params.get("state", []) if state]
    if not states:
        return CallbackOutcome(accepted=False, ignored_reason="missing state")
    if len(params["state"]) > 1:
        return CallbackOutcome(accepted=False, ignored_reason="repeated state")
    state = states[0]
    # compare_digest takes str only when it is ASCII, and the login's state is.
    if not state.isascii() or not hmac.compare_digest(state, expected_state):
        return CallbackOutcome(accepted=False, ignored_reason="wrong state")

    if "error" in params:
        return _read_error(params)
    return _read_code(params)
