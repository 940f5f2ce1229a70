"""Showing astro_jupyter's expected errors to notebook users as one line.

IPython prints a ``UsageError`` as a single ``UsageError: message`` line and
keeps nothing more, so ``%tb`` after one repeats that line (IPython 8 and 9).
:func:`usage_errors` turns an :class:`AstroJupyterError` into such a line, or,
with ``AstroLogin.show_traceback`` on, lets the original error through so that
IPython shows its full traceback. Other exceptions are bugs and always keep
their traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from IPython.core.error import UsageError

from .errors import AstroJupyterError
from .settings import AstroLogin

__all__ = ["usage_errors"]


@contextmanager
def usage_errors(settings: AstroLogin) -> Iterator[None]:
    """Re-raise an ``AstroJupyterError`` from the block as a one-line ``UsageError``.

    With ``settings.show_traceback`` on, the error is raised unchanged instead.
    """
    try:
        yield
    except AstroJupyterError as error:
        if settings.show_traceback:
            raise
        raise UsageError(str(error)) from error
