"""Machine micro-benchmarks: exact operation counting, every ISA path, stream results,
clock, and argument validation before any C code runs."""

from __future__ import annotations

import os
import platform
import re
import subprocess

import numpy as np
import pytest

from kernels_c import _isa
from kernels_c import microbench as mb

from ..conftest import require_tool

X86 = platform.machine().lower() in ("x86_64", "amd64")

# What one iteration of each loop executes, written out independently of microbench's table:
# path -> (chains, lanes, FLOP or OP per instruction, lane increment per iteration)
FP32 = {"avx512": (16, 16, 32, 1), "avx2": (12, 8, 16, 1), "portable": (12, 4, 8, 1)}
INT8 = {"avx512_vnni": (16, 16, 128, 4), "avx2": (8, 8, 64, 4),
        "portable": (12, 4, 16, 2) if X86 else (12, 4, 8, 1)}
# which loop runs when a path is requested
FP32_RUNS = {"portable": "portable", "avx2": "avx2", "avx512": "avx512",
             "avx512_vnni": "avx512"}
INT8_RUNS = {"portable": "portable", "avx2": "avx2", "avx512": "avx2",
             "avx512_vnni": "avx512_vnni"}


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("iters", [1, 3, 7, 13, 1000])
def test_fp32_peak_counts_every_fma(isa_path, iters, threads):
    res = mb.peak("fp32", iters=iters, threads=threads, isa=isa_path)
    path = FP32_RUNS[isa_path]
    chains, lanes, flop, step = FP32[path]
    assert res.isa == path
    assert (res.chains, res.lanes) == (chains, lanes)
    assert res.ops == threads * iters * chains * flop
    # every lane of every chain advanced exactly `iters` times, on every thread
    assert res.checksum == threads * chains * lanes * step * iters
    assert res.seconds > 0 and res.rate > 0
    assert len(res.thread_seconds) == threads and all(s > 0 for s in res.thread_seconds)
    per_thread = res.ops / threads
    assert res.thread_rate == pytest.approx(sum(per_thread / s for s in res.thread_seconds))
    assert 0 <= res.disturbed <= threads


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("iters", [1, 3, 7, 13, 1000])
def test_int8_peak_counts_every_dot_product(isa_path, iters, threads):
    res = mb.peak("int8", iters=iters, threads=threads, isa=isa_path)
    path = INT8_RUNS[isa_path]
    chains, lanes, ops, step = INT8[path]
    assert res.isa == path
    assert (res.chains, res.lanes) == (chains, lanes)
    assert res.ops == threads * iters * chains * ops
    assert res.checksum == threads * chains * lanes * step * iters
    assert res.rate > 0


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_largest_iteration_count_stays_exact(kind):
    # 2^24 iterations: fp32 lanes reach 2^24 (still exact); the sum over lanes must be done
    # in double, not in float, or the checksum comparison inside run() fails
    top = _isa.isa()
    res = mb.peak(kind, iters=mb.MAX_ITERS, threads=1, isa=top)
    assert res.iters == mb.MAX_ITERS
    assert res.checksum == mb.expected_peak(kind, res.isa, 1, mb.MAX_ITERS)[1]


def test_plan_reruns_and_exposes_c_entry_point():
    plan = mb.plan_peak("fp32", iters=5, threads=1, isa="portable")
    first, second = plan.run(), plan.run()
    assert first.checksum == second.checksum == 12 * 4 * 5
    assert plan.out is second
    assert plan.function == plan.module.lib.bench_peak_f32
    assert plan.params == {"kind": "fp32", "threads": 1, "iters": 5}


def test_unpinned_runs_count_the_same():
    res = mb.peak("fp32", iters=9, threads=2, isa="portable", pin=False)
    assert res.checksum == 2 * 12 * 4 * 9


# loops whose instruction count must match the table: (function, mnemonic, count, path)
DISASSEMBLY = [
    ("peak_f32_avx512", r"vfmadd231ps\s+%zmm", 16, "avx512"),
    ("peak_f32_avx2", r"vfmadd231ps\s+%ymm", 12, "avx2"),
    ("peak_u8s8_vnni", r"vpdpbusd\s+%zmm", 16, "avx512_vnni"),
    ("peak_u8s8_avx2", r"vpmaddubsw\s+%ymm", 8, "avx2"),
    ("peak_u8s8_avx2", r"vpmaddwd\s+%ymm", 8, "avx2"),
]


@pytest.mark.skipif(not X86, reason="x86 disassembly")
@pytest.mark.parametrize(("func", "pattern", "count", "path"), DISASSEMBLY)
def test_compiled_loop_holds_exactly_the_counted_instructions(func, pattern, count, path):
    objdump = require_tool("objdump", "disassembles the benchmark loops")
    so = mb._module().__file__
    out = subprocess.run([objdump, "-d", "--no-show-raw-insn", so], capture_output=True,
                         text=True, check=True).stdout
    match = re.search(rf"<{func}>:\n(.*?)\n\n", out, re.S)
    if match is None:
        pytest.skip(f"{func} not found as a symbol (stripped or inlined build)")
    assert len(re.findall(pattern, match.group(1))) == count, match.group(1)


# ------------------------------------------------------------------------------ streams
SIZES = [1, 3, 7, 13, 15, 16, 17, 31, 33, 127, 128, 129, 1000]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", SIZES)
def test_read_sums_every_element_each_pass(isa_path, n, threads):
    rng = np.random.default_rng(n)
    b = rng.integers(0, 4, n).astype(np.float32)  # small integers: sums are exact
    res = mb.stream("read", b, passes=3, threads=threads, isa=isa_path)
    assert res.checksum == 3 * float(b.astype(np.float64).sum())
    assert res.bytes == 4 * n * 3 and 0 <= res.disturbed <= threads
    assert res.isa == FP32_RUNS[isa_path]
    assert res.bandwidth > 0


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", SIZES)
def test_triad_writes_b_plus_s_c_and_nothing_else(isa_path, n, threads):
    rng = np.random.default_rng(n + 1)
    buf = np.full(n + 2, np.nan, np.float32)  # sentinels around the output
    a = buf[1:-1]
    b = rng.integers(-8, 8, n).astype(np.float32)
    c = rng.integers(-8, 8, n).astype(np.float32)
    res = mb.stream("triad", b, a=a, c=c, scalar=2.0, passes=2, threads=threads, isa=isa_path)
    np.testing.assert_array_equal(a, b + np.float32(2.0) * c)
    assert np.isnan(buf[0]) and np.isnan(buf[-1])
    assert res.bytes == 12 * n * 2 and res.checksum == 0


def test_read_of_unaligned_view():
    raw = np.ones(1001, np.float32)
    b = raw[1:]  # 4-byte offset from the allocation
    assert mb.stream("read", b, passes=2, threads=2).checksum == 2000


# -------------------------------------------------------------------------------- clock
@pytest.mark.parametrize("threads", [1, 2])
def test_clock_reports_one_plausible_rate_per_thread(threads):
    res = mb.clock(threads=threads, iters=20_000)
    assert res.threads == threads and len(res.seconds) == threads
    assert res.adds == 20_000 * 64
    assert all(1e8 < hz < 1e11 for hz in res.hz)


@pytest.mark.skipif(not X86, reason="CPUID")
def test_cpu_signature():
    family, model, stepping = mb.cpu_signature()
    assert family >= 5 and 0 <= model <= 0xFF and 0 <= stepping <= 0xF


@pytest.mark.skipif(not X86, reason="CPUID")
def test_cpuid_caches_are_whole_and_ordered():
    caches = mb.cpuid_caches()
    if caches is None:
        pytest.skip("no CPUID cache leaves (old CPU or hypervisor)")
    assert caches["l1d_bytes"] >= 4096 and caches["l1d_bytes"] % 1024 == 0
    assert caches["l2_bytes"] == 0 or caches["l2_bytes"] > caches["l1d_bytes"]
    assert all(caches[k] >= 1 for k in ("l1d_shared_cpus", "l2_shared_cpus"))


# -------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "exc", "message"), [
    ({"kind": "fp64", "iters": 1}, ValueError, "kind must be one of"),
    ({"kind": "fp32", "iters": 0}, ValueError, "iters must be in"),
    ({"kind": "fp32", "iters": mb.MAX_ITERS + 1}, ValueError, "iters must be in"),
    ({"kind": "fp32", "iters": 1.5}, TypeError, "iters must be an int"),
    ({"kind": "fp32", "iters": True}, TypeError, "iters must be an int"),
    ({"kind": "fp32", "iters": 1, "threads": 0}, ValueError, "threads must be in"),
    ({"kind": "fp32", "iters": 1, "threads": "2"}, TypeError, "threads must be an int"),
    ({"kind": "int8", "iters": 1, "isa": "sse9"}, ValueError, "unknown ISA path"),
    ({"kind": "int8", "iters": 1, "pin": "yes"}, TypeError, "pin must be a bool"),
])
def test_peak_rejects_bad_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        mb.plan_peak(**kwargs)


def test_unsupported_path_rejected():
    missing = [lvl for lvl in _isa.LEVELS if lvl not in _isa.supported_levels()]
    if not missing:
        pytest.skip("this CPU runs every path")
    with pytest.raises(ValueError, match="not supported by this CPU"):
        mb.plan_peak("fp32", iters=1, isa=missing[-1])


def _vec(n=16):
    return np.ones(n, np.float32)


@pytest.mark.parametrize(("call", "exc", "message"), [
    (lambda: mb.plan_stream("copy", _vec()), ValueError, "kind must be one of"),
    (lambda: mb.plan_stream("read", np.ones(4)), TypeError, "float32"),
    (lambda: mb.plan_stream("read", [1.0, 2.0]), TypeError, "numpy.ndarray"),
    (lambda: mb.plan_stream("read", np.ones((2, 2), np.float32)), ValueError, "1-D"),
    (lambda: mb.plan_stream("read", _vec(32)[::2]), ValueError, "contiguous"),
    (lambda: mb.plan_stream("read", _vec(0)), ValueError, "empty"),
    (lambda: mb.plan_stream("read", _vec(), passes=0), ValueError, "passes"),
    (lambda: mb.plan_stream("read", _vec(), a=_vec()), ValueError, "only b"),
    (lambda: mb.plan_stream("triad", _vec(), a=_vec()), ValueError, "needs"),
    (lambda: mb.plan_stream("triad", _vec(), a=_vec(8), c=_vec()), ValueError, "one length"),
    (lambda: mb.plan_stream("triad", _vec(), a=_vec(), c=_vec(), scalar=float("nan")),
     ValueError, "finite"),
    (lambda: mb.plan_stream("triad", _vec(), a=_vec(), c=_vec(), scalar="2"),
     TypeError, "scalar"),
    (lambda: mb.plan_stream("read", _vec(), threads=0), ValueError, "threads"),
])
def test_stream_rejects_bad_arguments(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_triad_output_must_not_alias_inputs():
    b = _vec()
    with pytest.raises(ValueError, match="overlap"):
        mb.plan_stream("triad", b, a=b, c=_vec())
    ro = _vec()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        mb.plan_stream("triad", _vec(), a=ro, c=_vec())


@pytest.mark.parametrize(("kwargs", "exc"), [
    ({"threads": 0}, ValueError), ({"iters": 0}, ValueError), ({"iters": 2.0}, TypeError),
    ({"pin": 1}, TypeError),
])
def test_clock_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        mb.clock(**kwargs)


def test_openmp_thread_limit_is_reported(monkeypatch):
    # OMP_THREAD_LIMIT is read when libgomp starts: check in a fresh interpreter
    code = ("from kernels_c import microbench as mb\n"
            "try:\n    mb.peak('fp32', iters=3, threads=2, isa='portable')\n"
            "except RuntimeError as e:\n    print('ERR', e)\n")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=120).stdout
    assert "ERR" in out and "OpenMP ran 1 thread" in out
