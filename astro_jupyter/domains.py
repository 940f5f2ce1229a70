"""Astro domains: normalisation, validation and the base URLs derived from them.

A domain names one Astro control plane (``astronomer.io`` by default). This
module is pure: it reads no environment variables and sends no requests.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .errors import InvalidInputError, excerpt

__all__ = [
    "DEFAULT_DOMAIN",
    "LOCAL_DOMAIN",
    "api_base_url",
    "is_astro_cloud_domain",
    "context_key",
    "normalize_domain",
    "normalize_base_url",
]

DEFAULT_DOMAIN = "astronomer.io"
LOCAL_DOMAIN = "localhost"

# The Astro CLI serves the "localhost" domain's API from this address.
_LOCAL_API_URL = "http://localhost:8888/"

_KNOWN_DOMAINS = frozenset(
    {"astronomer.io", "astronomer-dev.io", "astronomer-stage.io", "astronomer-perf.io"}
)
_PR_PREVIEW = re.compile(r"^(pr\d+)\.(astronomer-dev\.io)$")
# RFC 1035 section 2.3.4: labels of 1 to 63 characters, names of at most 253
# in dotted form. Unicode names must be given in their IDNA (xn--) form.
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAX_HOST_NAME_CHARS = 253


def _without_userinfo(text: str) -> str:
    """Return ``text`` with any ``user:password@`` after ``://`` removed, for quoting."""
    scheme, separator, rest = text.partition("://")
    if not separator:
        return text
    authority, slash, path = rest.partition("/")
    return f"{scheme}{separator}{authority.rpartition('@')[2]}{slash}{path}"


def normalize_domain(text: str, *, allow_unknown: bool = False) -> str:
    """Return the canonical form of an Astro domain as the Astro CLI stores it.

    Strips a scheme, a leading ``cloud.``, a path and a trailing ``/``, and
    lower-cases the rest, so ``https://cloud.astronomer.io/`` becomes
    ``astronomer.io``.

    Parameters
    ----------
    text
        The domain as the user typed it.
    allow_unknown
        Accept any well-formed host name. Used when the API base URL is set
        explicitly, for local control planes.

    Raises
    ------
    InvalidInputError
        The text is empty, is not a host name, or names no known Astro domain.
    """
    raw = text.strip()
    shown = excerpt(_without_userinfo(raw))
    invalid = InvalidInputError(
        f"Invalid Astro domain {shown!r}: expected a host name such as {DEFAULT_DOMAIN!r}."
    )
    domain = raw.lower()
    if "://" in domain:
        try:
            parts = urlsplit(domain)
            port = parts.port
        except ValueError:
            raise invalid from None
        if port is not None or parts.username is not None:
            # A port or user name would be dropped silently, so the login
            # would not go where the user meant. The quoted text leaves out the
            # user name, because a password may come with it.
            without_user = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
            raise InvalidInputError(
                f"Invalid Astro domain {excerpt(without_user)!r}: a domain has no port or user "
                "name; for another API address set AstroLogin.api_url."
            )
        domain = parts.hostname or ""
    domain = domain.split("/", 1)[0].rstrip(".")
    if domain.startswith("cloud."):
        domain = domain[len("cloud.") :]

    labels = domain.split(".")
    if (
        not domain
        or len(domain) > _MAX_HOST_NAME_CHARS
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
    ):
        raise invalid
    if allow_unknown or domain == LOCAL_DOMAIN or domain in _KNOWN_DOMAINS:
        return domain
    if _PR_PREVIEW.fullmatch(domain):
        return domain
    known = ", ".join(sorted(_KNOWN_DOMAINS | {LOCAL_DOMAIN}))
    raise InvalidInputError(
        f"Unknown Astro domain {shown!r}: use one of {known} or a PR preview such as "
        "pr1234.astronomer-dev.io; for another control plane set AstroLogin.api_url."
    )


def is_astro_cloud_domain(domain: str) -> bool:
    """Tell whether a normalised domain is one of Astronomer's hosted control planes."""
    return domain in _KNOWN_DOMAINS or bool(_PR_PREVIEW.fullmatch(domain))


def api_base_url(domain: str) -> str:
    """Return the API base URL of a normalised domain, ending in ``/``."""
    if domain == LOCAL_DOMAIN:
        return _LOCAL_API_URL
    preview = _PR_PREVIEW.fullmatch(domain)
    if preview:
        return f"https://{preview.group(1)}.api.{preview.group(2)}/"
    return f"https://api.{domain}/"


def normalize_base_url(url: str) -> str:
    """Return an http(s) base URL with exactly one trailing ``/``.

    Raises
    ------
    InvalidInputError
        The URL is not an absolute http or https URL.
    """
    invalid = f"Invalid API URL {url!r}: expected an absolute http:// or https:// URL."
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0 to 65535
    except ValueError:
        raise InvalidInputError(invalid) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(invalid)
    if parts.query or parts.fragment:
        raise InvalidInputError(f"Invalid API URL {url!r}: it must not have a query or fragment.")
    if parts.username or parts.password:
        # Settings are printed by %config, so a URL must not carry credentials.
        raise InvalidInputError(
            "Invalid API URL: it must not contain a user name or password."
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"


def context_key(domain: str) -> str:
    """Return the key of a domain's context in ``config.yaml`` (every ``.`` becomes ``_``)."""
    return domain.replace(".", "_")
