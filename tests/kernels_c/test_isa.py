"""ISA detection and dispatch: the chosen path, the cap, and emulated CPUs under QEMU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kernels_c
from kernels_c import _isa

from ..conftest import require_tool

SMOKE = Path(__file__).with_name("qemu_smoke.py")


def test_isa_is_highest_supported_level():
    assert kernels_c.isa() == _isa.supported_levels()[-1]
    assert _isa.supported_levels()[0] == "portable"


def test_levels_follow_cpuid_flags():
    flags = kernels_c.cpu_features()
    levels = _isa.supported_levels()
    assert ("avx2" in levels) == (flags["avx2"] and flags["fma"])
    assert ("avx512" in levels) == flags["avx512f"]
    assert ("avx512_vnni" in levels) == (
        flags["avx512f"] and flags["avx512bw"] and flags["avx512vl"] and flags["avx512_vnni"]
    )


def test_env_caps_the_path(monkeypatch):
    monkeypatch.setenv("KERNELS_C_ISA", "portable")
    assert kernels_c.isa() == "portable"
    monkeypatch.setenv("KERNELS_C_ISA", "nonsense")
    with pytest.raises(ValueError, match="unknown ISA path"):
        kernels_c.isa()


def test_resolve_falls_back_to_implemented_path():
    # an op with no avx512 code runs its avx2 code at the avx512 levels (Xeon Phi's case)
    if "avx512" not in _isa.supported_levels():
        pytest.skip("needs an AVX-512 CPU")
    assert _isa.resolve("avx512_vnni" if "avx512_vnni" in _isa.supported_levels()
                        else "avx512", ("portable", "avx2"))[0] == "avx2"
    assert _isa.resolve("avx512", ("portable", "avx2", "avx512_vnni"))[0] == "avx2"


def test_requesting_an_unsupported_path_is_refused(monkeypatch):
    monkeypatch.setattr(_isa, "supported_levels", lambda: ["portable"])
    with pytest.raises(ValueError, match="not supported by this CPU"):
        _isa.check_level("avx2")


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [("Nehalem", "portable"), ("Haswell", "avx2")],
)
def test_emulated_cpu_takes_the_expected_path(cpu, expected):
    qemu = require_tool("qemu-x86_64", "Debian package qemu-user")
    env = dict(os.environ)
    # OpenBLAS must detect the emulated CPU itself, not take this machine's forced core type
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("KERNELS_C_ISA", None)
    env["OMP_NUM_THREADS"] = "2"
    proc = subprocess.run(
        [qemu, "-cpu", cpu, sys.executable, str(SMOKE)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert proc.returncode == 0, (
        f"qemu -cpu {cpu}: exit {proc.returncode}\n"
        f"stdout:{proc.stdout}\nstderr:{proc.stderr[-3000:]}"
    )
    assert f"isa {expected}" in proc.stdout
    assert "ok" in proc.stdout
