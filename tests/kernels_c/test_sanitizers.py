"""Run the kernel tests again against an AddressSanitizer + UBSan build of every module.

The sanitized modules come from the variant cache (KERNELS_C_SANITIZE=1); Python itself is
not instrumented, so libasan is preloaded. Any ASan/UBSan report aborts the child process
(``-fno-sanitize-recover=all``, ``halt_on_error``), which fails this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import IN_CI

HERE = Path(__file__).resolve().parent


def _runtime_library(name: str) -> str | None:
    out = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                         check=False)
    path = out.stdout.strip()
    return path if out.returncode == 0 and os.path.isabs(path) else None


@pytest.mark.slow
def test_kernel_tests_pass_under_asan_and_ubsan(tmp_path):
    if os.environ.get("KERNELS_C_SANITIZE"):
        pytest.skip("already running under the sanitizers")
    libasan = _runtime_library("libasan.so")
    if libasan is None:
        message = "gcc with libasan is needed for the sanitizer build"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ)
    env.update(
        KERNELS_C_SANITIZE="1",
        KERNELS_C_CACHE=str(tmp_path / "cache"),
        LD_PRELOAD=libasan,
        # CPython's own allocations are not leaks we can act on
        ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        HYPOTHESIS_PROFILE="sanitizer",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(HERE),
         # compile-only and cache-management tests run no kernel code worth instrumenting
         "-k", "not sanitizers and not emulated_cpu and not variant_cache and not portable_build"],
        capture_output=True, text=True, env=env, timeout=1500, check=False,
    )
    tail = (proc.stdout[-4000:] + "\n" + proc.stderr[-4000:])
    assert proc.returncode == 0, tail
    assert "ERROR: AddressSanitizer" not in proc.stderr
    assert "runtime error:" not in proc.stderr
    assert " passed" in proc.stdout
