"""The vector top-k kernel compiled for older CPUs: AVX2 (Haswell) and baseline x86-64 (SSE2) give the
same exact answers as the brute-force reference, so machines without AVX-512 rank correctly."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 CPU names"),
]


@pytest.mark.parametrize("cpu", ["haswell", "x86-64"])
def test_kernel_compiled_for_an_older_cpu_matches_brute_force(cpu, tmp_path: Path) -> None:
    tests = Path(__file__).with_name("test_models_ranking.py")
    environment = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CACHE_DIR": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests),
         "-k", "kernel and (brute_force or ties or ineligible or pads)"],
        env=environment, capture_output=True, text=True, timeout=240,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert " passed" in finished.stdout
