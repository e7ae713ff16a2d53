"""Characterize this machine: compute peaks, bandwidth per memory level, clock, caches.

:func:`characterize` runs the micro-benchmarks of :mod:`kernels_c.microbench` and writes the
*host profile* (JSON, ``perfmodel._paths.host_profile_path()``), the numbers every roofline
of this suite uses for target ``host``. Schema (base units; keys of per-thread tables are
thread counts as strings, ``"1"`` … ``str(cores)``):

- ``schema_version``, ``fingerprint`` (hash of CPU brand, ISA flags, core count, cache sizes;
  the same recipe as ``perfmodel._context``), ``created`` (ISO 8601 UTC).
- ``cpu``: ``brand, vendor, cores, isa_path, flags{...}, family, model, stepping, uarch``.
- ``caches``: ``l1d_bytes, l2_bytes, l3_bytes`` (one instance each), ``*_shared_cpus``,
  ``source``.
- ``peaks``: ``fp32: {path: {"1": {median_flops, iqr_flops, min_flops, max_flops,
  n_samples, n_disturbed, noisy, iters, chains, clock_hz}, ...}}``, ``int8`` likewise
  with ``*_ops``. Paths are listed highest first. Statistics cover the samples during which
  no thread was preempted by another process (``n_disturbed`` were dropped; all samples are
  used when fewer than 3 are clean); ``noisy`` = IQR above 10 % of the median or fewer
  than 3 clean samples.
- ``bandwidth``: ``read | triad: [{bytes, threads, median_bytes_per_s, iqr_bytes_per_s,
  min_bytes_per_s, max_bytes_per_s, n_samples, n_disturbed, noisy, passes}, ...]``
  (bytes = working set of all threads together; triad counts 12 B per element, no
  write-allocate, as STREAM does; samples filtered as for the peaks).
- ``levels``: ``read | triad: {threads: {L1, L2, L3, DRAM: bytes_per_s or None}}``, plateau
  values picked from ``bandwidth`` with each point's best sample (ERT-style);
  ``levels_median`` the same from the medians; ``level_windows`` gives the working-set
  window of each level.
- ``theoretical``: ``clock_hz`` (1 thread), ``clock_hz_all`` (all threads), ``uarch``,
  ``source``, ``fp32_flops_per_cycle`` and ``int8_ops_per_cycle`` (per core, top path),
  ``per_cycle`` (every path), ``peak``, ``ratio`` (median / theoretical) and ``ratio_best``
  (best sample / theoretical) per thread count for fp32 and int8 (top path), ``by_path``
  the same for every path.
- ``run``: ``quick, duration_s, repeats, threads, isa``.

Method. Peaks: :func:`kernels_c.microbench.peak` with enough independent accumulator
chains to fill every FMA/dot-product pipe, many short samples (0.5-2 ms, below a scheduler
time slice, so that on a shared machine most samples run undisturbed), median, IQR and
best, a clock sample taken next to every peak sample, repeats interleaved over all points.
A sample's rate is the sum of the threads' own rates (``PeakResult.thread_rate``): the
threads start together at a barrier, and a thread preempted by another process lowers only
its own share instead of stalling the whole team at the closing barrier.
Bandwidth: ERT-style sweep of the working set from 4 KiB to 4x the last-level cache
(at least 64 MiB, at most 512 MiB), read-only sum and triad, 1 ... all threads; a cache
level's bandwidth is the highest value inside its plateau window (working set between 1.5x
the level below and 0.75x the level's capacity for the threads in use), DRAM's the median
over the points at >= 4x the last-level cache. Clock: a chain of dependent integer adds
(1 cycle each). Theoretical peak = threads x clock x per-cycle rate from a small table of
microarchitectures (vendor/family/model; sources in ``docs/characterize.md``). A time
budget (quick ~8 s, full ~40 s) cuts the number of repeats (never below a minimum) when
other processes slow the run down.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ._paths import host_profile_path

__all__ = ["characterize", "fingerprint", "format_summary", "host_target_dict",
           "load_host_profile"]

SCHEMA_VERSION = 1
LEVEL_NAMES = ("L1", "L2", "L3", "DRAM")
_SYSFS_CPU = Path("/sys/devices/system/cpu/cpu0/cache")
_MIN_BYTES = 4 << 10
_MAX_BYTES_CAP = 512 << 20
_REQUIRED_KEYS = ("schema_version", "fingerprint", "created", "cpu", "caches", "peaks",
                  "bandwidth", "levels", "theoretical")

#: per-mode settings: repeats per point, seconds per peak sample / stream sample, and points
#: per octave of the bandwidth sweep (quick: one point per level). Samples are short (0.5-2
#: ms, below a scheduler time slice) and many: on a machine shared with other processes most
#: samples then run undisturbed and the median is the machine's rate, not the load's.
#: ``budget_s`` bounds the run on a busy machine: once a phase has used its share, it stops
#: after ``min_repeats`` rounds.
_SETTINGS = {
    False: {"repeats": 21, "peak_repeats": 41, "min_repeats": 3, "budget_s": 40.0,
            "peak_s": 0.0005, "stream_s": 0.0015, "per_octave": 2},
    True: {"repeats": 11, "peak_repeats": 21, "min_repeats": 3, "budget_s": 8.0,
           "peak_s": 0.0005, "stream_s": 0.001, "per_octave": 0},
}


# --------------------------------------------------------------------------- the machine
def _size_bytes(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG") or 0) * scale


def _count_cpus(cpu_list: str) -> int:
    total = 0
    for part in cpu_list.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        total += int(hi) - int(lo) + 1 if hi else 1
    return total


def cache_info(sysfs: Path = _SYSFS_CPU, *, cpuid: bool = True) -> dict[str, Any]:
    """Data/unified cache sizes of cpu0 (bytes, one instance each) and how many CPUs share
    each: from sysfs, else (``cpuid=True``) from CPUID's cache leaves; zeros where unknown.
    ``source`` says which ("sysfs", "cpuid" or "unknown")."""
    out: dict[str, Any] = {"l1d_bytes": 0, "l2_bytes": 0, "l3_bytes": 0,
                           "l1d_shared_cpus": 1, "l2_shared_cpus": 1, "l3_shared_cpus": 0,
                           "source": "sysfs"}
    try:
        for index in sorted(sysfs.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            key = "l1d" if level == "1" else f"l{level}"
            if key not in ("l1d", "l2", "l3"):
                continue
            out[f"{key}_bytes"] = _size_bytes((index / "size").read_text())
            try:
                shared = _count_cpus((index / "shared_cpu_list").read_text())
            except (OSError, ValueError):
                shared = 1
            out[f"{key}_shared_cpus"] = max(1, shared)
    except (OSError, ValueError):
        out["source"] = "unknown"
    if not out["l1d_bytes"]:
        out["source"] = "unknown"
        if cpuid:
            from kernels_c import microbench

            found = microbench.cpuid_caches()
            if found and found["l1d_bytes"]:
                out.update(found, source="cpuid")
                out["l3_shared_cpus"] = found["l3_shared_cpus"] if found["l3_bytes"] else 0
    return out


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    """Brand, vendor, usable cores, ISA path and flags, CPUID family/model/stepping."""
    import kernels_c
    from kernels_c import _isa, microbench

    flags = {k: bool(v) for k, v in sorted(kernels_c.cpu_features().items())}
    _, vendor, brand = _isa._detect()
    sig = microbench.cpu_signature() or (0, 0, 0)
    info = {"brand": brand, "vendor": vendor, "cores": _cores(), "isa_path": kernels_c.isa(),
            "flags": flags, "family": sig[0], "model": sig[1], "stepping": sig[2]}
    info["uarch"] = uarch_rates(info)["uarch"]
    return info


def fingerprint(cpu: dict[str, Any], caches: dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of CPU brand, ISA flags, core count and cache sizes.

    Same ingredients and encoding as ``perfmodel._context`` uses when no profile exists,
    so measurements taken before and after ``perfmodel characterize`` agree.
    """
    basis = json.dumps(
        {"brand": cpu["brand"], "flags": {k: bool(v) for k, v in cpu["flags"].items()},
         "cores": int(cpu["cores"]),
         "caches": {k: int(caches.get(k, 0)) for k in ("l1d_bytes", "l2_bytes", "l3_bytes")}},
        sort_keys=True)
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


#: CPUID family 6 models of Xeon cores with Golden Cove's ports (Sapphire Rapids 8Fh,
#: Emerald Rapids CFh, Granite Rapids ADh/AEh)
_GOLDEN_COVE_XEONS = (0x8F, 0xCF, 0xAD, 0xAE)


def uarch_rates(cpu: dict[str, Any]) -> dict[str, Any]:
    """Per-core, per-cycle fp32 FLOP and int8 OP rates of each ISA path on this core.

    A small table by vendor and CPUID family/model (sources: AMD and Intel optimization
    manuals, uops.info, Agner Fog's tables; see docs/characterize.md). Unknown cores get the
    usual two FMA pipes at the path's width and ``source = "assumed"``.
    """
    vendor, fam, model = cpu.get("vendor", ""), int(cpu.get("family", 0)), int(cpu.get("model", 0))
    flags = cpu.get("flags", {})
    # FMA-capable pipes at 512 / 256 bit; SSE mul+add pipes; integer vector multiply pipes;
    # SSE2 pmaddwd + paddd pairs per cycle
    fma512, fma256, sse_ops, imul, sse_pairs = 2, 2, 2, 2, 2.0
    name, source = "unknown x86-64", "assumed: 2 FMA pipes at the path's width"
    if vendor == "AuthenticAMD":
        sse_ops = 4  # Zen: 2 FMA/FMUL + 2 FADD pipes take mulps and addps in parallel
        if fam == 0x1A:
            mobile = 0x20 <= model <= 0x2F or 0x60 <= model <= 0x7F
            fma512 = 1 if mobile else 2
            name = "AMD Zen 5" + (" (mobile, 256-bit datapath)" if mobile else "")
            source = "AMD Zen 5: 2 x 512-bit FMA pipes (desktop/server; mobile 256-bit)"
        elif fam == 0x19:
            fma512 = 1  # Zen 4 splits 512-bit ops over its 256-bit pipes
            name = "AMD Zen 4" if flags.get("avx512f") else "AMD Zen 3"
            source = "AMD Zen 3/4: 2 x 256-bit FMA pipes (AVX-512 double-pumped)"
        elif fam == 0x17:
            if model < 0x30:
                fma256, imul, name = 1, 1, "AMD Zen/Zen+"
                source = "AMD Zen 1: 2 x 128-bit FMA pipes"
            else:
                name, source = "AMD Zen 2", "AMD Zen 2: 2 x 256-bit FMA pipes"
    elif vendor == "GenuineIntel" and fam == 6:
        if model in (0x57, 0x85):
            name, source = "Intel Xeon Phi (KNL/KNM)", "Intel KNL: 2 x 512-bit VPUs"
        elif model in (0x66, 0x7D, 0x7E, 0x8C, 0x8D, 0xA7):
            fma512 = 1
            name, source = "Intel client AVX-512", "Intel Ice/Tiger/Rocket Lake: 1 x 512-bit FMA"
        elif model in _GOLDEN_COVE_XEONS:
            # FMA on ports 0/1 (port 5 for 512-bit) plus the fast adders on ports 1/5: SSE
            # mulps + addps issue on 3 ports; pmaddwd (ports 0/1) + paddd share the 3 vector
            # ALU ports, 1.5 pairs per cycle (Intel optimization manual, Golden Cove)
            sse_ops, sse_pairs = 3, 1.5
            name = "Intel Xeon Golden Cove (Sapphire/Emerald/Granite Rapids)"
            source = ("Intel Golden Cove: 2 x 512-bit FMA, FADD on ports 1 and 5, "
                      "3 vector ALU ports")
        elif flags.get("avx512f"):
            name = "Intel Xeon (AVX-512)"
            source = "Intel Xeon SP: 2 x 512-bit FMA (Gold 6/Platinum; Silver/Bronze have 1)"
        elif flags.get("avx2"):
            name, source = "Intel AVX2 core", "Intel Haswell and later: 2 x 256-bit FMA"
        else:
            fma256, imul = 0, 1
            name, source = "Intel SSE core", "Intel pre-AVX2: no FMA"
    fp32 = {"portable": 4 * sse_ops, "avx2": 16 * fma256, "avx512": 32 * fma512}
    # vpdpbusd runs on the FMA pipes; vpmaddubsw + vpmaddwd = 32 MAC on 2 multiply uops
    int8 = {"portable": int(16 * min(imul, sse_pairs)), "avx2": 32 * imul,
            "avx512_vnni": 128 * fma512}
    if not flags.get("avx2"):
        fp32.pop("avx2")
        int8.pop("avx2")
    if not flags.get("avx512f"):
        fp32.pop("avx512")
    if not flags.get("avx512_vnni"):
        int8.pop("avx512_vnni")
    return {"uarch": name, "source": source, "fp32": fp32, "int8": int8}


# --------------------------------------------------------------------------- statistics
#: a point whose IQR exceeds this fraction of its median is flagged ``noisy``
NOISY_IQR = 0.1


#: statistics use only the samples no thread of which was preempted, when at least this
#: many exist (else all samples, and the point is flagged noisy)
MIN_CLEAN = 3


def _stats(values: Sequence[float], unit: str,
           disturbed: Sequence[int] | None = None) -> dict[str, Any]:
    """Median, IQR, min, max over the undisturbed samples (see ``MIN_CLEAN``)."""
    v = np.asarray(values, dtype=float)
    bad = np.asarray(disturbed if disturbed is not None else np.zeros(v.size), dtype=bool)
    clean = v[~bad]
    use = clean if clean.size >= MIN_CLEAN else v
    q25, q50, q75 = np.percentile(use, [25, 50, 75])
    return {f"median_{unit}": float(q50), f"iqr_{unit}": float(q75 - q25),
            f"min_{unit}": float(use.min()), f"max_{unit}": float(use.max()),
            "n_samples": int(use.size), "n_disturbed": int(bad.sum()),
            "noisy": bool(q75 - q25 > NOISY_IQR * q50 or clean.size < MIN_CLEAN)}


def _thread_counts(threads: int | Sequence[int] | None, cores: int) -> list[int]:
    if threads is None:
        top = cores
    elif isinstance(threads, (int, np.integer)) and not isinstance(threads, bool):
        top = int(threads)
    else:
        counts = sorted({int(t) for t in threads})
        if not counts or counts[0] < 1:
            raise ValueError(f"threads must be positive ints, got {threads!r}")
        return counts
    if top < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    counts = {1, top}
    t = 2
    while t < top:
        counts.add(t)
        t *= 2
    return sorted(counts)


# --------------------------------------------------------------------------- peaks
def _measure_peaks(kind: str, paths: list[str], counts: list[int], cfg: dict,
                   clocks: dict[int, list[float]], deadline: float) -> dict[str, Any]:
    """Peak of every (path, thread count), repeats interleaved so that a burst of load from
    other processes spreads over all points instead of spoiling one."""
    from kernels_c import microbench as mb

    unit = "flops" if kind == "fp32" else "ops"
    plans = {}
    for path in paths:
        # every thread runs the same loop, so one calibration on 1 thread serves all counts;
        # the fastest of a few probes, so that one preempted probe cannot shrink the samples
        fastest = min(mb.peak(kind, iters=20_000, threads=1, isa=path).seconds
                      for _ in range(5))
        iters = int(min(mb.MAX_ITERS, max(1000, cfg["peak_s"] * 20_000 / max(fastest, 1e-7))))
        for t in counts:
            plans[(path, t)] = mb.plan_peak(kind, iters=iters, threads=t, isa=path)
            plans[(path, t)].run()  # warm-up
    rates: dict[tuple[str, int], list[float]] = {k: [] for k in plans}
    bad: dict[tuple[str, int], list[int]] = {k: [] for k in plans}
    hz: dict[tuple[str, int], list[float]] = {k: [] for k in plans}
    for r in range(cfg["peak_repeats"]):
        if r >= cfg["min_repeats"] and time.perf_counter() > deadline:
            break
        for key, plan in plans.items():
            hz[key].extend(mb.clock(threads=key[1], iters=20_000).hz)
            res = plan.run()
            rates[key].append(res.thread_rate)
            bad[key].append(res.disturbed)
    out: dict[str, Any] = {}
    for (path, t), plan in plans.items():
        clocks.setdefault(t, []).extend(hz[(path, t)])
        entry = _stats(rates[(path, t)], unit, bad[(path, t)])
        entry.update({"iters": plan.params["iters"], "chains": plan.out.chains,
                      "clock_hz": float(np.median(hz[(path, t)]))})
        out.setdefault(plan.isa, {})[str(t)] = entry
    return out


# --------------------------------------------------------------------------- bandwidth
def _capacities(caches: dict[str, Any], threads: int, cores: int) -> dict[str, float]:
    """Cache capacity (bytes) available to ``threads`` threads on distinct cores."""
    caps: dict[str, float] = {}
    for lv, key in (("L1", "l1d"), ("L2", "l2"), ("L3", "l3")):
        size = caches.get(f"{key}_bytes", 0)
        if not size:
            continue
        shared = caches.get(f"{key}_shared_cpus") or cores
        instances = min(math.ceil(threads / shared), max(1, cores // shared))
        caps[lv] = float(size) * instances
    return caps


def _windows(caps: dict[str, float], max_bytes: int) -> dict[str, tuple[float, float]]:
    wins: dict[str, tuple[float, float]] = {}
    prev = 0.0
    for lv in ("L1", "L2", "L3"):
        if lv not in caps:
            continue
        wins[lv] = (1.5 * prev, 0.75 * caps[lv])
        prev = caps[lv]
    last = max(caps.values()) if caps else 0.0
    wins["DRAM"] = (min(4.0 * last, float(max_bytes)), math.inf)
    return wins


def _sweep_sizes(max_bytes: int, per_octave: int, wins: dict[str, tuple[float, float]]
                 ) -> list[int]:
    if per_octave:
        n = round(math.log2(max_bytes / _MIN_BYTES) * per_octave)
        raw = [_MIN_BYTES * 2 ** (i / per_octave) for i in range(n + 1)]
    else:  # quick: one point per level, near the top of its window
        raw = [max(_MIN_BYTES, min(hi, 0.5 * hi / 0.75)) if math.isfinite(hi) else max_bytes
               for lo, hi in wins.values()]
    # multiples of 192 B: whole 64-B lines for read (4 B) and triad (3 arrays x 4 B)
    return sorted({max(192, int(s) // 192 * 192) for s in raw if s <= max_bytes})


def _aligned(n: int, fill: float, align: int = 4096) -> np.ndarray:
    """float32 array of n elements starting on an ``align``-byte boundary. numpy only
    guarantees 16 B; a 64-B vector load from a 16-B aligned address spans two cache lines
    and halves the L1 bandwidth measured."""
    raw = np.empty(n + align // 4, np.float32)
    skip = (-raw.ctypes.data % align) // 4
    out = raw[skip:skip + n]
    out.fill(fill)
    return out


def _measure_stream(kind: str, isa: str, sizes: list[int], t: int, cfg: dict,
                    bufs: dict[str, np.ndarray], deadline: float) -> list[dict[str, Any]]:
    """One bandwidth sweep. A sample with fewer than 8 passes is the second of two
    back-to-back calls (the first brings the working set into the caches); repeats are
    interleaved over the sizes."""
    from kernels_c import microbench as mb

    plans = []
    guess = 50e9 * t
    for size in sizes:
        if kind == "read":
            n = size // 4
            arrays: dict[str, Any] = {"b": bufs["r"][:n]}
        else:
            n = size // 12
            arrays = {"a": bufs["a"][:n], "b": bufs["b"][:n], "c": bufs["c"][:n]}
        passes = max(1, math.ceil(cfg["stream_s"] * guess / size))
        guess = max(mb.stream(kind, passes=passes, threads=t, isa=isa, **arrays).bandwidth
                    for _ in range(2))
        passes = max(1, math.ceil(cfg["stream_s"] * guess / size))
        plans.append(mb.plan_stream(kind, passes=passes, threads=t, isa=isa, **arrays))
    rates: list[list[float]] = [[] for _ in plans]
    bad: list[list[int]] = [[] for _ in plans]
    for r in range(cfg["repeats"]):
        if r >= cfg["min_repeats"] and time.perf_counter() > deadline:
            break
        for i, plan in enumerate(plans):
            if plan.params["passes"] < 8:  # else the first pass's misses are noise
                plan.run()
            res = plan.run()
            n, passes = plan.params["n"], plan.params["passes"]
            if kind == "read" and not math.isclose(res.checksum, n * passes, rel_tol=1e-6):
                raise RuntimeError(f"read checksum {res.checksum} != {n * passes}")
            rates[i].append(res.bandwidth)
            bad[i].append(res.disturbed)
    rows = []
    for size, plan, r, d in zip(sizes, plans, rates, bad, strict=True):
        row: dict[str, Any] = {"bytes": int(size), "threads": t}
        row.update(_stats(r, "bytes_per_s", d))
        row["passes"] = plan.params["passes"]
        rows.append(row)
    return rows


def plateau_levels(rows: list[dict[str, Any]], wins: dict[str, tuple[float, float]],
                   stat: str = "max_bytes_per_s") -> dict[str, float | None]:
    """Bandwidth of each level from one sweep, ERT-style: the highest ``stat`` (default the
    best sample of each point) inside a cache level's window, the median of ``stat`` over
    the points of the DRAM window; None for an empty window."""
    out: dict[str, float | None] = {}
    for lv in LEVEL_NAMES:
        if lv not in wins:
            out[lv] = None
            continue
        lo, hi = wins[lv]
        inside = [r[stat] for r in rows
                  if (lo <= r["bytes"] if lv == "DRAM" else lo < r["bytes"]) and r["bytes"] <= hi]
        if lv == "DRAM" and not inside and rows and rows[-1]["bytes"] >= lo / 2:
            inside = [rows[-1][stat]]  # largest point, >= 2x LLC
        if not inside:
            out[lv] = None
        else:
            out[lv] = float(np.median(inside) if lv == "DRAM" else max(inside))
    return out


# --------------------------------------------------------------------------- main entry
def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json_atomic(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def characterize(quick: bool = False, threads: int | Sequence[int] | None = None, *,
                 path: str | os.PathLike | None = None, write: bool = True,
                 max_bytes: int | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure this machine and write the host profile.

    Parameters
    ----------
    quick : bool
        ~5-10 s instead of ~30-50 s on 2 cores: only the top ISA path of each kind, fewer
        repeats, one bandwidth point per memory level.
    threads : int or sequence of int, optional
        Thread counts to measure: an int N means 1, 2, 4, … and N; default: all usable
        cores.
    path : path, optional
        Where to write the JSON (default ``host_profile_path()``); written atomically.
    write : bool
        False returns the profile without writing it.
    max_bytes : int, optional
        Largest working set of the bandwidth sweep (default 4x the last-level cache, at
        least 64 MiB, at most 512 MiB).
    progress : callable(str), optional
        Receives one line per stage.

    Returns
    -------
    dict, the host profile (schema in the module docstring).
    """
    import kernels_c
    from kernels_c import _isa
    from kernels_c import microbench as mb

    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {type(quick).__name__}")
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    cfg = _SETTINGS[quick]
    cpu = cpu_info()
    caches = cache_info()
    cores = cpu["cores"]
    counts = _thread_counts(threads, cores)
    if counts[-1] > cores:
        raise ValueError(f"threads {counts[-1]} exceeds the {cores} usable CPUs: the peaks "
                         f"and plateaus assume one thread per core")
    if max_bytes is None:
        llc = max(caches["l3_bytes"], caches["l2_bytes"], 1 << 20)
        shared = caches["l3_shared_cpus"] or cores
        llc_total = llc * max(1, cores // shared) if caches["l3_bytes"] else llc * cores
        max_bytes = int(min(_MAX_BYTES_CAP, max(64 << 20, 4 * llc_total)))
    elif isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) \
            or max_bytes < 64 << 10:
        raise ValueError(f"max_bytes must be an int >= 64 KiB, got {max_bytes!r}")
    rates = uarch_rates(cpu)
    top = kernels_c.isa()
    load_before = _loadavg()
    peaks: dict[str, Any] = {}
    clocks: dict[int, list[float]] = {}
    for kind in ("fp32", "int8"):
        top_path, _ = _isa.resolve(top, mb.IMPLEMENTED[kind])
        paths = [top_path] if quick else [
            p for p in reversed(mb.IMPLEMENTED[kind]) if p in _isa.supported_levels()
            and _isa.LEVELS.index(p) <= _isa.LEVELS.index(top)]
        say(f"{kind} peak: paths {', '.join(paths)}, threads {counts}")
        share = cfg["budget_s"] * (0.1 if kind == "fp32" else 0.2)
        peaks[kind] = _measure_peaks(kind, paths, counts, cfg, clocks,
                                     time.perf_counter() + share)

    stream_isa, _ = _isa.resolve(top, mb.IMPLEMENTED["read"])
    n3 = max_bytes // 12
    bufs = {"r": _aligned(max_bytes // 4, 1.0), "a": _aligned(n3, 0.0), "b": _aligned(n3, 1.0),
            "c": _aligned(n3, 1.0)}
    bandwidth: dict[str, list] = {"read": [], "triad": []}
    levels: dict[str, dict[str, Any]] = {"read": {}, "triad": {}}
    levels_median: dict[str, dict[str, Any]] = {"read": {}, "triad": {}}
    level_windows: dict[str, Any] = {}
    for t in counts:
        wins = _windows(_capacities(caches, t, cores), max_bytes)
        level_windows[str(t)] = {lv: [lo, hi if math.isfinite(hi) else None]
                                 for lv, (lo, hi) in wins.items()}
        sizes = _sweep_sizes(max_bytes, cfg["per_octave"], wins)
        for kind in ("read", "triad"):
            say(f"{kind} bandwidth: {len(sizes)} sizes, {t} thread(s)")
            left = max(0.0, start + cfg["budget_s"] - time.perf_counter())
            phases_left = 2 * (len(counts) - counts.index(t)) - (kind == "triad")
            rows = _measure_stream(kind, stream_isa, sizes, t, cfg, bufs,
                                   time.perf_counter() + left / phases_left)
            bandwidth[kind].extend(rows)
            levels[kind][str(t)] = plateau_levels(rows, wins)
            levels_median[kind][str(t)] = plateau_levels(rows, wins, "median_bytes_per_s")
    del bufs

    clock_1 = float(np.median(clocks.get(1) or mb.clock(threads=1).hz))
    t_all = counts[-1]
    clock_all = float(np.median(clocks.get(t_all) or mb.clock(threads=t_all).hz))
    theoretical = _theoretical(peaks, rates, clocks)
    theoretical.update(clock_hz=clock_1, clock_hz_all=clock_all,
                       clock_method="dependent integer-add chain, median over samples")
    profile = {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": fingerprint(cpu, caches),
        "created": _utc_now(),
        "cpu": cpu,
        "caches": caches,
        "peaks": peaks,
        "bandwidth": bandwidth,
        "levels": levels,
        "levels_median": levels_median,
        "level_windows": level_windows,
        "theoretical": theoretical,
        "run": {"quick": quick, "duration_s": round(time.perf_counter() - start, 2),
                "repeats": cfg["repeats"], "peak_repeats": cfg["peak_repeats"],
                "threads": counts, "isa": top,
                "stream_isa": stream_isa, "max_bytes": max_bytes,
                "loadavg_before": load_before, "loadavg_after": _loadavg()},
    }
    if write:
        _write_json_atomic(profile, Path(path) if path is not None else host_profile_path())
    return profile


def _theoretical(peaks: dict[str, Any], rates: dict[str, Any],
                 clocks: dict[int, list[float]]) -> dict[str, Any]:
    """Theoretical peaks (threads x clock measured at that thread count x per-cycle rate)
    and measured/theoretical ratios: ``peak``/``ratio``/``ratio_best`` for the top path,
    ``by_path`` for every measured path the table knows."""
    out: dict[str, Any] = {"uarch": rates["uarch"], "source": rates["source"],
                           "per_cycle": {"fp32": rates["fp32"], "int8": rates["int8"]},
                           "peak": {}, "ratio": {}, "ratio_best": {}, "by_path": {}}
    for kind, key in (("fp32", "fp32_flops_per_cycle"), ("int8", "int8_ops_per_cycle")):
        unit = "flops" if kind == "fp32" else "ops"
        top_path = next(iter(peaks[kind]), None)
        out[key] = rates[kind].get(top_path) if top_path else None
        out[f"{kind}_path"] = top_path
        out["by_path"][kind] = {}
        for path, table in peaks[kind].items():
            per_cycle = rates[kind].get(path)
            if not per_cycle:
                continue
            rows = {}
            for t_key, entry in table.items():
                theo = int(t_key) * float(np.median(clocks[int(t_key)])) * per_cycle
                rows[t_key] = {"peak": theo, "ratio": entry[f"median_{unit}"] / theo,
                               "ratio_best": entry[f"max_{unit}"] / theo}
            out["by_path"][kind][path] = rows
        top = out["by_path"][kind].get(top_path, {})
        for name in ("peak", "ratio", "ratio_best"):
            out[name][kind] = {t_key: row[name] for t_key, row in top.items()}
    return out


# --------------------------------------------------------------------------- reading
def load_host_profile(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read a host profile written by :func:`characterize`.

    Raises
    ------
    FileNotFoundError
        No profile at ``path`` (default ``host_profile_path()``): run ``perfmodel
        characterize``.
    ValueError
        Not valid JSON, a schema version this code does not read, or missing keys.
    """
    p = Path(path) if path is not None else host_profile_path()
    if not p.is_file():
        raise FileNotFoundError(f"no host profile at {p}; run `perfmodel characterize` "
                                f"(or `perfmodel characterize --quick`) first")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"host profile {p} is not valid JSON ({exc}); re-run "
                         f"`perfmodel characterize`") from exc
    if not isinstance(data, dict):
        raise ValueError(f"host profile {p} must hold a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"host profile {p} has schema_version {version!r}; this version "
                         f"reads {SCHEMA_VERSION}; re-run `perfmodel characterize`")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"host profile {p} lacks {missing}; re-run `perfmodel characterize`")
    return data


def _pick(table: dict[str, Any], threads: int | None) -> tuple[str, Any]:
    keys = sorted(table, key=int)
    key = keys[-1] if threads is None else min(keys, key=lambda k: abs(int(k) - threads))
    return key, table[key]


def host_target_dict(profile: dict[str, Any]) -> dict[str, Any]:
    """This host as a catalog target (like ``perfmodel/machines/*.yaml``), name ``"host"``.

    Two views of the same numbers: the catalog layout (``cores``, ``clock``, ``compute``,
    ``memory`` entries with ``value`` in human units, ``kind`` and ``source``) and flat base
    units (``clock_hz``, ``fp32_flops`` / ``fp32_flops_1core``, ``int8_ops`` /
    ``int8_ops_1core``, ``bandwidth_bytes_per_s`` and ``cache_bytes`` per level, ``sources``).
    Compute values are the measured medians of the top ISA path; memory bandwidth is the
    triad plateau of all threads (read in ``bandwidth_read_bytes_per_s``); cache sizes are
    totals over the machine.
    """
    src = f"perfmodel characterize {profile.get('created', '?')}"
    cpu, caches, theo = profile["cpu"], profile["caches"], profile["theoretical"]
    cores = int(cpu["cores"])
    flat: dict[str, Any] = {"clock_hz": theo.get("clock_hz")}
    sources: dict[str, str] = {"cores": f"{src}: usable CPUs (sched_getaffinity)",
                               "clock_hz": f"{src}: {theo.get('clock_method', 'measured')}"}
    compute: dict[str, Any] = {}
    for kind, unit, human in (("fp32", "flops", "GFLOP/s"), ("int8", "ops", "GOP/s")):
        paths = profile["peaks"].get(kind) or {}
        if not paths:
            continue
        path = next(iter(paths))
        all_key, all_entry = _pick(paths[path], None)
        one = paths[path].get("1")
        name = f"{kind}_{unit}"
        flat[name] = all_entry[f"median_{unit}"]
        sources[name] = f"{src}: peaks.{kind}.{path}[{all_key} threads], median"
        compute[kind] = {"value": f"{flat[name] / 1e9:.1f} {human}", "kind": "measured",
                         "source": sources[name]}
        if one is not None:
            flat[f"{name}_1core"] = one[f"median_{unit}"]
            sources[f"{name}_1core"] = f"{src}: peaks.{kind}.{path}[1 thread], median"
            compute[f"{kind}_1core"] = {"value": f"{one[f'median_{unit}'] / 1e9:.1f} {human}",
                                        "kind": "measured", "source": sources[f"{name}_1core"]}
        theo_peak = (theo.get("peak", {}).get(kind) or {}).get(all_key)
        per_cycle = theo.get("fp32_flops_per_cycle" if kind == "fp32" else "int8_ops_per_cycle")
        if theo_peak:
            compute[f"{kind}_peak"] = {
                "value": f"{theo_peak / 1e9:.1f} {human}", "kind": "derived",
                "source": f"{src}: {all_key} cores x measured clock x {per_cycle} per cycle "
                          f"({theo.get('uarch')})"}
    bw: dict[str, float | None] = {}
    bw_read: dict[str, float | None] = {}
    sizes: dict[str, float] = {}
    memory = []
    for lv in LEVEL_NAMES:
        entry: dict[str, Any] = {"name": lv}
        if lv != "DRAM":
            key = "l1d" if lv == "L1" else lv.lower()
            size = caches.get(f"{key}_bytes", 0)
            if size:
                shared = caches.get(f"{key}_shared_cpus") or cores
                sizes[lv] = float(size) * max(1, cores // shared)
                entry["size"] = {"value": f"{int(sizes[lv])} B", "kind": "measured",
                                 "source": f"{src}: sysfs, {size} B x {max(1, cores // shared)}"}
        for kind, target in (("triad", bw), ("read", bw_read)):
            table = profile["levels"].get(kind) or {}
            if table:
                t_key, levels = _pick(table, None)
                target[lv] = levels.get(lv)
                if kind == "triad" and levels.get(lv):
                    entry["bandwidth"] = {"value": f"{levels[lv] / 1e9:.1f} GB/s",
                                          "kind": "measured",
                                          "source": f"{src}: levels.triad[{t_key} threads].{lv}"}
        if len(entry) > 1:
            memory.append(entry)
    flat.update(bandwidth_bytes_per_s=bw, bandwidth_read_bytes_per_s=bw_read, cache_bytes=sizes)
    sources.update(bandwidth_bytes_per_s=f"{src}: levels.triad (all threads), plateau",
                   cache_bytes=f"{src}: sysfs")
    return {
        "schema_version": 1,
        "name": "host",
        "title": f"{cpu.get('brand') or 'this machine'}, {cores} cores (measured)",
        "device": "cpu",
        "isa": cpu.get("isa_path"),
        "fingerprint": profile.get("fingerprint"),
        "cores": cores,
        "clock": {"value": f"{(theo.get('clock_hz') or 0) / 1e9:.3f} GHz", "kind": "measured",
                  "source": sources["clock_hz"]},
        "compute": compute,
        "memory": memory,
        **flat,
        "sources": sources,
        "source": "measured",
    }


# --------------------------------------------------------------------------- summary
def _cell(x: float | None, width: int, scale: float = 1e9, digits: int = 1) -> str:
    return f"{x / scale:{width}.{digits}f}" if x else f"{'-':>{width}}"


def format_summary(profile: dict[str, Any]) -> str:
    """Plain-text, aligned summary of a host profile (``*`` marks noisy points)."""
    cpu, caches, theo = profile["cpu"], profile["caches"], profile["theoretical"]
    run = profile.get("run", {})
    lines = [
        f"host      {cpu.get('brand')}  ({cpu.get('uarch')}, {cpu['cores']} cores, "
        f"ISA path {cpu['isa_path']})",
        f"caches    L1d {caches['l1d_bytes'] >> 10} KiB  L2 {caches['l2_bytes'] >> 10} KiB  "
        f"L3 {caches['l3_bytes'] >> 20} MiB  (per instance, {caches.get('source')})",
        f"clock     {theo['clock_hz'] / 1e9:.2f} GHz (1 thread), "
        f"{theo['clock_hz_all'] / 1e9:.2f} GHz (all threads); dependent-add chain",
        f"profile   fingerprint {profile['fingerprint']}, {profile['created']}, "
        f"{run.get('duration_s', '?')} s, load average {run.get('loadavg_before', '?')} -> "
        f"{run.get('loadavg_after', '?')}",
        "",
        "peaks (G/s)   path         threads    median     IQR    best  theoretical  ratio",
    ]
    for kind, unit in (("fp32", "flops"), ("int8", "ops")):
        for path, table in profile["peaks"].get(kind, {}).items():
            by_path = theo.get("by_path", {}).get(kind, {}).get(path, {})
            for t_key, e in table.items():
                theo_v = by_path.get(t_key, {}).get("peak")
                ratio = by_path.get(t_key, {}).get("ratio")
                mark = "*" if e.get("noisy") else " "
                lines.append(
                    f"  {kind:<11} {path:<12} {t_key:>7}  {_cell(e[f'median_{unit}'], 8)}{mark}"
                    f"{_cell(e[f'iqr_{unit}'], 7)} {_cell(e[f'max_{unit}'], 7)}"
                    f"  {_cell(theo_v, 11)}  {_cell(ratio, 5, 1.0, 2)}")
    lines += ["", "bandwidth (GB/s, plateau per level, best samples)",
              "  kernel  threads        L1        L2        L3      DRAM"]
    for kind in ("read", "triad"):
        for t_key, lv in profile["levels"].get(kind, {}).items():
            vals = "".join(_cell(lv.get(n), 10) for n in LEVEL_NAMES)
            lines.append(f"  {kind:<6}  {t_key:>7}{vals}")
    return "\n".join(lines)
