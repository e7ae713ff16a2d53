"""Every C source must compile without its x86 sections (as on aarch64) and warning-free."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from kernels_c import _build

SOURCES = sorted({(name, src) for name, srcs in _build.MODULES.items() for src in srcs})


def _compile(src: str, *flags: str) -> subprocess.CompletedProcess:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    return subprocess.run(
        [cc, "-fsyntax-only", "-std=gnu11", "-fopenmp", "-Wall", "-Wextra", "-Werror",
         "-Wno-unused-parameter", "-Wno-unknown-pragmas", *flags,
         f"-I{_build.HERE / 'include'}", f"-I{_build.HERE / 'cdef'}",
         str(_build.HERE / "src" / src)],
        capture_output=True, text=True, check=False,
    )


@pytest.mark.parametrize(("module", "src"), SOURCES)
def test_source_compiles_without_x86_code(module, src):
    proc = _compile(src, "-DKC_NO_X86")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("module", "src"), SOURCES)
def test_source_compiles_warning_free(module, src):
    proc = _compile(src)
    assert proc.returncode == 0, proc.stderr
