"""Context recorded with every measurement: machine fingerprint, versions, load.

The fingerprint comes from the host profile (``perfmodel characterize`` writes it to
:func:`perfmodel._paths.host_profile_path`) when one exists; otherwise it is computed here
from the same ingredients (CPU brand, ISA flags, core count, cache sizes), so a store always
knows which machine a number came from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._paths import host_profile_path

_SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


def utc_now() -> str:
    """ISO 8601 UTC timestamp, seconds resolution."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _size_bytes(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG") or 0) * scale


def cache_sizes() -> dict[str, int]:
    """L1d/L2/L3 sizes in bytes from sysfs (0 where unknown)."""
    sizes = {"l1d_bytes": 0, "l2_bytes": 0, "l3_bytes": 0}
    try:
        for index in sorted(_SYSFS_CACHE.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _size_bytes((index / "size").read_text())
            if level == "1" and kind in ("Data", "Unified"):
                sizes["l1d_bytes"] = size
            elif level in ("2", "3"):
                sizes[f"l{level}_bytes"] = size
    except (OSError, ValueError):
        pass
    return sizes


def _load_profile() -> dict[str, Any] | None:
    path = host_profile_path()
    if not path.is_file():
        return None
    try:
        profile = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return profile if isinstance(profile, dict) and profile.get("fingerprint") else None


@functools.lru_cache(maxsize=4)
def _computed_machine() -> dict[str, Any]:
    import kernels_c

    flags = {k: bool(v) for k, v in sorted(kernels_c.cpu_features().items())}
    brand = kernels_c._isa.cpu_brand()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    caches = cache_sizes()
    basis = json.dumps({"brand": brand, "flags": flags, "cores": cores, "caches": caches},
                       sort_keys=True)
    return {
        "fingerprint": hashlib.sha256(basis.encode()).hexdigest()[:16],
        "cpu": {"brand": brand, "cores": cores, "isa_path": kernels_c.isa(), "flags": flags},
        "caches": caches,
        "source": "computed",
    }


def machine() -> tuple[str, str, dict[str, Any]]:
    """(fingerprint, name, info) of this machine.

    The host profile's fingerprint wins when ``host.json`` exists (so results and the
    profile agree); the name is the host name.
    """
    profile = _load_profile()
    if profile is not None:
        info = {"cpu": profile.get("cpu", {}), "caches": profile.get("caches", {}),
                "source": "host_profile"}
        return str(profile["fingerprint"]), socket.gethostname(), info
    info = dict(_computed_machine())
    fingerprint = info.pop("fingerprint")
    return fingerprint, socket.gethostname(), info


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of Python, the numeric libraries, BLAS and the compiler variant key."""
    import numpy
    import scipy

    out = {"python": platform.python_version(), "numpy": numpy.__version__,
           "scipy": scipy.__version__, "platform": platform.platform()}
    try:
        from importlib.metadata import version

        out["perfmodel-suite"] = version("perfmodel-suite")
    except Exception:  # not installed (running from a checkout)
        out["perfmodel-suite"] = "dev"
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            out[f"{pool.get('internal_api')}"] = str(pool.get("version"))
    except Exception:
        pass
    try:
        from kernels_c._loader import _compiler_version

        out["cc"] = _compiler_version().splitlines()[0]
    except Exception:
        pass
    return out


def loadavg() -> float:
    """1-minute load average (NaN where the OS does not report it)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return float("nan")


__all__ = ["cache_sizes", "loadavg", "machine", "utc_now", "versions"]
