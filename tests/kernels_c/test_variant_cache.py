"""The on-demand variant cache: keying, concurrent builds, broken entries."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap

from kernels_c import _loader

BUILD_ONE = textwrap.dedent("""
    import numpy as np, scipy.sparse as sp
    from kernels_c import _loader
    mod = _loader.load("spmm", (("SPMM_ACC_SETS", 1),))
    assert mod.lib.spmm_acc_sets() == 1
    import kernels_c
    a = sp.random_array((9, 9), density=0.5, format="csr", dtype=np.float32, rng=1)
    b = np.ones((9, 5), np.float32)
    assert np.allclose(kernels_c.spmm(a, b, acc_sets=1), a @ b, atol=1e-5)
    print("built", mod.__file__)
""")


def test_key_depends_on_defines_and_flags():
    k0 = _loader.variant_key("spmm", {"SPMM_ACC_SETS": 1}, ())
    assert k0 == _loader.variant_key("spmm", {"SPMM_ACC_SETS": 1}, ())
    assert k0 != _loader.variant_key("spmm", {"SPMM_ACC_SETS": 2}, ())
    assert k0 != _loader.variant_key("spmm", {"SPMM_ACC_SETS": 1}, ("-g",))


def test_two_processes_build_the_same_variant_at_once(tmp_path):
    env = {**os.environ, "KERNELS_C_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD_ONE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert "built" in out
    entries = list(tmp_path.iterdir())
    assert len([e for e in entries if e.name.startswith("_spmm_v")]) == 1, entries
    assert not [e for e in entries if e.name.startswith("build-")], entries  # no leftovers


def test_broken_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELS_C_CACHE", str(tmp_path))
    defines = {"SPMM_ACC_SETS": 1}
    key = _loader.variant_key("spmm", defines, ())
    target = tmp_path / f"_spmm_v{key}{sysconfig.get_config_var('EXT_SUFFIX')}"
    target.write_bytes(b"not an ELF file")
    mod = _loader.build_variant("spmm", defines)
    assert mod.lib.spmm_acc_sets() == 1
    assert target.read_bytes()[:4] == b"\x7fELF"
