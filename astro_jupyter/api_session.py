"""An authenticated ``requests`` session for the Astro public API, for notebook cells.

:func:`session` returns an :class:`AstroSession` whose relative URLs resolve
against the context's ``…/v1/`` base, whose requests carry the current token
(refreshed before it expires), and which retries a request once after a 401 by
renewing the token. GET, HEAD and OPTIONS requests are also retried twice at
most after a reset connection or a 429, 502, 503 or 504 response. Error
statuses raise :class:`~astro_jupyter.errors.ApiError` with the API's
``message``. The token is sent only to the API's own origin and
never appears in a repr or an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .config_store import ConfigStore
from .credentials import api_token_from_environment, default_store, get_token, renew_token
from .errors import ApiError, InvalidInputError, NotLoggedInError
from .http_client import (
    connection_failure_reason,
    error_for_response,
    json_body_or_none,
    origin_of,
    session_retry,
)
from .settings import AstroLogin

__all__ = ["AstroSession", "session"]

log = logging.getLogger(__name__)

_PAGE_SIZE = 100
_MAX_PAGES = 1000


class _TokenAuth(requests.auth.AuthBase):
    """Adds ``Authorization: Bearer`` for requests to the API's own origin only."""

    def __init__(self, origin: str, token: Callable[[], str]) -> None:
        self._origin = origin
        self._token = token
        self.last_token: str | None = None

    def __repr__(self) -> str:
        return f"_TokenAuth(origin={self._origin!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin_of(request.url or "") == self._origin:
            token = self._token()
            self.last_token = token
            request.headers["Authorization"] = f"Bearer {token}"
        return request


class AstroSession(requests.Session):
    """A session bound to one Astro context's public API.

    Use paths relative to the ``v1`` base, for example
    ``astro.get("organizations").json()``. Every request has the timeout
    ``AstroLogin.http_timeout_s`` unless it passes its own.

    Parameters
    ----------
    domain
        The context's domain, or None for the current one.
    store
        The config file with the login; default: the process's shared store.
    """

    def __init__(self, domain: str | None = None, *, store: ConfigStore | None = None) -> None:
        super().__init__()
        settings = AstroLogin.instance()
        self._store = store or default_store()
        name, record = self._store.read_login(
            settings.resolve_domain(domain) if domain else None
        )
        if name is None:
            if not api_token_from_environment():
                raise NotLoggedInError(
                    f"Not logged in to Astro: {self._store.path} names no current context; "
                    "run %astro_login (or `astro login` in a terminal)."
                )
            # An API token with no context in use: the default domain, as in the Astro CLI.
            name = settings.default_domain()
        self.domain = name
        self.organization_id = record.organization if record else None
        self.workspace_id = record.workspace if record else None
        self.base_url = f"{settings.api_base_url_for(name)}v1/"
        self.timeout_s = settings.http_timeout_s
        # GETs are retried after transient failures, as the login's requests are.
        adapter = requests.adapters.HTTPAdapter(max_retries=session_retry(self.timeout_s))
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.headers["User-Agent"] = "astro_jupyter"
        self.auth = _TokenAuth(origin_of(self.base_url), self._current_token)
        # Fail now, in the cell that created the session, when there is no login.
        self._current_token()

    def __repr__(self) -> str:
        return f"AstroSession(domain={self.domain!r}, base_url={self.base_url!r})"

    def _current_token(self) -> str:
        return get_token(self.domain, store=self._store)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send a request; relative URLs resolve against :attr:`base_url`.

        Raises
        ------
        ApiError
            The API returned an error status (after one retry on 401), or
            could not be reached.
        """
        absolute = urljoin(self.base_url, url.lstrip("/")) if not urlsplit(url).scheme else url
        kwargs.setdefault("timeout", self.timeout_s)
        step = f"{method.upper()} {urlsplit(absolute).path}"

        response = self._send(step, method, absolute, *args, **kwargs)
        auth = self.auth if isinstance(self.auth, _TokenAuth) else None
        if response.status_code == 401 and auth is not None and auth.last_token:
            rejected = auth.last_token
            renewed = renew_token(rejected, self.domain, store=self._store)
            if renewed != rejected:
                log.info("retrying %s after renewing the token of %s", step, self.domain)
                response.close()
                response = self._send(step, method, absolute, *args, **kwargs)

        error = error_for_response(
            step, f"the Astro API at {origin_of(absolute)}", response.status_code,
            json_body_or_none(response),
        )
        if error is not None:
            response.close()
            raise error
        return response

    def _send(
        self, step: str, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.Timeout:
            raise ApiError(
                f"{step} failed: the Astro API at {origin_of(url)} did not respond within "
                f"{kwargs.get('timeout')} s.",
                step=step,
            ) from None
        except requests.ConnectionError as error:
            reason = connection_failure_reason(error)
            raise ApiError(
                f"{step} failed: could not reach the Astro API at {origin_of(url)}: {reason}.",
                step=step,
            ) from None

    def _paginate(
        self, path: str, key: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        for _page in range(_MAX_PAGES):
            page_params = {**(params or {}), "limit": _PAGE_SIZE, "offset": offset}
            with self.get(path, params=page_params) as response:
                body = json_body_or_none(response)
            page = body.get(key) if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise ApiError(
                    f"GET {path} failed: the response is not JSON with a {key!r} list; check "
                    "the API URL.",
                    step=path,
                )
            items.extend(page)
            offset += len(page)
            total = body.get("totalCount")
            if not page or not isinstance(total, int) or offset >= total:
                return items
        raise ApiError(
            f"GET {path} failed: the list did not end after {offset} items.", step=path
        )

    def _organization(self, organization_id: str | None) -> str:
        chosen = organization_id or self.organization_id
        if not chosen:
            raise InvalidInputError(
                f"No organization is saved for {self.domain}, and an API token alone does not "
                f"name one; log in with %astro_login {self.domain}, or in Python pass "
                "organization_id= (see list_organizations())."
            )
        return chosen

    def list_organizations(self) -> list[dict[str, Any]]:
        """Return every organization the token can see."""
        return self._paginate("organizations", "organizations")

    def list_workspaces(self, organization_id: str | None = None) -> list[dict[str, Any]]:
        """Return every workspace of an organization (default: the context's)."""
        organization = self._organization(organization_id)
        return self._paginate(
            f"organizations/{organization}/workspaces", "workspaces", {"sorts": "name:asc"}
        )

    def list_deployments(
        self, workspace_id: str | None = None, organization_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the deployments of a workspace (default: the context's)."""
        organization = self._organization(organization_id)
        workspace = workspace_id or self.workspace_id
        if not workspace:
            raise InvalidInputError(
                f"No workspace is selected for {self.domain}; pass workspace_id or run "
                "%astro_workspace switch NAME."
            )
        return self._paginate(
            f"organizations/{organization}/deployments", "deployments", {"workspaceIds": workspace}
        )


def session(domain: str | None = None) -> AstroSession:
    """Return an :class:`AstroSession` for the current or given Astro context.

    Raises
    ------
    NotLoggedInError
        There is no usable login and no ``$ASTRO_API_TOKEN``.
    """
    return AstroSession(domain)
