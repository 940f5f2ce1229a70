"""An emulated Astro control plane and OAuth server on loopback, for tests and demos.

It serves the endpoints that ``astro login`` uses (auth config, organisation
lookup, authorize with an approval page, token, userinfo) and the API calls of
the session check (users, organisations, workspaces, deployments), with
made-up data and injectable faults. It binds loopback addresses only, keeps
everything in memory, and is not an Astro server for real use: there are no
passwords, and anyone on the machine can approve a login or inject a fault.

Start one with ``Emulator().start()``, or from a shell with
``python -m astro_jupyter.emulator``. ``follow_login_link`` plays the browser.
It imports the standard library only.
"""

from __future__ import annotations

import logging

from .backend import AUDIENCE, CLIENT_ID
from .browser import FollowError, FollowResult, NotLoopbackError, follow_login_link
from .emulator import Emulator
from .faults import ENDPOINTS, RequestRecord

__all__ = [
    "AUDIENCE",
    "CLIENT_ID",
    "ENDPOINTS",
    "Emulator",
    "FollowError",
    "FollowResult",
    "NotLoopbackError",
    "RequestRecord",
    "follow_login_link",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
