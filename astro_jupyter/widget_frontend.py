"""Decide whether the frontend attached to this kernel can show the login panel."""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["frontend_shows_widgets"]


def frontend_shows_widgets(shell: Any) -> bool:
    """Tell whether ``shell`` runs in a kernel whose frontend can show ipywidgets.

    Terminal IPython has no kernel. A headless kernel (nbclient, papermill,
    ``jupyter nbconvert --execute``) runs cells without stdin, and no one could
    click the panel there. JupyterLab, Notebook 7 and other interactive
    frontends allow stdin. ``jupyter console`` allows stdin but shows no
    widgets; its users pass ``--no-widget``.
    """
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not getattr(kernel, "_allow_stdin", False):
        return False
    return importlib.util.find_spec("ipywidgets") is not None
