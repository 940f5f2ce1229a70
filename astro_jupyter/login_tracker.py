"""The logins started in one process (one kernel), so that they never overlap.

A new login replaces the one in progress: :meth:`LoginTracker.begin` cancels
it and waits until it has let go of the callback port, so one kernel never
has two callback servers. Later cells wait for the login in progress through
:meth:`LoginTracker.wait`.

The settings singleton (:class:`~astro_jupyter.settings.AstroLogin`) keeps the
process's tracker. The tracker keeps flows only, never a token.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .errors import AstroJupyterError, LoginTimeoutError, NotLoggedInError

if TYPE_CHECKING:
    from .login_flow import LoginFlow
    from .login_types import LoginResult

__all__ = ["LoginTracker"]

log = logging.getLogger(__name__)

# A cancelled login closes its callback server at once, but one busy in an
# HTTP request notices the cancel only when the request ends.
_REPLACE_GRACE_S = 5.0


class LoginTracker:
    """The latest login of this process, and whether it is still running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: LoginFlow | None = None

    def __repr__(self) -> str:
        return f"LoginTracker(latest={self._latest!r})"

    @property
    def latest(self) -> LoginFlow | None:
        """The login started last, running or ended."""
        with self._lock:
            return self._latest

    def running(self, domain: str | None = None) -> LoginFlow | None:
        """Return the login in progress, if it is for ``domain`` (any when None)."""
        flow = self.latest
        if flow is None or flow.done:
            return None
        if domain is not None and flow.options.domain != domain:
            return None
        return flow

    def begin(self, flow: LoginFlow) -> None:
        """Record ``flow`` as the latest login, cancelling the one in progress.

        Call it before starting ``flow``, so the old login's callback port is
        free by then.
        """
        with self._lock:
            previous, self._latest = self._latest, flow
        if previous is None or previous.done or previous is flow:
            return
        log.info("a new login replaces the one in progress for %s", previous.options.domain)
        previous.cancel("Login cancelled because a newer login started in this kernel.")
        try:
            previous.wait(_REPLACE_GRACE_S)
        except (AstroJupyterError, TimeoutError):
            # Its outcome belongs to its own view. A login still busy after the
            # grace period has already closed its callback server.
            pass

    def wait(self, timeout: float | None = None, domain: str | None = None) -> LoginResult:
        """Wait for the latest login (for ``domain``, when given) and return its result.

        Raises
        ------
        NotLoggedInError
            No login was started in this process, or none for ``domain``.
        LoginTimeoutError
            The login is still running after ``timeout`` seconds; it goes on.
        AstroJupyterError
            The error that ended the login.
        """
        flow = self.latest
        if flow is None or (domain is not None and flow.options.domain != domain):
            target = f" to {domain}" if domain else ""
            raise NotLoggedInError(
                f"No login{target} was started in this kernel; run %astro_login first, and "
                "click Log in if the login panel asks for details."
            )
        try:
            return flow.wait(timeout)
        except TimeoutError as error:
            if isinstance(error, AstroJupyterError):
                raise
            raise LoginTimeoutError(
                f"The login to {flow.options.domain} is still waiting after {timeout:g} s "
                f"({flow.step.value}); finish it in the browser or the login panel, then wait "
                "again.",
                step="wait",
            ) from None
