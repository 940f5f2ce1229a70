"""One HTTP session for talking to Astro, with timeouts and one-line errors.

Every request carries the timeout the client was built with. Idempotent
requests are retried a bounded number of times, with backoff, after a reset
connection or a 429, 502, 503 or 504 response. A request that may have reached
the server is never repeated unless the caller marks it idempotent, so a
single-use authorization code or a rotating refresh token is sent once. A
refused connection is retried for every request, because nothing was sent.
Every failure becomes an :class:`~astro_jupyter.errors.ApiError` whose message
names the step and the server, but never a query string, a header or a request
body.

This module does not import the login flow, IPython or the config store.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError
from urllib3.util.retry import Retry

from .errors import ApiError, OAuthError

__all__ = [
    "HttpClient",
    "connection_failure_reason",
    "describe_server",
    "error_for_response",
    "json_body_or_none",
    "origin_of",
    "retry_after_s",
    "session_retry",
]

log = logging.getLogger(__name__)

_USER_AGENT = "astro_jupyter"
# Statuses after which an idempotent request is worth another try.
_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# The first wait before a retry, in seconds. Each later wait doubles it.
_BACKOFF_S = 0.2
# Retry-After is honoured up to this many seconds per retry and never beyond
# the client's timeout, because a longer wait than one request's own budget
# would look like a hang. The error message then reports the requested wait.
_MAX_RETRY_AFTER_S = 5.0
# Server messages are shown to the user; a page of HTML is not a message.
_MAX_SERVER_MESSAGE_CHARS = 300


def origin_of(url: str) -> str:
    """Return ``scheme://host:port/`` of a URL, dropping its path and query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def describe_server(kind: str, url: str) -> str:
    """Return a phrase such as ``the Astro API at https://api.astronomer.io/``."""
    return f"the {kind} at {origin_of(url)}"


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    if len(line) > _MAX_SERVER_MESSAGE_CHARS:
        line = line[: _MAX_SERVER_MESSAGE_CHARS - 1] + "…"
    return line


def _causes(error: BaseException) -> list[BaseException]:
    """List an exception and its causes; urllib3 keeps some in ``reason`` or ``args``."""
    found: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending and len(found) < 20:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(getattr(current, "args", ()))
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return found


def connection_failure_reason(error: BaseException) -> str:
    """Name the most telling cause of a failed connection, in a few words."""
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, http.client.RemoteDisconnected):
            return "the server closed the connection without a response"
        if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
            return "connection reset by the server"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({_one_line(str(cause.reason or cause))})"
        if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable"
        if type(cause).__name__ == "NameResolutionError" or isinstance(cause, socket.gaierror):
            return "host name not found"
    return "connection failed"


def _is_transient(error: BaseException) -> bool:
    """Tell whether a failed connection is worth another try: refused, reset or dropped."""
    causes = _causes(error)
    if any(isinstance(cause, ssl.SSLError) for cause in causes):
        return False
    transient = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)
    return any(isinstance(cause, transient) for cause in causes)


def _never_sent(error: BaseException) -> bool:
    """Tell whether the connection failed before any byte of the request was sent."""
    return any(isinstance(cause, ConnectionRefusedError) for cause in _causes(error))


# A bound on a parsed Retry-After, so a huge header still gives a finite number
# of seconds to report. Every actual wait is capped far lower.
_MAX_RETRY_AFTER_S = 86400


def retry_after_s(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (RFC 9110 section 10.2.3) into seconds from now.

    Returns None when the header is missing or malformed.
    """
    if not value:
        return None
    value = value.strip()
    # isdigit() alone accepts characters such as "²", which float() rejects.
    if value.isascii() and value.isdigit():
        return float(min(int(value), _MAX_RETRY_AFTER_S))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


class _CappedRetry(Retry):
    """urllib3's retry policy with every Retry-After wait cut to ``max_retry_after_s``."""

    def __init__(self, *args: Any, max_retry_after_s: float = _MAX_RETRY_AFTER_S, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_retry_after_s = max_retry_after_s

    def new(self, **kwargs: Any) -> _CappedRetry:
        retry = super().new(**kwargs)
        retry.max_retry_after_s = self.max_retry_after_s
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.max_retry_after_s)

    def increment(self, *args: Any, **kwargs: Any) -> _CappedRetry:
        # urllib3 counts a connect timeout as a connection error and a read
        # timeout as a read error, but another wait as long would double the
        # time the caller allowed, so neither is retried, as in HttpClient.
        error = kwargs.get("error")
        if isinstance(error, Urllib3TimeoutError):
            raise error
        return super().increment(*args, **kwargs)


def session_retry(timeout_s: float, retries: int = 2) -> Retry:
    """Return the retry policy of :class:`HttpClient` for a ``requests`` adapter.

    GET, HEAD and OPTIONS are retried after a reset connection or a 429, 502,
    503 or 504 response, but not after a read timeout. Every method is retried
    after a failed connection, because it sent nothing. Retry-After is honoured up to the smaller of
    ``_MAX_RETRY_AFTER_S`` and ``timeout_s``. The last response is returned
    as it is, so that the caller reports its status.
    """
    return _CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
        status_forcelist=_TRANSIENT_STATUSES,
        backoff_factor=_BACKOFF_S,
        raise_on_status=False,
        max_retry_after_s=min(_MAX_RETRY_AFTER_S, timeout_s),
    )


class HttpClient:
    """A requests session shared by one login or one API client.

    Parameters
    ----------
    timeout_s
        Connect and read timeout of every request, in seconds.
    retries
        How many times a request is repeated after a transient failure, with
        exponential backoff: an idempotent request after a refused or reset
        connection or a 429, 502, 503 or 504 response, any other request only
        after a refused connection.
    """

    def __init__(self, timeout_s: float = 30.0, retries: int = 2) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        # requests' default adapter retries nothing, so every retry is decided below.
        self._session = requests.Session()
        self._session.headers["User-Agent"] = _USER_AGENT

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpClient(timeout_s={self.timeout_s})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def request_json(
        self,
        step: str,
        server: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        bearer: str | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON body.

        Parameters
        ----------
        step
            What the request is for, used as the start of every error message,
            for example ``"Token exchange"``.
        server
            The server's name for error messages: ``"Astro API"`` or ``"Astro OAuth server"``.
        bearer
            An access token to send as ``Authorization: Bearer``.
        idempotent
            Whether sending the request twice does no harm, so that it may be
            retried after it may have reached the server. Default: true for
            GET only.

        Raises
        ------
        OAuthError
            The server responded with an OAuth ``error`` field.
        ApiError
            The server could not be reached, timed out, returned an error
            status, or returned something that is not JSON.
        """
        all_headers = {"Accept": "application/json", **(headers or {})}
        if bearer is not None:
            all_headers["Authorization"] = f"Bearer {bearer}"
        where = describe_server(server, url)
        if idempotent is None:
            idempotent = method.upper() == "GET"
        attempts = self.retries + 1

        for attempt in range(1, attempts + 1):
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    headers=all_headers,
                    json=json_body,
                    data=form,
                    timeout=self.timeout_s,
                    allow_redirects=False,
                )
            except requests.Timeout:
                # Not retried: another wait as long would double the time the user allowed.
                raise ApiError(
                    f"{step} failed: {where} did not respond within {self.timeout_s:g} s; "
                    "check the network or raise AstroLogin.http_timeout_s.",
                    step=step,
                ) from None
            except requests.RequestException as error:
                reason = connection_failure_reason(error)
                may_repeat = idempotent or _never_sent(error)
                if attempt < attempts and may_repeat and _is_transient(error):
                    self._pause(step, where, reason, self._backoff_s(attempt), attempt, attempts)
                    continue
                raise ApiError(
                    f"{step} failed: could not reach {where}: {reason}.{_tried(attempt)}",
                    step=step,
                ) from None

            log.debug("%s %s -> %s", method, _without_query(url), response.status_code)
            status = response.status_code
            if attempt < attempts and idempotent and status in _TRANSIENT_STATUSES:
                wait_s = self._retry_wait_s(response, attempt)
                response.close()
                self._pause(step, where, f"HTTP {status}", wait_s, attempt, attempts)
                continue
            try:
                return self._decode(step, where, response, attempt)
            finally:
                response.close()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff_s(self, attempt: int) -> float:
        return _BACKOFF_S * 2.0 ** (attempt - 1)

    def _retry_wait_s(self, response: requests.Response, attempt: int) -> float:
        requested_s = retry_after_s(response.headers.get("Retry-After"))
        if requested_s is None:
            return self._backoff_s(attempt)
        return min(requested_s, _MAX_RETRY_AFTER_S, self.timeout_s)

    @staticmethod
    def _pause(
        step: str, where: str, reason: str, wait_s: float, attempt: int, attempts: int
    ) -> None:
        # NOTE: the wait is not interruptible, so a login cancelled now ends
        # after at most _MAX_RETRY_AFTER_S seconds.
        log.info(
            "%s: %s failed (%s); retrying in %.2f s, attempt %d of %d",
            step,
            where,
            reason,
            wait_s,
            attempt + 1,
            attempts,
        )
        time.sleep(wait_s)

    def _decode(
        self, step: str, where: str, response: requests.Response, attempt: int
    ) -> Any:
        body = json_body_or_none(response)
        error = error_for_response(step, where, response.status_code, body)
        if error is not None:
            error.message += _tried(attempt)
            requested_wait_s = retry_after_s(response.headers.get("Retry-After"))
            if response.status_code == 429 and requested_wait_s is not None:
                error.message += (
                    f" The server asks to wait {requested_wait_s:.0f} s before trying again."
                )
            error.args = (error.message,)
            raise error
        if 300 <= response.status_code < 400:
            raise ApiError(
                f"{step} failed: {where} returned an unexpected redirect "
                f"(HTTP {response.status_code}); check the API URL.",
                step=step,
                status=response.status_code,
            )
        if body is None:
            raise ApiError(
                f"{step} failed: {where} returned HTTP {response.status_code} with a body that "
                "is not JSON; check the API URL.",
                step=step,
                status=response.status_code,
            )
        return body


def _tried(attempt: int) -> str:
    return f" Tried {attempt} times." if attempt > 1 else ""


def json_body_or_none(response: requests.Response) -> Any:
    """Return the decoded JSON body of a response, or None when it is not JSON."""
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def error_for_response(step: str, where: str, status: int, body: Any) -> ApiError | None:
    """Build the error for an HTTP error status, or return None for a status below 400.

    An OAuth ``error`` field (RFC 6749 section 5.2) gives an :class:`OAuthError`;
    an Astro API ``message`` (with its ``requestId``) is quoted in the message.
    """
    if status < 400:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        description = _one_line(body.get("error_description") or "no description")
        return OAuthError(
            f"{step} failed: {where} rejected the request ({code}: {description}).",
            step=step,
            status=status,
            oauth_error=code,
        )
    detail = ""
    if isinstance(body, dict) and body.get("message"):
        detail = f": {_one_line(body['message'])}"
        if body.get("requestId"):
            detail += f" (request id {_one_line(body['requestId'])})"
    label = " (too many requests)" if status == 429 else ""
    return ApiError(
        f"{step} failed: {where} returned HTTP {status}{label}{detail}.", step=step, status=status
    )
