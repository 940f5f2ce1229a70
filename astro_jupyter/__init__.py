"""Log in to Astronomer's Astro from Jupyter, sharing one login with the Astro CLI."""

from __future__ import annotations

__version__ = "0.1.0"
