"""The user-tunable settings of astro_jupyter, as a traitlets configurable.

Set them in ``ipython_config.py`` (``c.AstroLogin.callback_port = 12345``),
with ``%config AstroLogin.callback_timeout_s = 120`` in a notebook, or through
the environment variables named in each help text. No secret is ever a
setting: ``%config`` prints current values.
"""

from __future__ import annotations

import os

from traitlets import Bool, Float, Int, TraitError, Unicode, default, validate
from traitlets.config import SingletonConfigurable

from .domains import api_base_url, normalize_base_url, normalize_domain
from .errors import InvalidInputError

__all__ = ["AstroLogin"]


def _env_int(name: str, fallback: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return fallback
    try:
        return int(raw)
    except ValueError:
        raise TraitError(f"{name}={raw!r} is not a whole number.") from None


class AstroLogin(SingletonConfigurable):
    """Settings for ``%astro_login`` and the functions that use the stored login."""

    api_url = Unicode(
        help=(
            "API base URL to use instead of the one derived from the domain, for a local "
            "control plane or the bundled emulator, e.g. http://127.0.0.1:8888/. "
            "Empty means derive it from the domain. Default: $ASTRO_JUPYTER_API_URL."
        )
    ).tag(config=True)

    callback_port = Int(
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

    @default("api_url")
    def _default_api_url(self) -> str:
        return os.environ.get("ASTRO_JUPYTER_API_URL", "").strip()

    @default("callback_port")
    def _default_callback_port(self) -> int:
        return _env_int("ASTRO_JUPYTER_CALLBACK_PORT", 12345)

    @validate("api_url")
    def _validate_api_url(self, proposal: dict) -> str:
        value = proposal["value"].strip()
        if not value:
            return ""
        try:
            return normalize_base_url(value)
        except InvalidInputError as error:
            raise TraitError(str(error)) from None

    @validate("callback_port")
    def _validate_callback_port(self, proposal: dict) -> int:
        port = proposal["value"]
        if not 0 <= port <= 65535:
            raise TraitError(f"callback_port {port} is not a TCP port (0 to 65535).")
        return port

    @validate("callback_timeout_s", "http_timeout_s")
    def _validate_positive(self, proposal: dict) -> float:
        value = proposal["value"]
        if not value > 0:
            raise TraitError(f"{proposal['trait'].name} must be more than 0 seconds, not {value}.")
        return value

    def resolve_domain(self, text: str) -> str:
        """Normalise a domain; any well-formed host name is allowed when ``api_url`` is set."""
        return normalize_domain(text, allow_unknown=bool(self.api_url))

    def api_base_url_for(self, domain: str) -> str:
        """Return ``api_url`` when set, else the domain's own API base URL."""
        return self.api_url or api_base_url(domain)
