"""Parsing a magic's line the way a shell user expects.

IPython's ``parse_argstring`` splits a line without removing quotes on any
platform (``-e 'ada@example.com'`` gives the email with its quotes), so the
magics parse through :func:`parse_magic_arguments`, which also strips one
pair of matching quotes around each value.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Callable
from typing import Any

from IPython.core.magic_arguments import parse_argstring

__all__ = ["parse_magic_arguments", "unquote"]


def unquote(value: str) -> str:
    """Remove one pair of matching single or double quotes around ``value``."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_magic_arguments(magic: Callable[..., Any], line: str) -> Namespace:
    """Parse ``line`` with the magic's declared arguments and unquote every string value.

    Raises
    ------
    UsageError
        The line does not match the declared arguments (raised by IPython).
    """
    args: Namespace = parse_argstring(magic, line)
    for name, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, name, unquote(value))
        elif isinstance(value, list):
            unquoted = [unquote(item) if isinstance(item, str) else item for item in value]
            setattr(args, name, unquoted)
    return args
