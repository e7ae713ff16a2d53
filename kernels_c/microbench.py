"""Machine micro-benchmarks: fp32 FMA and int8 dot-product peaks, streaming bandwidth
(read-only sum and triad) and a clock estimate, each on 1..N OpenMP threads.

Every function validates its arguments before any C code runs, and every run checks what
the C loop reports against what this module expects: the thread count OpenMP really used,
the number of accumulator chains and lanes, the operation count and a checksum that is only
right if every counted instruction executed (each accumulator lane grows by a fixed step per
iteration). A mismatch raises ``RuntimeError`` instead of returning a wrong rate.

What one loop iteration executes, per thread (see ``cdef/bench.h``):

========  ============  ======  =====  ==========================================  ======
kind      path          chains  lanes  instructions per chain                      OP
========  ============  ======  =====  ==========================================  ======
fp32      avx512        16      16     vfmadd231ps zmm                             32
fp32      avx2          12      8      vfmadd231ps ymm                             16
fp32      portable      12      4      mulps + addps (4-lane a*m+c)                8
int8      avx512_vnni   16      16     vpdpbusd zmm (64 u8*s8 MAC)                 128
int8      avx2          8       8      vpmaddubsw + vpmaddwd + vpaddd (32 MAC)     64
int8      portable      12      4      pmaddwd + paddd (8 int16 MAC; SSE2)         16
========  ============  ======  =====  ==========================================  ======

1 MAC = 2 OP. The ``avx512`` path (AVX512F without BW) has no byte multiply, so int8 runs
the avx2 code there.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _isa
from ._loader import load
from ._validate import check_threads

__all__ = ["ClockResult", "PeakResult", "StreamResult", "clock", "cpu_signature",
           "cpuid_caches", "peak", "plan_peak", "plan_stream", "stream"]

PEAK_KINDS = ("fp32", "int8")
STREAM_KINDS = ("read", "triad")
IMPLEMENTED: dict[str, tuple[str, ...]] = {
    "fp32": ("portable", "avx2", "avx512"),
    "int8": ("portable", "avx2", "avx512_vnni"),
    "read": ("portable", "avx2", "avx512"),
    "triad": ("portable", "avx2", "avx512"),
}
#: largest iteration count per call: fp32 accumulator lanes stay exact integers up to 2^24
MAX_ITERS = 1 << 24
_X86 = platform.machine().lower() in ("x86_64", "amd64")

#: (chains, lanes, OP per instruction, lane step per iteration) per kind and path
_PEAK_SHAPE: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("fp32", "avx512"): (16, 16, 32, 1),
    ("fp32", "avx2"): (12, 8, 16, 1),
    ("fp32", "portable"): (12, 4, 8, 1),
    ("int8", "avx512_vnni"): (16, 16, 128, 4),
    ("int8", "avx2"): (8, 8, 64, 4),
    ("int8", "portable"): (12, 4, 16, 2) if _X86 else (12, 4, 8, 1),
}
_PEAK_FN = {"fp32": "bench_peak_f32", "int8": "bench_peak_u8s8"}
_STREAM_FN = {"read": "bench_read_f32", "triad": "bench_triad_f32"}
_BYTES_PER_ELEMENT = {"read": 4, "triad": 12}


def _module() -> Any:
    return load("bench")


def _check_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return int(value)


def _check_kind(kind: Any, valid: tuple[str, ...]) -> str:
    if kind not in valid:
        raise ValueError(f"kind must be one of {valid}, got {kind!r}")
    return str(kind)


def _check_pin(pin: Any) -> int:
    if not isinstance(pin, (bool, np.bool_)):
        raise TypeError(f"pin must be a bool, got {type(pin).__name__}")
    return int(pin)


def _check_ran(fn: str, ran: int, threads: int) -> None:
    if ran != threads:
        raise RuntimeError(
            f"{fn}: OpenMP ran {ran} thread(s) but {threads} were requested "
            f"(check OMP_THREAD_LIMIT / OMP_DYNAMIC)"
        )


# ---------------------------------------------------------------------------------- peaks
@dataclass(frozen=True)
class PeakResult:
    """One timed run of a peak loop.

    Attributes
    ----------
    kind, isa : what ran (``"fp32"``/``"int8"``, the ISA path).
    threads, iters : OpenMP threads and loop iterations per thread.
    chains, lanes : independent accumulators per thread and 32-bit lanes in each.
    ops : int, counted operations (FLOP for fp32; OP for int8, 1 MAC = 2 OP), all threads.
    seconds : float, wall time between the start and end barriers.
    checksum : float, sum of every accumulator lane (verified against ``expected``).
    thread_seconds : tuple of float, each thread's own loop time (same start barrier).
    disturbed : int, threads that were preempted (involuntary context switch) during the
        call, Linux only (0 elsewhere): such a sample measured the load, not the machine.
    """

    kind: str
    isa: str
    threads: int
    iters: int
    chains: int
    lanes: int
    ops: int
    seconds: float
    checksum: float
    thread_seconds: tuple[float, ...] = ()
    disturbed: int = 0

    @property
    def rate(self) -> float:
        """Operations per second (FLOP/s or OP/s) over the barrier-to-barrier wall time."""
        return self.ops / self.seconds if self.seconds > 0 else math.inf

    @property
    def thread_rate(self) -> float:
        """Sum over threads of each thread's own rate. The threads start together, so this
        is the all-core rate when none was preempted; unlike :attr:`rate` one thread
        descheduled by another process lowers only its own share (compute pipes are per
        core, so the sum is not inflated when one thread briefly runs alone)."""
        per = self.ops / max(len(self.thread_seconds), 1)
        return sum(per / s if s > 0 else math.inf for s in self.thread_seconds)


def expected_peak(kind: str, isa: str, threads: int, iters: int) -> tuple[int, float]:
    """(ops, checksum) a correct run of :func:`peak` must report."""
    chains, lanes, op_per_instr, step = _PEAK_SHAPE[(kind, isa)]
    return (threads * iters * chains * op_per_instr,
            float(threads) * chains * lanes * step * iters)


@dataclass
class PeakPlan:
    """A validated peak-loop call (``.function(.args)`` can also be timed from C)."""

    args: Any
    module: Any
    isa: str
    params: dict[str, Any]
    out: PeakResult | None = None
    _thread_seconds: Any = field(default=None, repr=False)

    @property
    def function(self) -> Any:
        return getattr(self.module.lib, _PEAK_FN[self.params["kind"]])

    def run(self) -> PeakResult:
        kind, threads, iters = (self.params[k] for k in ("kind", "threads", "iters"))
        fn = _PEAK_FN[kind]
        rc = self.function(self.args)
        if rc != 0:
            raise RuntimeError(f"{fn} failed with code {rc} on path {self.isa}")
        a = self.args
        _check_ran(fn, a.threads_run, threads)
        chains, lanes, _, _ = _PEAK_SHAPE[(kind, self.isa)]
        ops, checksum = expected_peak(kind, self.isa, threads, iters)
        if (a.chains, a.lanes, a.ops) != (chains, lanes, ops) or a.checksum != checksum:
            raise RuntimeError(
                f"{fn} on {self.isa} counted chains={a.chains} lanes={a.lanes} ops={a.ops} "
                f"checksum={a.checksum}, expected {chains}, {lanes}, {ops}, {checksum}"
            )
        self.out = PeakResult(kind, self.isa, threads, iters, chains, lanes, int(a.ops),
                              float(a.seconds), float(a.checksum),
                              tuple(float(self._thread_seconds[t]) for t in range(threads)),
                              int(a.disturbed))
        return self.out


def plan_peak(kind: str, *, iters: int, threads: int = 1, isa: str | None = None,
              pin: bool = True) -> PeakPlan:
    """Validate and prepare a peak loop (see :func:`peak`)."""
    kind = _check_kind(kind, PEAK_KINDS)
    iters = _check_int(iters, "iters", 1, MAX_ITERS)
    threads = check_threads(threads)
    level, isa_id = _isa.resolve(isa, IMPLEMENTED[kind])
    module = _module()
    args = module.ffi.new("bench_peak_args *")
    args.isa, args.threads, args.iters, args.pin = isa_id, threads, iters, _check_pin(pin)
    per_thread = module.ffi.new("double[]", threads)
    args.thread_seconds = per_thread
    return PeakPlan(args, module, level, {"kind": kind, "threads": threads, "iters": iters},
                    _thread_seconds=per_thread)


def peak(kind: str, *, iters: int, threads: int = 1, isa: str | None = None,
         pin: bool = True) -> PeakResult:
    """Run the fp32 FMA or int8 dot-product peak loop once.

    Parameters
    ----------
    kind : ``"fp32"`` or ``"int8"``.
    iters : int in [1, 2**24], loop iterations per thread (each iteration executes
        ``chains`` instructions per thread, see the module table).
    threads : int, OpenMP threads (each runs the whole loop).
    isa : str, optional; a path at or below :func:`kernels_c.isa`; the highest implemented
        path at or below it runs (fp32: avx512/avx2/portable; int8: avx512_vnni/avx2/portable).

    Returns
    -------
    PeakResult (``.rate`` in FLOP/s or OP/s).
    """
    return plan_peak(kind, iters=iters, threads=threads, isa=isa, pin=pin).run()


# -------------------------------------------------------------------------------- streams
@dataclass(frozen=True)
class StreamResult:
    """One timed run of a streaming kernel.

    ``bytes`` counts every element read or written once per pass (read: 4 B, triad: 12 B per
    element; write-allocate traffic is not counted, as in STREAM); ``checksum`` is the sum
    over passes of ``sum(b)`` for read and 0 for triad; ``disturbed`` counts the threads
    preempted by other processes during the call (Linux; 0 elsewhere).
    """

    kind: str
    isa: str
    threads: int
    n: int
    passes: int
    bytes: int
    seconds: float
    checksum: float
    disturbed: int = 0

    @property
    def bandwidth(self) -> float:
        """Bytes per second."""
        return self.bytes / self.seconds if self.seconds > 0 else math.inf


@dataclass
class StreamPlan:
    """A validated streaming-kernel call; keeps the arrays alive while the plan lives."""

    args: Any
    module: Any
    isa: str
    params: dict[str, Any]
    _keepalive: tuple = field(repr=False, default=())
    out: StreamResult | None = None

    @property
    def function(self) -> Any:
        return getattr(self.module.lib, _STREAM_FN[self.params["kind"]])

    def run(self) -> StreamResult:
        kind, threads, n, passes = (self.params[k] for k in ("kind", "threads", "n", "passes"))
        fn = _STREAM_FN[kind]
        rc = self.function(self.args)
        if rc != 0:
            raise RuntimeError(f"{fn} failed with code {rc} on path {self.isa}")
        _check_ran(fn, self.args.threads_run, threads)
        expect = _BYTES_PER_ELEMENT[kind] * n * passes
        if self.args.bytes != expect:
            raise RuntimeError(f"{fn} counted {self.args.bytes} bytes, expected {expect}")
        self.out = StreamResult(kind, self.isa, threads, n, passes, int(self.args.bytes),
                                float(self.args.seconds), float(self.args.checksum),
                                int(self.args.disturbed))
        return self.out


def _check_vector(x: Any, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {x.dtype}; "
                        f"convert with {name}.astype(np.float32)")
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be contiguous (got strides {x.strides}); "
                         f"pass np.ascontiguousarray({name})")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty")
    return x


def plan_stream(kind: str, b: np.ndarray, *, a: np.ndarray | None = None,
                c: np.ndarray | None = None, scalar: float = 3.0, passes: int = 1,
                threads: int = 1, isa: str | None = None, pin: bool = True) -> StreamPlan:
    """Validate and prepare a streaming kernel (see :func:`stream`)."""
    kind = _check_kind(kind, STREAM_KINDS)
    b = _check_vector(b, "b")
    n = int(b.shape[0])
    passes = _check_int(passes, "passes", 1, 1 << 40)
    threads = check_threads(threads)
    level, isa_id = _isa.resolve(isa, IMPLEMENTED[kind])
    module = _module()
    ffi = module.ffi
    args = ffi.new("bench_stream_args *")
    keep: tuple = (b,)
    if kind == "triad":
        if a is None or c is None:
            raise ValueError("triad needs the output a and the second input c")
        a = _check_vector(a, "a")
        c = _check_vector(c, "c")
        if a.shape != b.shape or c.shape != b.shape:
            raise ValueError(f"a, b and c must have one length, got {a.shape}, {b.shape}, "
                             f"{c.shape}")
        if not a.flags.writeable:
            raise ValueError("a must be writeable")
        if np.shares_memory(a, b) or np.shares_memory(a, c):
            raise ValueError("a must not overlap b or c")
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float, np.floating)):
            raise TypeError(f"scalar must be a float, got {type(scalar).__name__}")
        if not math.isfinite(float(scalar)):
            raise ValueError(f"scalar must be finite, got {scalar}")
        args.a = ffi.from_buffer("float[]", a)
        args.c = ffi.from_buffer("float[]", c)
        args.scalar = float(scalar)
        keep = (a, b, c)
    elif a is not None or c is not None:
        raise ValueError("read takes only b (a and c are for triad)")
    args.b = ffi.from_buffer("float[]", b)
    args.isa, args.threads, args.n, args.passes = isa_id, threads, n, passes
    args.pin = _check_pin(pin)
    return StreamPlan(args, module, level,
                      {"kind": kind, "threads": threads, "n": n, "passes": passes}, keep)


def stream(kind: str, b: np.ndarray, *, a: np.ndarray | None = None,
           c: np.ndarray | None = None, scalar: float = 3.0, passes: int = 1,
           threads: int = 1, isa: str | None = None, pin: bool = True) -> StreamResult:
    """Run a streaming kernel once: ``"read"`` sums ``b``; ``"triad"`` sets
    ``a = b + scalar * c``.

    Parameters
    ----------
    kind : ``"read"`` or ``"triad"``.
    b : ndarray (n,), float32, contiguous, n >= 1.
    a, c : ndarray (n,), float32, contiguous (triad only; ``a`` is written and must not
        overlap ``b`` or ``c``).
    scalar : float, finite (triad multiplier).
    passes : int >= 1, sweeps over the arrays in one call.
    threads : int; the arrays are split into one contiguous chunk per thread.
    isa : str, optional (avx512 / avx2 / portable code runs).
    pin : bool, pin thread t to the t-th allowed CPU during the call (see :func:`peak`).

    Returns
    -------
    StreamResult (``.bandwidth`` in bytes/s).
    """
    return plan_stream(kind, b, a=a, c=c, scalar=scalar, passes=passes, threads=threads,
                       isa=isa, pin=pin).run()


# ---------------------------------------------------------------------------------- clock
@dataclass(frozen=True)
class ClockResult:
    """Per-thread core clock estimates from a chain of dependent integer adds.

    ``hz[t]`` = adds / seconds of thread t (one add retires per cycle on a dependent chain).
    """

    threads: int
    adds: int
    seconds: tuple[float, ...]

    @property
    def hz(self) -> tuple[float, ...]:
        return tuple(self.adds / s if s > 0 else math.inf for s in self.seconds)


def clock(*, threads: int = 1, iters: int = 200_000, pin: bool = True) -> ClockResult:
    """Estimate the core clock on ``threads`` threads at once.

    Parameters
    ----------
    threads : int, OpenMP threads, each timing its own chain.
    iters : int in [1, 2**30], iterations of 64 dependent adds per thread.
    pin : bool, pin thread t to the t-th allowed CPU during the call (see :func:`peak`).
    """
    threads = check_threads(threads)
    iters = _check_int(iters, "iters", 1, 1 << 30)
    module = _module()
    ffi = module.ffi
    seconds = ffi.new("double[]", threads)
    args = ffi.new("bench_clock_args *")
    args.threads, args.iters, args.seconds = threads, iters, seconds
    args.pin = _check_pin(pin)
    rc = module.lib.bench_clock(args)
    if rc != 0:
        raise RuntimeError(f"bench_clock failed with code {rc}")
    _check_ran("bench_clock", args.threads_run, threads)
    adds = iters * args.adds_per_iter
    if args.checksum != threads * adds:
        raise RuntimeError(f"bench_clock checksum {args.checksum} != {threads * adds}")
    return ClockResult(threads, adds, tuple(float(seconds[t]) for t in range(threads)))


def cpu_signature() -> tuple[int, int, int] | None:
    """CPUID (family, model, stepping) with the extended fields folded in; None off x86."""
    module = _module()
    ffi = module.ffi
    fam, mod, step = ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
    if module.lib.bench_cpu_signature(fam, mod, step) != 0:
        return None
    return int(fam[0]), int(mod[0]), int(step[0])


def cpuid_caches() -> dict[str, int] | None:
    """L1d/L2/L3 sizes (bytes, one instance) and sharing CPUs from CPUID (leaf 4 on Intel,
    0x8000001D on AMD); None where CPUID has no cache leaf (or off x86)."""
    module = _module()
    ffi = module.ffi
    sizes, shared = ffi.new("int64_t[4]"), ffi.new("int[4]")
    if module.lib.bench_cpuid_caches(sizes, shared, 4) != 0:
        return None
    out: dict[str, int] = {}
    for level, key in ((1, "l1d"), (2, "l2"), (3, "l3")):
        out[f"{key}_bytes"] = int(sizes[level])
        out[f"{key}_shared_cpus"] = int(shared[level])
    return out
