"""Notes about a finished login that every view shows below the result."""

from __future__ import annotations

import os

from .login_types import LoginResult

__all__ = ["result_notes"]


def result_notes(result: LoginResult) -> list[str]:
    """Return the notes the user should read about ``result``, one sentence each."""
    notes = []
    if result.email_differs:
        notes.append(
            f"Note: you signed in as {result.email}, not {result.requested_email} as requested."
        )
    if os.environ.get("ASTRO_API_TOKEN", "").strip():
        notes.append(
            "Note: $ASTRO_API_TOKEN is set, so get_token() and session() keep using that "
            "API token instead of this login, as the Astro CLI does. Unset it to use the login."
        )
    return notes
