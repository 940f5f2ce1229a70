"""A per-API cache of the OAuth auth config, so later logins in a kernel skip that request.

The auth config (client id, audience, OAuth server URL) of an Astro control
plane changes rarely, yet ``astro login`` fetches it on every login. The
cache keeps each API base URL's config for :data:`DEFAULT_TTL_S` seconds.
Only a config that was fetched and parsed is stored: an error reaches the
caller and leaves the cache as it was, so the next login fetches again.

This module creates no instance of its own. The process's
:class:`~astro_jupyter.settings.AstroLogin` settings object keeps one, which
lives as long as the kernel. It does no I/O itself: the caller passes the fetch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for annotations: importing oauth_client would load requests when the
    # settings load, which is when %load_ext runs.
    from .oauth_client import AuthConfig

__all__ = ["DEFAULT_TTL_S", "AuthConfigCache"]

# One hour bounds how long a kernel keeps a changed client id or OAuth server URL.
DEFAULT_TTL_S = 3600.0


class AuthConfigCache:
    """Auth configs by API base URL, each kept for ``ttl_s`` seconds after it was fetched.

    Parameters
    ----------
    ttl_s
        Seconds an entry stays valid. Must be more than 0.
    clock
        Monotonic clock in seconds, replaceable so tests can move time on.
    """

    def __init__(
        self, ttl_s: float = DEFAULT_TTL_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not ttl_s > 0:
            raise ValueError(f"Invalid ttl_s {ttl_s!r}: expected more than 0 seconds.")
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[AuthConfig, float]] = {}

    def __repr__(self) -> str:
        with self._lock:
            bases = sorted(self._entries)
        return f"AuthConfigCache(ttl_s={self._ttl_s:g}, api_base_urls={bases!r})"

    def get(self, api_base_url: str, fetch: Callable[[str], AuthConfig]) -> AuthConfig:
        """Return the config of ``api_base_url``, from ``fetch(api_base_url)`` if none is valid.

        Exceptions from ``fetch`` propagate and nothing is stored. Two threads
        that miss at the same moment both fetch, and the later result is kept.
        The lock is not held during the fetch, so a slow server blocks no other
        API base URL.
        """
        cached = self._lookup(api_base_url)
        if cached is not None:
            # NOTE: a login that fails with a cached config does not drop it, so a
            # changed client id fails logins until the entry expires or is forgotten.
            return cached
        config = fetch(api_base_url)
        with self._lock:
            self._entries[api_base_url] = (config, self._clock() + self._ttl_s)
        return config

    def forget(self, api_base_url: str | None = None) -> None:
        """Drop the entry of ``api_base_url``, or every entry when it is ``None``."""
        with self._lock:
            if api_base_url is None:
                self._entries.clear()
            else:
                self._entries.pop(api_base_url, None)

    def _lookup(self, api_base_url: str) -> AuthConfig | None:
        with self._lock:
            entry = self._entries.get(api_base_url)
            if entry is None:
                return None
            config, expires_at = entry
            if self._clock() >= expires_at:
                del self._entries[api_base_url]
                return None
            return config
