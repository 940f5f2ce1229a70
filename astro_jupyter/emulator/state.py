"""Users, organisations, workspaces and deployments of the emulated control plane.

The directory is an in-memory, thread-safe store with made-up data. It creates
users on first sign-in and puts them in a default organisation. It stores no
tokens and does not decide who may see what: the API handlers do that.
"""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = [
    "DEFAULT_ORGANIZATION_NAME",
    "DEFAULT_WORKSPACE_NAMES",
    "PRODUCTS",
    "Deployment",
    "Directory",
    "Organization",
    "User",
    "Workspace",
]

DEFAULT_ORGANIZATION_NAME = "Example Org"
DEFAULT_WORKSPACE_NAMES = ("Data Engineering", "Analytics")
PRODUCTS = ("HOSTED", "HYBRID")

# Deployments made up for every workspace, as (name suffix, status).
_DEPLOYMENT_TEMPLATES = (("production", "HEALTHY"), ("development", "HIBERNATING"))

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


@dataclass(frozen=True)
class Workspace:
    """A workspace of one organisation."""

    id: str
    name: str
    organization_id: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "organizationId": self.organization_id}


@dataclass(frozen=True)
class Deployment:
    """A made-up Airflow deployment in one workspace."""

    id: str
    name: str
    workspace_id: str
    organization_id: str
    status: str

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "workspaceId": self.workspace_id,
            "organizationId": self.organization_id,
            "status": self.status,
        }


@dataclass
class Organization:
    """An organisation with its workspaces and their deployments, in creation order."""

    id: str
    name: str
    product: str
    workspaces: list[Workspace] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "product": self.product}


@dataclass
class User:
    """A user and the ids of the organisations the user is a member of."""

    id: str
    email: str
    organization_ids: list[str]
    created_at: str

    @property
    def full_name(self) -> str:
        """The name made up from the email's local part: ``jane.doe@x`` is ``Jane Doe``."""
        local = self.email.split("@", 1)[0]
        words = "".join(c if c.isalnum() else " " for c in local).split()
        return " ".join(word.capitalize() for word in words) or self.email

    def to_json(self) -> dict[str, object]:
        """Return the user as ``GET /v1/users/self`` sends it."""
        return {
            "id": self.id,
            "username": self.email,
            "fullName": self.full_name,
            "status": "ACTIVE",
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
        }

    def userinfo(self) -> dict[str, object]:
        """Return the OpenID Connect UserInfo claims of the user."""
        names = self.full_name.split(" ", 1)
        return {
            "sub": self.id,
            "email": self.email,
            "email_verified": True,
            "name": self.full_name,
            "given_name": names[0],
            "family_name": names[1] if len(names) > 1 else "",
        }


class Directory:
    """Thread-safe store of users and organisations.

    Emails are matched case-insensitively. Users created on the fly by
    ``ensure_user`` join the default organisation, which exists from the start.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._organizations: dict[str, Organization] = {}
        self._users_by_email: dict[str, User] = {}
        self.default_organization_id = self.add_organization(
            DEFAULT_ORGANIZATION_NAME, product="HOSTED", workspaces=DEFAULT_WORKSPACE_NAMES
        )

    def add_organization(
        self, name: str, *, product: str = "HOSTED", workspaces: tuple[str, ...] = ("Default",)
    ) -> str:
        """Create an organisation with its workspaces and return its id.

        Every workspace gets two made-up deployments.

        Raises
        ------
        ValueError
            The name is empty, ``product`` is not ``HOSTED`` or ``HYBRID``, or
            ``workspaces`` is a plain string.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"Invalid organization name {name!r}: expected a non-empty string.")
        if product not in PRODUCTS:
            raise ValueError(
                f"Invalid organization product {product!r}: expected one of {PRODUCTS}."
            )
        if isinstance(workspaces, str):
            raise ValueError(
                f"Invalid workspaces {workspaces!r}: expected a sequence of names, not one string."
            )
        org = Organization(id=_new_id("org-"), name=name, product=product)
        for workspace_name in workspaces:
            workspace = Workspace(_new_id("ws-"), str(workspace_name), org.id)
            org.workspaces.append(workspace)
            for suffix, status in _DEPLOYMENT_TEMPLATES:
                deployment_name = f"{_slug(workspace.name) or 'workspace'}-{suffix}"
                org.deployments.append(
                    Deployment(_new_id("dep-"), deployment_name, workspace.id, org.id, status)
                )
        with self._lock:
            self._organizations[org.id] = org
        return org.id

    def add_user(self, email: str, *, organizations: tuple[str, ...] = ()) -> str:
        """Create a user who is a member of exactly ``organizations`` and return its id.

        Raises
        ------
        ValueError
            The email is invalid or already taken, or an organisation id is unknown.
        """
        _validate_email(email)
        with self._lock:
            if email.lower() in self._users_by_email:
                raise ValueError(f"User {email!r} already exists in the emulator.")
            unknown = [org_id for org_id in organizations if org_id not in self._organizations]
            if unknown:
                raise ValueError(f"Unknown organization ids {unknown}: add them first.")
            user = User(_new_id("user-"), email, list(organizations), _now_iso())
            self._users_by_email[email.lower()] = user
            return user.id

    def ensure_user(self, email: str) -> User:
        """Return the user with ``email``, creating one in the default organisation if needed."""
        _validate_email(email)
        with self._lock:
            user = self._users_by_email.get(email.lower())
            if user is None:
                user = User(_new_id("user-"), email, [self.default_organization_id], _now_iso())
                self._users_by_email[email.lower()] = user
            return user

    def find_user(self, email: str) -> User | None:
        """Return the user with ``email``, or ``None``."""
        with self._lock:
            return self._users_by_email.get(email.lower())

    def user_by_id(self, user_id: str) -> User | None:
        """Return the user with id ``user_id``, or ``None``."""
        with self._lock:
            for user in self._users_by_email.values():
                if user.id == user_id:
                    return user
            return None

    def organization(self, org_id: str) -> Organization | None:
        """Return the organisation with id ``org_id``, or ``None``."""
        with self._lock:
            return self._organizations.get(org_id)

    def organizations_of(self, user: User) -> list[Organization]:
        """Return the user's organisations in the order the user joined them."""
        with self._lock:
            return [self._organizations[org_id] for org_id in user.organization_ids]


def _validate_email(email: str) -> None:
    local, at, domain = email.partition("@") if isinstance(email, str) else ("", "", "")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise ValueError(f"Invalid email {email!r}: expected an address such as user@example.com.")
