"""CPU feature detection and the choice of ISA path.

Paths, lowest to highest, and the CPUID features each one needs (a path is only taken when
every instruction it uses is present and the OS saves the registers it uses):

- ``portable``: x86-64 baseline C (or any other architecture).
- ``avx2``: AVX2 + FMA (Haswell and later; int8 via vpmaddubsw/vpmaddwd).
- ``avx512``: AVX512F (plus the AVX2 + FMA every AVX-512F CPU has), so Xeon Phi 7250
  (F/CD/ER/PF, no BW/DQ/VL) qualifies. Kernels that need byte instructions fall back to
  their avx2 code at this level, and spmm runs tails of <= 8 columns on 256-bit code.
- ``avx512_vnni``: AVX512F + BW + VL + VNNI (vpdpbusd; Cascade Lake, Ice Lake, Zen 4...).

``KERNELS_C_ISA=<path>`` caps the path (to test lower ones on a bigger machine).
"""

from __future__ import annotations

import functools
import os

from ._loader import load

LEVELS: tuple[str, ...] = ("portable", "avx2", "avx512", "avx512_vnni")
_REQUIRES: dict[str, tuple[str, ...]] = {
    "portable": (),
    "avx2": ("avx2", "fma"),
    "avx512": ("avx512f", "avx2", "fma"),
    "avx512_vnni": ("avx512f", "avx512bw", "avx512vl", "avx512_vnni"),
}
_FLAG_NAMES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512cd", "avx512er",
               "avx512pf", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx_vnni")


@functools.lru_cache(maxsize=1)
def _detect() -> tuple[dict[str, bool], str, str]:
    mod = load("runtime")
    f = mod.ffi.new("kc_cpu_features *")
    mod.lib.kc_detect_cpu(f)
    flags = {n: bool(getattr(f, n)) for n in _FLAG_NAMES}
    vendor = mod.ffi.string(f.vendor).decode(errors="replace")
    brand = mod.ffi.string(f.brand).decode(errors="replace").strip()
    return flags, vendor, brand


def cpu_features() -> dict[str, bool]:
    """CPUID feature flags as seen by this process (OS register support included)."""
    return dict(_detect()[0])


def cpu_brand() -> str:
    """CPUID brand string, e.g. ``'AMD EPYC 9R14 96-Core Processor'`` ('' if unknown)."""
    return _detect()[2]


def supported_levels() -> list[str]:
    """ISA paths this CPU can run, lowest first."""
    return list(_supported())


@functools.lru_cache(maxsize=1)
def _supported() -> tuple[str, ...]:
    # kept: kernel calls and queries resolve their path often (13 us a call recomputed)
    flags = _detect()[0]
    return tuple(lvl for lvl in LEVELS if all(flags[f] for f in _REQUIRES[lvl]))


def isa() -> str:
    """The ISA path kernels use: the highest supported, capped by ``KERNELS_C_ISA``."""
    supported = supported_levels()
    cap = os.environ.get("KERNELS_C_ISA", "").strip()
    if not cap:
        return supported[-1]
    return check_level(cap)


def check_level(level: str) -> str:
    """Validate an explicitly requested path; return it."""
    if level not in LEVELS:
        raise ValueError(f"unknown ISA path {level!r}; valid: {', '.join(LEVELS)}")
    if level not in supported_levels():
        raise ValueError(
            f"ISA path {level!r} is not supported by this CPU ({cpu_brand() or 'unknown'}); "
            f"supported: {', '.join(supported_levels())}"
        )
    return level


def resolve(level: str | None, implemented: tuple[str, ...]) -> tuple[str, int]:
    """Pick the highest path in ``implemented`` at or below ``level`` (default: ``isa()``).

    Returns the path name and its integer id for the C dispatch (``KC_ISA_*``).
    """
    top = isa() if level is None else check_level(level)
    supported = supported_levels()
    for lvl in reversed(LEVELS[: LEVELS.index(top) + 1]):
        if lvl in implemented and lvl in supported:
            return lvl, LEVELS.index(lvl)
    raise ValueError(f"no implemented path at or below {top!r} (have {implemented})")
