"""The kernel's own share of a login's time, and the requests a login sends.

Each kernel loads the extension and runs ``%astro_login localhost -e EMAIL -l``
several times, so the first login in a new kernel and the later ones in the
same kernel are both measured. Some kernels use the text form
(``--no-widget``), which prints the result from the cell. The others show the
login panel, whose cell returns at once and whose widgets show the result
later, from the login's thread. This process plays the browser on a thread of
its own: it opens the authorize URL on the emulator up to the redirect to the
kernel's loopback callback, stamps the time, and requests the callback.

For one login:

- total: from just before the browser sends the callback request until this
  process reads "Logged in to ..." on iopub, as a printed line (text form) or
  as a widget update (panel). By then the kernel has exchanged the code,
  fetched the user and the session, and saved config.yaml;
- emulator: the sum of the emulator's service times (``RequestRecord.service_ns``)
  for the kernel's requests that started after that stamp. Those requests are
  sequential, so their times add up;
- three phases that add up to the total. The first runs from the stamp until
  the first of those requests reaches the emulator, while the callback server
  hands the code over and closes. The second runs until the last response is
  ready and contains the emulator's time. The third runs until the result is
  read, while the kernel saves config.yaml and shows the result;
- kernel-side: total minus emulator. It includes the kernel's HTTP client,
  the loopback round trips, http.server's parsing and writing of each request
  in the emulator (outside its service time), the config write and the iopub
  message. So it overstates the kernel's own work a little, never understates it.

All times come from ``time.monotonic_ns()`` in this process, where the
emulator also runs, so they share one clock.
"""

from __future__ import annotations

import dataclasses
import html
import re
import statistics
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kernels import Kernel, KernelLauncher

from astro_jupyter.config_store import ConfigStore
from astro_jupyter.emulator import Emulator, follow_login_link

__all__ = ["LoginCost", "LoginSample", "RequestCount", "measure_logins", "summarize_logins"]

# Requests the browser sends to the emulator, as opposed to the kernel.
BROWSER_ENDPOINTS = frozenset({"authorize", "authorize-decision"})
AUTH_CONFIG_ENDPOINTS = frozenset({"auth-config", "legacy-auth-config"})
BROWSER_TIMEOUT_S = 30.0
LOGIN_CELL_TIMEOUT_S = 60.0
# The ways the result is shown, and the options of %astro_login that choose them.
FORM_OPTIONS = {"text": " --no-widget", "panel": ""}
_LINK_HREF = re.compile(r'class="astro-login-link" href="([^"]+)"')


@dataclass(frozen=True)
class LoginSample:
    """One login in a kernel: its times in nanoseconds and the kernel's requests in order."""

    form: str
    kernel_number: int
    login_number: int
    total_ns: int
    emulator_ns: int
    to_first_request_ns: int
    requests_ns: int
    after_last_response_ns: int
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class LoginCost:
    """Medians of the logins of one kind, in milliseconds."""

    label: str
    samples: int
    total_ms: float
    emulator_ms: float
    kernel_ms: float
    to_first_request_ms: float
    requests_ms: float
    after_last_response_ms: float


@dataclass(frozen=True)
class RequestCount:
    """The requests one login sent, by endpoint name in the order sent."""

    label: str
    endpoints: tuple[str, ...]

    @property
    def auth_config_requests(self) -> int:
        return sum(endpoint in AUTH_CONFIG_ENDPOINTS for endpoint in self.endpoints)


class _Browser:
    """Follows the sign-in link of one login cell and stamps the callback and the success line."""

    def __init__(self, authorize_prefix: str, success_line: str) -> None:
        self._authorize_prefix = authorize_prefix
        self._success_line = success_line
        self._thread: threading.Thread | None = None
        self.callback_sent_ns: int | None = None
        self.success_read_ns: int | None = None
        self.error: Exception | None = None

    def on_message(self, message: dict[str, Any]) -> bool:
        """Handle one iopub message and return whether the success has been read."""
        received_ns = time.monotonic_ns()
        text = _shown_text(message)
        if self._thread is None:
            link = self._login_link(text)
            if link is not None:
                self._thread = threading.Thread(target=self._browse, args=(link,), daemon=True)
                self._thread.start()
        if self.success_read_ns is None and self._success_line in text:
            self.success_read_ns = received_ns
        return self.success_read_ns is not None

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(BROWSER_TIMEOUT_S)

    def _login_link(self, text: str) -> str | None:
        for match in _LINK_HREF.finditer(text):
            return html.unescape(match.group(1))
        for line in text.splitlines():
            if line.strip().startswith(self._authorize_prefix):
                return line.strip()
        return None

    def _browse(self, link: str) -> None:
        try:
            redirect = follow_login_link(link, reach_callback=False, timeout_s=BROWSER_TIMEOUT_S)
            self.callback_sent_ns = time.monotonic_ns()
            follow_login_link(redirect.url, timeout_s=BROWSER_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - reported by the caller in the main thread
            self.error = error


def _shown_text(message: dict[str, Any]) -> str:
    """Return the text an iopub message shows: a stream, a display's text or a widget's value."""
    content = message["content"]
    if message["msg_type"] == "stream":
        return content["text"]
    if message["msg_type"] == "display_data":
        return content["data"].get("text/plain", "")
    if message["msg_type"] == "comm_msg":
        value = content.get("data", {}).get("state", {}).get("value")
        return value if isinstance(value, str) else ""
    return ""


def measure_logins(
    launcher: KernelLauncher,
    env: dict[str, str],
    emulator: Emulator,
    store: ConfigStore,
    email: str,
    *,
    form: str,
    kernels: int,
    logins_per_kernel: int,
) -> list[LoginSample]:
    """Run ``logins_per_kernel`` logins in each of ``kernels`` new kernels.

    ``form`` is a key of :data:`FORM_OPTIONS`: how the result is shown.

    ``env`` must point the kernels at ``emulator`` and at the config that
    ``store`` reads. The emulator must approve sign-ins as ``email`` by itself.

    Raises
    ------
    RuntimeError
        A login failed, its link or success line did not appear, or it did
        not save the login.
    """
    samples = []
    for kernel_number in range(1, kernels + 1):
        with launcher.start(env) as kernel:
            loaded = kernel.execute("%load_ext astro_jupyter")
            if not loaded.ok:
                raise RuntimeError(f"%load_ext astro_jupyter failed: {loaded.error()}")
            for login_number in range(1, logins_per_kernel + 1):
                sample = _log_in_once(kernel, emulator, store, email, form)
                samples.append(
                    dataclasses.replace(
                        sample, kernel_number=kernel_number, login_number=login_number
                    )
                )
    return samples


def _log_in_once(
    kernel: Kernel, emulator: Emulator, store: ConfigStore, email: str, form: str
) -> LoginSample:
    """Run one login cell, play its browser, and return the sample.

    The caller fills in the kernel and login numbers, which are 0 here.
    """
    browser = _Browser(
        emulator.oauth_base_url + "authorize?", f"Logged in to localhost as {email}."
    )
    requests_before = len(emulator.requests)
    try:
        result = kernel.execute(
            f"%astro_login localhost -e {email} -l{FORM_OPTIONS[form]}",
            on_message=browser.on_message,
            timeout_s=LOGIN_CELL_TIMEOUT_S,
        )
        if result.ok and browser.success_read_ns is None:
            # The panel's cell has ended, and its login goes on in the background.
            kernel.read_until(browser.on_message, timeout_s=LOGIN_CELL_TIMEOUT_S)
    finally:
        browser.join()
    records = emulator.requests[requests_before:]

    if not result.ok:
        raise RuntimeError(f"A benchmark login failed: {result.error()}")
    if browser.error is not None:
        raise RuntimeError(f"The scripted browser failed: {browser.error}")
    if browser.callback_sent_ns is None or browser.success_read_ns is None:
        raise RuntimeError("A benchmark login showed no sign-in link or no success line.")
    saved = store.read_context("localhost")
    if saved is None or saved.user_email != email or not saved.token:
        raise RuntimeError("A benchmark login reported success but saved no login.")

    kernel_records = [record for record in records if record.endpoint not in BROWSER_ENDPOINTS]
    after_callback = [
        record for record in kernel_records if record.started_ns >= browser.callback_sent_ns
    ]
    if not after_callback:
        raise RuntimeError("A benchmark login sent no request after the browser's callback.")
    first_started_ns = after_callback[0].started_ns
    last_ready_ns = after_callback[-1].started_ns + after_callback[-1].service_ns
    return LoginSample(
        form=form,
        kernel_number=0,
        login_number=0,
        total_ns=browser.success_read_ns - browser.callback_sent_ns,
        emulator_ns=sum(record.service_ns for record in after_callback),
        to_first_request_ns=first_started_ns - browser.callback_sent_ns,
        requests_ns=last_ready_ns - first_started_ns,
        after_last_response_ns=browser.success_read_ns - last_ready_ns,
        endpoints=tuple(record.endpoint or record.path for record in kernel_records),
    )


def summarize_logins(samples: list[LoginSample]) -> tuple[list[LoginCost], list[RequestCount]]:
    """Return the medians of first and later logins per form, and kernel 1's first two logins."""
    costs = []
    requests = []
    for form in FORM_OPTIONS:
        of_form = [sample for sample in samples if sample.form == form]
        first = [sample for sample in of_form if sample.login_number == 1]
        later = [sample for sample in of_form if sample.login_number > 1]
        if first:
            costs.append(_login_cost(f"{form}, first in a new kernel", first))
        if later:
            costs.append(_login_cost(f"{form}, later in the same kernel", later))
        for sample in of_form:
            if sample.kernel_number == 1 and sample.login_number in (1, 2):
                order = "first" if sample.login_number == 1 else "second"
                requests.append(RequestCount(f"{form}, {order} login", sample.endpoints))
    return costs, requests


def _login_cost(label: str, samples: Iterable[LoginSample]) -> LoginCost:
    samples = list(samples)

    def median_ms(values: Iterable[int]) -> float:
        return statistics.median(values) / 1e6

    return LoginCost(
        label=label,
        samples=len(samples),
        total_ms=median_ms(sample.total_ns for sample in samples),
        emulator_ms=median_ms(sample.emulator_ns for sample in samples),
        kernel_ms=median_ms(sample.total_ns - sample.emulator_ns for sample in samples),
        to_first_request_ms=median_ms(sample.to_first_request_ns for sample in samples),
        requests_ms=median_ms(sample.requests_ns for sample in samples),
        after_last_response_ms=median_ms(sample.after_last_response_ns for sample in samples),
    )
