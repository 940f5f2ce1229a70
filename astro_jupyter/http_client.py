"""One HTTP session for talking to Astro, with timeouts and one-line errors.

Every request carries the timeout the client was built with, and idempotent
GETs are retried a bounded number of times on 502, 503 and 504. Every failure
becomes an :class:`~astro_jupyter.errors.ApiError` whose message names the step
and the server, but never a query string, a header or a request body.

This module does not import the login flow, IPython or the config store.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import ApiError, OAuthError

__all__ = [
    "HttpClient",
    "connection_failure_reason",
    "describe_server",
    "error_for_response",
    "json_body_or_none",
    "origin_of",
]

log = logging.getLogger(__name__)

_USER_AGENT = "astro_jupyter"
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
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({_one_line(cause.reason or cause)})"
        if isinstance(cause, OSError) and cause.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable"
        if type(cause).__name__ == "NameResolutionError" or isinstance(cause, socket.gaierror):
            return "host name not found"
    return "connection failed"


class HttpClient:
    """A requests session shared by one login or one API client.

    Parameters
    ----------
    timeout_s
        Connect and read timeout of every request, in seconds.
    retries
        How many times an idempotent request is repeated after a 502, 503 or
        504 response or a failed connection, with exponential backoff.
    """

    def __init__(self, timeout_s: float = 30.0, retries: int = 2) -> None:
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers["User-Agent"] = _USER_AGENT
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,
            status=retries,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            # urllib3 2.x honours Retry-After up to six hours per retry
            # (Retry.DEFAULT_RETRY_AFTER_MAX), far beyond the request timeout,
            # so the short backoff is used instead.
            respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

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
            raise ApiError(
                f"{step} failed: {where} did not respond within {self.timeout_s:g} s; "
                "check the network or raise AstroLogin.http_timeout_s.",
                step=step,
            ) from None
        except requests.RequestException as error:
            reason = connection_failure_reason(error)
            raise ApiError(
                f"{step} failed: could not reach {where}: {reason}.", step=step
            ) from None

        log.debug("%s %s -> %s", method, _without_query(url), response.status_code)
        try:
            return self._decode(step, where, response)
        finally:
            response.close()

    def _decode(self, step: str, where: str, response: requests.Response) -> Any:
        body = json_body_or_none(response)
        error = error_for_response(step, where, response.status_code, body)
        if error is not None:
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
    return ApiError(
        f"{step} failed: {where} returned HTTP {status}{detail}.", step=step, status=status
    )
