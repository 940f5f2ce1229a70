"""Exception types raised by astro_jupyter.

Every error a user can cause or meet (bad input, a failing server, a config file
that cannot be read) is an ``AstroJupyterError`` whose message is one line that
names what failed and what to do next. The magics show these as one line, and so
does IPython when one ends a cell (see ``_render_traceback_``); any other
exception is a bug and keeps its traceback.

Messages and fields never contain an access token, refresh token, authorization
code, PKCE verifier or a callback URL with its query.
"""

from __future__ import annotations

__all__ = [
    "AstroJupyterError",
    "InvalidInputError",
    "ConfigError",
    "ConfigLockTimeoutError",
    "ApiError",
    "OAuthError",
    "CallbackError",
    "CallbackPortBusyError",
    "LoginTimeoutError",
    "LoginCancelledError",
    "NotLoggedInError",
    "excerpt",
]


# User input quoted in a message is cut to this many characters, so a token
# typed in the wrong place (a JWT's first 40 characters are its header) is
# never printed whole.
_MAX_ECHO_CHARS = 40


def excerpt(text: str) -> str:
    """Return ``text`` for quoting in a message, cut to a short prefix when long."""
    return text if len(text) <= _MAX_ECHO_CHARS else text[:_MAX_ECHO_CHARS] + "..."


class AstroJupyterError(Exception):
    """Base class of the errors astro_jupyter raises on purpose.

    Parameters
    ----------
    message
        One line for the user.
    step
        The login or API step that failed, such as ``"auth config"`` or
        ``"token exchange"``, when there is one.
    status
        The HTTP status code of the response that caused the error.
    oauth_error
        The OAuth 2.0 ``error`` code (RFC 6749 section 5.2), such as ``"invalid_grant"``.
    path
        The file the error is about.
    """

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        status: int | None = None,
        oauth_error: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.status = status
        self.oauth_error = oauth_error
        self.path = path

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        """Return the lines IPython shows when this error ends a notebook cell.

        IPython calls this hook instead of formatting the traceback, so an error
        from ``get_token()`` or ``session()`` in a cell is one line, as the magics
        show theirs. ``AstroLogin.show_traceback`` brings back the full traceback.
        """
        from .settings import AstroLogin

        if AstroLogin.initialized() and AstroLogin.instance().show_traceback:
            from IPython import get_ipython

            shell = get_ipython()
            if shell is not None:
                return list(
                    shell.InteractiveTB.structured_traceback(
                        type(self), self, self.__traceback__
                    )
                )
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]


class InvalidInputError(AstroJupyterError, ValueError):
    """An email, domain, token or option value that cannot be used."""


class ConfigError(AstroJupyterError):
    """The Astro config file cannot be read, parsed or written."""


class ConfigLockTimeoutError(ConfigError):
    """Another process held the config lock for longer than the wait."""


class ApiError(AstroJupyterError):
    """An Astro API or OAuth server call failed or returned something unusable."""


class OAuthError(ApiError):
    """The OAuth server rejected a request with an OAuth ``error`` code."""


class CallbackError(AstroJupyterError):
    """The browser came back to the loopback callback with an error or no code."""


class CallbackPortBusyError(CallbackError):
    """The loopback callback port is already taken by another process."""


class LoginTimeoutError(AstroJupyterError, TimeoutError):
    """The browser did not come back before the callback timeout."""


class LoginCancelledError(AstroJupyterError):
    """The login was cancelled, by the user or by a kernel interrupt."""


class NotLoggedInError(AstroJupyterError):
    """There is no usable login for the requested context."""
