"""Tests of ``python -m astro_jupyter.emulator``, run as a real subprocess."""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

# Maximum seconds for starting, querying and stopping the emulator process.
TIMEOUT_S = 10

# A wildcard address, used only to check that it is rejected, never bound.
WILDCARD_IPV4 = "0.0.0.0"  # noqa: S104

COMMAND = [sys.executable, "-m", "astro_jupyter.emulator"]


def read_lines(stream, count: int, deadline: float) -> list[str]:
    """Return the first ``count`` lines of a binary pipe, or fail once ``deadline`` passes.

    It reads the file descriptor directly, because a buffered reader may hold
    lines that the selector can no longer see.
    """
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while data.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; output so far: {data!r}"
            assert selector.select(remaining), f"timed out; output so far: {data!r}"
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"the process closed its output after {data!r}"
            data += chunk
    return data.decode().splitlines()[:count]


def get_json(url: str, headers: dict[str, str]) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", parts.path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.skipif(os.name != "posix", reason="sends SIGTERM")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_until_signal(stop_signal):
    deadline = time.monotonic() + TIMEOUT_S
    with subprocess.Popen(
        [*COMMAND, "--port", "0", "--approve", "cli@example.com"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    ) as process:
        try:
            first, second = read_lines(process.stdout, 2, deadline)
            prefix = "Astro emulator listening on "
            assert first.startswith(prefix)
            base_url = first[len(prefix) :].strip()
            status, config = get_json(
                base_url + "private/v1alpha1/cli/auth-config",
                {"X-Astro-Client-Identifier": "cli"},
            )

            process.send_signal(stop_signal)
            exit_code = process.wait(timeout=TIMEOUT_S)
            errors = process.stderr.read().decode()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=TIMEOUT_S)

    assert urlsplit(base_url).hostname == "127.0.0.1"
    assert base_url.endswith("/")
    assert second.strip().endswith(f"ASTRO_JUPYTER_API_URL={base_url}")
    assert status == 200
    assert config["domainUrl"] == base_url + "auth/"
    assert exit_code == 0, errors


@pytest.mark.parametrize("host", [WILDCARD_IPV4, "192.0.2.10", "example.com"])
def test_cli_rejects_non_loopback_host(host):
    result = subprocess.run(
        [*COMMAND, "--host", host, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "loopback" in lines[0]
    assert host in lines[0]


def test_cli_help_describes_options():
    result = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=TIMEOUT_S)

    assert result.returncode == 0
    for option in ("--host", "--port", "--approve", "--page-size-max", "--access-token-ttl-s"):
        assert option in result.stdout
