"""Raw HTTP requests to the emulator for its own tests, with http.client.

http.client follows no redirect, so a test gets each 302 response with its
Location header. call() returns a reply for every status, 4xx and 5xx included.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Bound on every request sent with call(), in seconds.
REQUEST_TIMEOUT_S = 5


@dataclass
class Reply:
    """One response: its status, its headers with lower-case names, and its body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    token: str | None = None,
) -> Reply:
    """Send one request and return the reply, with ``token`` as a Bearer token when given."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request(method, target, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        reply_headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, reply_headers, data)
    finally:
        connection.close()
