"""Handlers of the emulated Astro API: auth config, organisation lookup, users and lists.

List endpoints are paginated with ``limit`` and ``offset`` and return
``totalCount``. A page never contains more than ``page_size_max`` items,
whatever ``limit`` requests, so clients must follow ``offset`` to the end. These handlers do
not read sockets, apply faults or log: the server does that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .backend import AUDIENCE, CLIENT_ID, Backend
from .messages import HttpError, InvalidParameterError, Request, Response, api_error, json_response
from .oauth import authenticate
from .state import Organization, User

__all__ = [
    "DEFAULT_PAGE_LIMIT",
    "MAX_PAGE_LIMIT",
    "auth_config",
    "current_user",
    "get_organization",
    "legacy_auth_config",
    "list_deployments",
    "list_organizations",
    "list_workspaces",
    "organization_lookup",
]

DEFAULT_PAGE_LIMIT = 20
"""Page size when a list request sends no ``limit``."""

MAX_PAGE_LIMIT = 1000
"""Largest ``limit`` a list request may send; pages are capped lower by ``page_size_max``."""

CLIENT_HEADER = "X-Astro-Client-Identifier"

_Item = TypeVar("_Item")


def _auth_settings(backend: Backend) -> dict[str, str]:
    domain_url = backend.domain_url or backend.oauth_base_url
    return {"clientId": CLIENT_ID, "audience": AUDIENCE, "domainUrl": domain_url}


def auth_config(backend: Backend, request: Request) -> Response:
    """Handle ``GET <api>private/v1alpha1/cli/auth-config``, which requires the CLI header."""
    if request.headers.get(CLIENT_HEADER) != "cli":
        message = f"Missing or invalid header {CLIENT_HEADER}: expected 'cli'."
        return api_error(400, message, request.request_id)
    return json_response(200, _auth_settings(backend))


def legacy_auth_config(backend: Backend, request: Request) -> Response:
    """Handle ``GET <api>auth-config``, the older form that also sends ``authFlow``."""
    return json_response(200, {**_auth_settings(backend), "authFlow": backend.legacy_auth_flow})


def organization_lookup(backend: Backend, request: Request) -> Response:
    """Handle ``POST <api>organization-lookup``: the organisation ids of an email.

    An unknown email gets an empty list, and the lookup creates no user.
    """
    try:
        payload = request.json()
    except InvalidParameterError as exc:
        return api_error(400, str(exc), request.request_id)
    email = payload.get("email") if isinstance(payload, dict) else None
    if not isinstance(email, str) or not email:
        return api_error(400, 'Expected a JSON body {"email": "<email>"}.', request.request_id)
    user = backend.directory.find_user(email)
    organization_ids = list(user.organization_ids) if user else []
    return json_response(200, {"organizationIds": organization_ids})


def current_user(backend: Backend, request: Request) -> Response:
    """Handle ``GET <api>v1/users/self``.

    ``createIfNotExist`` changes nothing, because signing in already created the user.
    """
    user = authenticate(backend, request)
    return json_response(200, user.to_json())


def list_organizations(backend: Backend, request: Request) -> Response:
    """Handle ``GET <api>v1/organizations``: the caller's organisations."""
    user = authenticate(backend, request)
    query = _query(request)
    organizations = backend.directory.organizations_of(user)
    return _page(backend, request, query, "organizations", organizations, Organization.to_json)


def get_organization(backend: Backend, request: Request, org_id: str) -> Response:
    """Handle ``GET <api>v1/organizations/<id>``: 404 if unknown, 403 if not a member."""
    user = authenticate(backend, request)
    organization = _member_organization(backend, request, user, org_id)
    return json_response(200, organization.to_json())


def list_workspaces(backend: Backend, request: Request, org_id: str) -> Response:
    """Handle ``GET <api>v1/organizations/<id>/workspaces``, sorted by ``sorts=name:asc|desc``."""
    user = authenticate(backend, request)
    organization = _member_organization(backend, request, user, org_id)
    query = _query(request)
    sorts = query.get("sorts", "name:asc")
    if sorts not in ("name:asc", "name:desc"):
        message = f"Unsupported sorts {sorts!r}: expected name:asc or name:desc."
        raise HttpError(api_error(400, message, request.request_id))
    workspaces = sorted(
        organization.workspaces,
        key=lambda workspace: (workspace.name.lower(), workspace.id),
        reverse=sorts == "name:desc",
    )
    return _page(backend, request, query, "workspaces", workspaces, lambda ws: ws.to_json())


def list_deployments(backend: Backend, request: Request, org_id: str) -> Response:
    """Handle ``GET <api>v1/organizations/<id>/deployments``.

    ``workspaceIds`` keeps the deployments of the listed workspaces, given as
    one comma-separated value; ids of other workspaces match nothing.
    """
    user = authenticate(backend, request)
    organization = _member_organization(backend, request, user, org_id)
    query = _query(request)
    deployments = organization.deployments
    if query.get("workspaceIds"):
        requested_ids = {value.strip() for value in query["workspaceIds"].split(",")}
        deployments = [item for item in deployments if item.workspace_id in requested_ids]
    return _page(backend, request, query, "deployments", deployments, lambda dep: dep.to_json())


def _query(request: Request) -> dict[str, str]:
    try:
        return request.query()
    except InvalidParameterError as exc:
        raise HttpError(api_error(400, str(exc), request.request_id)) from exc


def _member_organization(
    backend: Backend, request: Request, user: User, org_id: str
) -> Organization:
    organization = backend.directory.organization(org_id)
    if organization is None:
        message = f"Organization {org_id!r} not found."
        raise HttpError(api_error(404, message, request.request_id))
    if org_id not in user.organization_ids:
        message = f"User {user.id} is not a member of organization {org_id!r}."
        raise HttpError(api_error(403, message, request.request_id))
    return organization


def _int_parameter(
    request: Request, query: dict[str, str], name: str, default: int, low: int, high: int
) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        message = f"Invalid {name} {text!r}: expected an integer from {low} to {high}."
        raise HttpError(api_error(400, message, request.request_id))
    return value


def _page(
    backend: Backend,
    request: Request,
    query: dict[str, str],
    key: str,
    items: Sequence[_Item],
    to_json: Callable[[_Item], dict[str, object]],
) -> Response:
    """Return one page of ``items`` as ``{key: [...], "totalCount", "limit", "offset"}``.

    The response's ``limit`` is the page size actually used, after the cap.
    """
    limit = _int_parameter(request, query, "limit", DEFAULT_PAGE_LIMIT, 1, MAX_PAGE_LIMIT)
    offset = _int_parameter(request, query, "offset", 0, 0, 2**31 - 1)
    page_size = min(limit, backend.page_size_max)
    page = items[offset : offset + page_size]
    payload = {
        key: [to_json(item) for item in page],
        "totalCount": len(items),
        "limit": page_size,
        "offset": offset,
    }
    return json_response(200, payload)
