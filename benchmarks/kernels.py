"""Real ipykernel processes for the benchmarks, started and driven with jupyter_client.

A kernel here runs the benchmark's own Python in the isolated environment of
``environment.isolated_astro_home`` and talks to this process over Unix
sockets in a private folder, so no TCP port is opened for it. Every kernel is
shut down when its ``with`` block ends, also on errors.
"""

from __future__ import annotations

import os
import queue
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipykernel.kernelspec import write_kernel_spec
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

__all__ = ["CellResult", "Kernel", "KernelLauncher"]

KERNEL_START_TIMEOUT_S = 60.0
CELL_TIMEOUT_S = 60.0


@dataclass
class CellResult:
    """The execute_reply content of one cell and the iopub messages it caused."""

    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reply.get("status") == "ok"

    def stdout(self) -> str:
        return "".join(
            message["content"]["text"]
            for message in self.messages
            if message["msg_type"] == "stream" and message["content"]["name"] == "stdout"
        )

    def error(self) -> str:
        """Describe a failed cell in one line: the exception name and value."""
        return f"{self.reply.get('ename', '?')}: {self.reply.get('evalue', '')}"


class Kernel:
    """A started kernel with a blocking client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def execute(
        self,
        code: str,
        *,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        timeout_s: float = CELL_TIMEOUT_S,
    ) -> CellResult:
        """Run ``code`` and return once the kernel is idle again.

        ``on_message`` is called with each iopub message of this cell as soon
        as it is read, while the cell still runs.

        Raises
        ------
        TimeoutError
            The cell did not finish within ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        # No frontend here replies to an input request, so the kernel must not send one.
        msg_id = self._client.execute(code, store_history=False, allow_stdin=False)
        messages = []
        while True:
            message = self._receive(self._client.get_iopub_msg, deadline, code)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(message)
            if on_message is not None:
                on_message(message)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        while True:
            reply = self._receive(self._client.get_shell_msg, deadline, code)
            if reply["parent_header"].get("msg_id") == msg_id:
                return CellResult(reply=reply["content"], messages=messages)

    def read_until(
        self, on_message: Callable[[dict[str, Any]], bool], *, timeout_s: float = CELL_TIMEOUT_S
    ) -> None:
        """Pass every iopub message to ``on_message`` until it returns True.

        For output that a background thread sends after its cell has ended,
        such as widget updates.

        Raises
        ------
        TimeoutError
            ``on_message`` did not return True within ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        while not on_message(self._receive(self._client.get_iopub_msg, deadline, "(background)")):
            pass

    @staticmethod
    def _receive(
        receive: Callable[..., dict[str, Any]], deadline: float, code: str
    ) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise queue.Empty
            return receive(timeout=remaining)
        except queue.Empty:
            first_line = code.strip().splitlines()[0] if code.strip() else ""
            raise TimeoutError(f"A kernel cell did not finish in time: {first_line!r}") from None


class KernelLauncher:
    """Starts kernels that run this Python, whatever ``python3`` kernels are installed.

    Parameters
    ----------
    folder
        A new folder for the kernel spec and the kernels' sockets. A Unix
        socket path is limited to about 100 bytes, so it must be short.
    kernel_arguments
        Command line options added to every kernel's, such as traitlets settings.
    """

    def __init__(self, folder: Path, kernel_arguments: tuple[str, ...] = ()) -> None:
        self._folder = folder
        kernels_dir = folder / "kernels"
        kernels_dir.mkdir(parents=True)
        write_kernel_spec(kernels_dir / "python3", extra_arguments=list(kernel_arguments))
        self._spec_manager = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
        self._started = 0

    @contextmanager
    def start(self, env: dict[str, str]) -> Iterator[Kernel]:
        """Start a kernel with the environment ``env`` and yield it; shut it down on exit.

        Raises
        ------
        RuntimeError
            The kernel was not ready within :data:`KERNEL_START_TIMEOUT_S` seconds.
        """
        self._started += 1
        manager = KernelManager(kernel_name="python3", kernel_spec_manager=self._spec_manager)
        if os.name == "posix":
            # jupyter_client picks free TCP ports before the kernel binds them, so another
            # process can take one in between. Unix sockets in a private folder avoid that.
            manager.transport = "ipc"
            manager.ip = str(self._folder / f"k{self._started}")
        with tempfile.TemporaryDirectory(prefix="kernel-cwd-", dir=self._folder) as cwd:
            manager.start_kernel(env=env, cwd=cwd)
            client = manager.client()
            try:
                client.start_channels()
                try:
                    client.wait_for_ready(timeout=KERNEL_START_TIMEOUT_S)
                except RuntimeError as error:
                    raise RuntimeError(f"A benchmark kernel did not start: {error}") from None
                yield Kernel(client)
            finally:
                client.stop_channels()
                manager.shutdown_kernel(now=True)
