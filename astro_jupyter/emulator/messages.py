"""HTTP request and response values passed between the server and the endpoint handlers.

Handlers take a ``Request`` and return a ``Response``, so they never touch a
socket. This module builds the common response shapes: JSON, HTML, redirects,
Astro API errors and OAuth errors. It does not route or log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import parse_qs

__all__ = [
    "HttpError",
    "InvalidParameterError",
    "Request",
    "Response",
    "api_error",
    "html_response",
    "json_response",
    "oauth_error",
    "redirect",
]

# Headers of every page and token response: credentials must not be cached
# (RFC 6749 section 5.1) and a code in a URL must not leak through Referer.
_NO_STORE_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("Referrer-Policy", "no-referrer"),
)


class InvalidParameterError(ValueError):
    """A query or form parameter is repeated, or a body cannot be parsed."""


class HttpError(Exception):
    """Raised by a handler to send ``response``, an error, instead of its normal response."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


@dataclass
class Request:
    """One HTTP request as the handlers see it.

    Attributes
    ----------
    method
        The HTTP method, upper case.
    path
        The path without the query string.
    raw_query
        The query string, without ``?``.
    headers
        The request headers.
    body
        The request body, empty for requests without one.
    request_id
        The random id sent in API error bodies.
    """

    method: str
    path: str
    raw_query: str
    headers: Message
    body: bytes
    request_id: str

    def query(self) -> dict[str, str]:
        """Return the query parameters.

        Raises
        ------
        InvalidParameterError
            A parameter appears more than once (RFC 6749 section 3.1 forbids it).
        """
        return _single_values(self.raw_query, "query")

    def form(self) -> dict[str, str]:
        """Return the parameters of an ``application/x-www-form-urlencoded`` body.

        Raises
        ------
        InvalidParameterError
            The content type is not form-encoded, the body is not UTF-8, or a
            parameter appears more than once.
        """
        content_type = self.headers.get_content_type()
        if content_type != "application/x-www-form-urlencoded":
            raise InvalidParameterError(
                f"Expected an application/x-www-form-urlencoded body, not {content_type}."
            )
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameterError("The form body is not UTF-8.") from exc
        return _single_values(text, "form")

    def json(self) -> object:
        """Return the JSON body.

        Raises
        ------
        InvalidParameterError
            The body is not UTF-8 JSON.
        """
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidParameterError("The request body is not valid JSON.") from exc

    def bearer_token(self) -> str | None:
        """Return the token of an ``Authorization: Bearer <token>`` header, or ``None``."""
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()


@dataclass
class Response:
    """One HTTP response that the server sends as it is."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def _single_values(text: str, where: str) -> dict[str, str]:
    try:
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidParameterError(f"The {where} parameters are not UTF-8.") from exc
    repeated = sorted(name for name, values in pairs.items() if len(values) > 1)
    if repeated:
        raise InvalidParameterError(
            f"The {where} parameters {repeated} appear more than once; send each once."
        )
    return {name: values[0] for name, values in pairs.items()}


def json_response(
    status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """Return a JSON response."""
    body = json.dumps(payload).encode("utf-8")
    return Response(status, body, "application/json", list(headers))


def html_response(status: int, page: str) -> Response:
    """Return an HTML page that browsers neither cache nor frame."""
    headers = [
        *_NO_STORE_HEADERS,
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ]
    return Response(status, page.encode("utf-8"), "text/html; charset=utf-8", headers)


def redirect(location: str) -> Response:
    """Return a 302 redirect to ``location``."""
    return Response(302, b"", None, [("Location", location), *_NO_STORE_HEADERS])


def api_error(status: int, message: str, request_id: str) -> Response:
    """Return an Astro API error: JSON with ``message``, ``statusCode`` and ``requestId``."""
    payload = {"message": message, "statusCode": status, "requestId": request_id}
    headers: tuple[tuple[str, str], ...] = ()
    if status == 401:
        headers = (("WWW-Authenticate", 'Bearer realm="astro-emulator"'),)
    return json_response(status, payload, headers)


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    """Return an OAuth token endpoint error (RFC 6749 section 5.2)."""
    payload = {"error": error, "error_description": description}
    return json_response(status, payload, _NO_STORE_HEADERS)
