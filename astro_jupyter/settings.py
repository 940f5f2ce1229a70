"""The user-tunable settings of astro_jupyter, as a traitlets configurable.

Set them in ``ipython_config.py`` (``c.AstroLogin.callback_port = 12345``),
with ``%config AstroLogin.callback_timeout_s = 120`` in a notebook, or through
the environment variables named in each help text. No secret is ever a
setting: ``%config`` prints current values.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Bool, Float, Int, TraitError, Unicode, default, validate
from traitlets.config import SingletonConfigurable

from .auth_config_cache import AuthConfigCache
from .domains import (
    DEFAULT_DOMAIN,
    LOCAL_DOMAIN,
    api_base_url,
    is_astro_cloud_domain,
    normalize_base_url,
    normalize_domain,
)
from .errors import InvalidInputError
from .login_tracker import LoginTracker

__all__ = ["MAX_CALLBACK_TIMEOUT_S", "MAX_HTTP_TIMEOUT_S", "AstroLogin"]

# Upper bounds that keep every wait within what threading and sockets accept,
# and far above any wait a person would choose.
MAX_CALLBACK_TIMEOUT_S = 86400.0
MAX_HTTP_TIMEOUT_S = 3600.0


def _env_port(name: str, fallback: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return fallback
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= 65535:
        raise InvalidInputError(
            f"Invalid ${name} {raw!r}: expected a TCP port from 0 to 65535; fix or unset it."
        )
    return int(raw)


def _env_base_url(name: str) -> str:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    try:
        return normalize_base_url(raw)
    except InvalidInputError as error:
        raise InvalidInputError(f"Invalid ${name}: {error} Fix or unset it.") from None


# These two settings are checked in their trait type's validate(), not with
# @validate hooks. traitlets skips the hooks while it applies a config section,
# stores the value, and when a hook then rejects it, rolls the setting back to
# the trait's static default (0 or ''), not to its default from the environment.
# A typo in %config would then drop $ASTRO_JUPYTER_API_URL and send the next
# login to astronomer.io. A rejection in validate() happens before anything is
# stored. The defaults stay computed on first read, so %env before the first
# login still applies.


class _BaseUrl(Unicode):  # type: ignore[type-arg]
    """An absolute http:// or https:// base URL, normalised, or '' for none."""

    def validate(self, obj: Any, value: Any) -> str:
        text: str = super().validate(obj, value).strip()
        if not text:
            return ""
        try:
            return normalize_base_url(text)
        except InvalidInputError as error:
            raise TraitError(str(error)) from None


class _Port(Int):  # type: ignore[type-arg]
    """A TCP port number, 0 to 65535."""

    def validate(self, obj: Any, value: Any) -> int:
        port: int = super().validate(obj, value)
        if not 0 <= port <= 65535:
            raise TraitError(f"{self.name} {port} is not a TCP port (0 to 65535).")
        return port


class AstroLogin(SingletonConfigurable):
    """Settings for ``%astro_login`` and the functions that use the stored login.

    The process's one instance also keeps :attr:`logins`, the tracker of the
    logins started in this kernel, and :attr:`auth_configs`, the auth config of
    each API base URL that a login fetched.
    """

    api_url = _BaseUrl(
        help=(
            "API base URL to use instead of the one derived from the domain, for a local "
            "control plane or the bundled emulator, e.g. http://127.0.0.1:8888/. "
            "Empty means derive it from the domain. Default: $ASTRO_JUPYTER_API_URL."
        )
    ).tag(config=True)

    callback_port = _Port(
        help=(
            "Loopback port that receives the browser's redirect. Astro's OAuth server only "
            "accepts 12345; 0 picks a free port, for local control planes. "
            "Default: $ASTRO_JUPYTER_CALLBACK_PORT, else 12345."
        )
    ).tag(config=True)

    callback_timeout_s = Float(
        300.0, help="Seconds to wait for the browser to come back before the login fails."
    ).tag(config=True)

    http_timeout_s = Float(
        30.0, help="Connect and read timeout of each request to Astro, in seconds."
    ).tag(config=True)

    open_browser = Bool(
        True,
        help=(
            "Open the sign-in page in a browser on this machine when one is available and the "
            "kernel runs locally. The link is always shown as well."
        ),
    ).tag(config=True)

    widget = Bool(
        True,
        help=(
            "Show the interactive login panel for %astro_login where the frontend can "
            "display widgets; False keeps the text form everywhere."
        ),
    ).tag(config=True)

    show_traceback = Bool(
        False,
        help=(
            "Show astro_jupyter's errors with their full traceback instead of one line, for "
            "bug reports. %tb cannot show it, because IPython keeps only the one-line "
            "UsageError. In %xmode Verbose a traceback lists local variables, which can "
            "include tokens: check it before sharing it."
        ),
    ).tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.logins = LoginTracker()
        self.auth_configs = AuthConfigCache()

    # Dynamic defaults skip the @validate hooks, so the environment is checked here.
    @default("api_url")
    def _default_api_url(self) -> str:
        return _env_base_url("ASTRO_JUPYTER_API_URL")

    @default("callback_port")
    def _default_callback_port(self) -> int:
        return _env_port("ASTRO_JUPYTER_CALLBACK_PORT", 12345)

    @validate("callback_timeout_s", "http_timeout_s")
    def _validate_seconds(self, proposal: dict[str, Any]) -> float:
        value: float = proposal["value"]
        name = proposal["trait"].name
        maximum = MAX_CALLBACK_TIMEOUT_S if name == "callback_timeout_s" else MAX_HTTP_TIMEOUT_S
        if not 0 < value <= maximum:
            raise TraitError(
                f"{name} must be more than 0 and at most {maximum:g} seconds, not {value}."
            )
        return value

    def resolve_domain(self, text: str) -> str:
        """Normalise a domain; any well-formed host name is allowed when ``api_url`` is set."""
        return normalize_domain(text, allow_unknown=bool(self.api_url))

    def default_domain(self) -> str:
        """Return the domain to use when none is given or current.

        That is ``astronomer.io``, or ``localhost`` (the Astro CLI's name for a
        local control plane) when ``api_url`` points elsewhere.
        """
        return LOCAL_DOMAIN if self.api_url else DEFAULT_DOMAIN

    def api_base_url_for(self, domain: str) -> str:
        """Return ``api_url`` when set, else the domain's own API base URL.

        Raises
        ------
        InvalidInputError
            ``api_url`` is set but ``domain`` is one of Astronomer's hosted
            control planes with another API. Sending that context's tokens to
            another server, or saving another server's login under its name,
            would break the Astro CLI's login for it.
        """
        if not self.api_url:
            return api_base_url(domain)
        if is_astro_cloud_domain(domain) and self.api_url != api_base_url(domain):
            raise InvalidInputError(
                f"AstroLogin.api_url is {self.api_url}, which is not the API of {domain}: use "
                "it with a domain of its own, e.g. %astro_login localhost, or clear it with "
                "%config AstroLogin.api_url = '' (and unset $ASTRO_JUPYTER_API_URL)."
            )
        return str(self.api_url)
