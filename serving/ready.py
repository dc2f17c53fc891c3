"""Wait for a started API process to answer `/readyz` (tests, benchmarks and scripts share this one wait)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_until_ready(base: str, process: subprocess.Popen, output: Callable[[], str] = lambda: "",
                     seconds: float = 30.0, path: str = "/readyz") -> None:
    """Poll `base + path` until it answers 200; `RuntimeError` with the tail of `output()` when the
    process exits first or does not answer within `seconds` (the process is then killed)."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the API process exited during startup: {output()[-2000:]}")
        try:
            if httpx.get(f"{base}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{base}{path} did not answer 200 within {seconds:.0f} s: {output()[-2000:]}")
        time.sleep(0.1)
