"""Calls to the Astro API that a login needs: organization lookup and the session check.

The session check follows the Astro CLI: create or fetch the user, pick the
organization (the stored one if it is still reachable, else the first one
listed), then list its workspaces and pick one when the choice is clear. This
module returns what it found; it never prompts and never writes the config.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .errors import ApiError
from .http_client import HttpClient

__all__ = [
    "Organization",
    "SessionInfo",
    "Workspace",
    "check_session",
    "list_workspaces",
    "lookup_organization_ids",
]

log = logging.getLogger(__name__)

API_SERVER = "Astro API"
_WORKSPACE_PAGE_SIZE = 1000
# A safety stop for a server whose totalCount never matches what it returns.
_MAX_WORKSPACE_PAGES = 1000


@dataclass(frozen=True)
class Organization:
    """An Astro organization."""

    id: str
    name: str
    product: str = "HYBRID"


@dataclass(frozen=True)
class Workspace:
    """An Astro workspace."""

    id: str
    name: str


@dataclass(frozen=True)
class SessionInfo:
    """Result of the session check for a signed-in user.

    ``workspace`` is None when the organization has no workspace, or has
    several and none of them was used last: the caller then asks the user.
    """

    organization: Organization
    workspaces: tuple[Workspace, ...]
    workspace: Workspace | None


def lookup_organization_ids(http: HttpClient, api_base_url: str, email: str) -> list[str]:
    """Return the ids of the organizations an email belongs to, for the sign-in page to route to."""
    step = "Organization lookup"
    # The lookup only reads, and POST merely keeps the email out of URLs and
    # access logs, so repeating it is safe (RFC 9110 section 9.2.2 defines
    # idempotence by the effect on the server, not by the method).
    body = http.request_json(
        step,
        API_SERVER,
        "POST",
        f"{api_base_url}organization-lookup",
        json_body={"email": email},
        idempotent=True,
    )
    ids = body.get("organizationIds") if isinstance(body, dict) else None
    if ids is None:
        return []
    if not isinstance(ids, list):
        raise ApiError(f"{step} failed: 'organizationIds' is not a list.", step=step)
    return [value for value in ids if isinstance(value, str) and value]


def _organization(step: str, item: Any) -> Organization:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise ApiError(f"{step} failed: an organization in the response has no 'id'.", step=step)
    product = item.get("product")
    return Organization(
        id=item["id"],
        name=str(item.get("name") or item["id"]),
        product=product if isinstance(product, str) and product else "HYBRID",
    )


def _list_field(step: str, body: Any, key: str) -> list[Any]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ApiError(f"{step} failed: the response has no {key!r} list.", step=step)
    return items


def _pick_organization(
    http: HttpClient, v1: str, token: str, stored_id: str | None
) -> Organization:
    if stored_id:
        try:
            body = http.request_json(
                "Organization",
                API_SERVER,
                "GET",
                f"{v1}organizations/{quote(stored_id, safe='')}",
                bearer=token,
            )
            return _organization("Organization", body)
        except ApiError as error:
            if error.status not in (403, 404):
                raise
            log.info("stored organization %s is not reachable (HTTP %s)", stored_id, error.status)

    step = "Organizations"
    body = http.request_json(
        step, API_SERVER, "GET", f"{v1}organizations", params={"limit": 100}, bearer=token
    )
    items = _list_field(step, body, "organizations")
    if not items:
        raise ApiError(
            "Organizations failed: this account belongs to no Astro organization; "
            "ask an organization owner to invite you, then log in again.",
            step=step,
        )
    return _organization(step, items[0])


def list_workspaces(
    http: HttpClient, api_base_url: str, token: str, organization_id: str
) -> list[Workspace]:
    """List every workspace of an organization, following ``offset`` pagination."""
    step = "Workspaces"
    url = f"{api_base_url}v1/organizations/{quote(organization_id, safe='')}/workspaces"
    workspaces: list[Workspace] = []
    offset = 0

    for _page in range(_MAX_WORKSPACE_PAGES):
        params = {"limit": _WORKSPACE_PAGE_SIZE, "offset": offset, "sorts": "name:asc"}
        body = http.request_json(step, API_SERVER, "GET", url, params=params, bearer=token)
        items = _list_field(step, body, "workspaces")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise ApiError(
                    f"{step} failed: a workspace in the response has no 'id'.", step=step
                )
            workspaces.append(Workspace(id=item["id"], name=str(item.get("name") or item["id"])))

        total = body.get("totalCount")
        offset += len(items)
        if not items or not isinstance(total, int) or offset >= total:
            return workspaces

    raise ApiError(
        f"{step} failed: the workspace list did not end after {offset} items.", step=step
    )


def check_session(
    http: HttpClient,
    api_base_url: str,
    token: str,
    *,
    stored_organization: str | None = None,
    last_used_workspace: str | None = None,
) -> SessionInfo:
    """Run the Astro CLI's session check with a fresh access token.

    Parameters
    ----------
    stored_organization
        The organization id saved in the context, tried first.
    last_used_workspace
        The workspace id used last in this context, selected again when the
        organization has several workspaces and it is one of them.
    """
    v1 = f"{api_base_url}v1/"
    step = "Current user"
    user = http.request_json(
        step,
        API_SERVER,
        "GET",
        f"{v1}users/self",
        params={"createIfNotExist": "true"},
        bearer=token,
    )
    # A response without the user's id is not the Astro API's user record, so
    # the API URL points at some other server.
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise ApiError(f"{step} failed: the response has no user 'id'.", step=step)

    organization = _pick_organization(http, v1, token, stored_organization)
    workspaces = tuple(list_workspaces(http, api_base_url, token, organization.id))
    return SessionInfo(
        organization=organization,
        workspaces=workspaces,
        workspace=select_workspace(workspaces, last_used_workspace),
    )


def select_workspace(
    workspaces: tuple[Workspace, ...], last_used_id: str | None
) -> Workspace | None:
    """Pick the only workspace, or the last used one among several; else None."""
    if len(workspaces) == 1:
        return workspaces[0]
    for workspace in workspaces:
        if workspace.id == last_used_id:
            return workspace
    return None
