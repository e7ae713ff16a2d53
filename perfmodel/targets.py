"""Target catalog: machine descriptions loaded from YAML into frozen dataclasses.

Shipped descriptions live in ``perfmodel/machines/*.yaml``; users add their own by dropping a
file into ``data_dir()/machines/`` (a user file with a shipped name replaces the shipped one).
``host`` is built from the host profile written by ``perfmodel characterize``
(``host_profile_path()``); without one, from what the OS reports, with every guessed number
marked ``assumed``.

File format (``schema_version: 1``)::

    name: xeon-8470                      # must equal the file name without .yaml
    title: ...; device: cpu | gpu; isa: avx512_vnni | avx2 | ...
    sockets|cores|clock: {value: 2.0 GHz, kind: spec, source: "..."}
    compute: {fp32: {...FLOP/s}, int8: {...OP/s}, ...}   # fp32 required
    memory:                                              # closest level first
      - {name: L1, size: {...B}, bandwidth: {...B/s}}    # size = total over the machine
    model: {dense_efficiency, sparse_alpha, sparse_beta} # roofline defaults
    notes: text

Every number is ``{value, kind, source}`` with ``kind`` one of ``spec`` (datasheet),
``measured``, ``derived`` (computed from other figures, the derivation in ``source``) or
``assumed`` (no sourced figure exists; the reason is in ``source``).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ._paths import data_dir, host_profile_path
from ._units import parse_quantity

__all__ = ["MemoryLevel", "Quantity", "Target", "list_targets", "load_target"]

SCHEMA_VERSIONS = (1,)
KINDS = ("spec", "measured", "derived", "assumed")
CATALOG_DIR = Path(__file__).resolve().parent / "machines"
_UNITS = {"clock": "Hz", "size": "B", "bandwidth": "B/s"}
_MODEL_KEYS = ("dense_efficiency", "sparse_alpha", "sparse_beta")


@dataclass(frozen=True)
class Quantity:
    """One number of a description: ``value`` in base units (``unit``), with provenance."""

    value: float
    unit: str
    kind: str
    source: str

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class MemoryLevel:
    """A cache or memory level; ``size`` is the total over the machine (None: unbounded)."""

    name: str
    size: Quantity | None
    bandwidth: Quantity | None
    extra: Mapping[str, Quantity] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def size_bytes(self) -> float:
        return float("inf") if self.size is None else self.size.value


@dataclass(frozen=True)
class Target:
    """A machine description (see the module docstring for the file format)."""

    name: str
    title: str
    device: str
    isa: str
    sockets: Quantity
    cores: Quantity
    clock: Quantity | None
    compute: Mapping[str, Quantity]
    memory: tuple[MemoryLevel, ...]
    model: Mapping[str, Quantity]
    notes: str = ""
    path: str = ""
    origin: str = "catalog"      # catalog | user | host-profile | host-fallback

    def peak(self, dtype: str = "fp32") -> Quantity:
        """Attainable dense ceiling for ``dtype`` (``fp32``, ``int8``, ``int4``).

        int4 has no ceiling of its own in any description: the suite's int4 kernels unpack to
        int8, so int4 falls back to int8, and int8 to fp32 where a machine lists none.
        """
        for key in {"int4": ("int4", "int8", "fp32"), "int8": ("int8", "fp32")}.get(
                dtype, (dtype,)):
            if key in self.compute:
                return self.compute[key]
        raise ValueError(f"target {self.name!r} has no {dtype!r} ceiling; it lists "
                         f"{sorted(self.compute)}")

    def bandwidth_levels(self) -> tuple[MemoryLevel, ...]:
        """Levels with a bandwidth figure, closest first (the roofline's sloped ceilings)."""
        return tuple(lv for lv in self.memory if lv.bandwidth is not None)

    def main_memory(self) -> MemoryLevel:
        return self.bandwidth_levels()[-1]

    def describe(self) -> dict[str, Any]:
        """Plain-dict view (base units) for printing and machine features."""
        return {
            "name": self.name, "title": self.title, "device": self.device, "isa": self.isa,
            "origin": self.origin, "cores": self.cores.value,
            "compute": {k: q.value for k, q in self.compute.items()},
            "memory": [{"name": lv.name, "size_bytes": lv.size_bytes,
                        "bandwidth": None if lv.bandwidth is None else lv.bandwidth.value}
                       for lv in self.memory],
            "model": {k: q.value for k, q in self.model.items()},
        }


def _quantity(entry: Any, where: str, expect: str | None) -> Quantity:
    if not isinstance(entry, Mapping) or set(entry) != {"value", "kind", "source"}:
        raise ValueError(f"{where}: expected {{value, kind, source}}, got {entry!r}")
    if entry["kind"] not in KINDS:
        raise ValueError(f"{where}: kind {entry['kind']!r} invalid; valid: {KINDS}")
    if not str(entry["source"]).strip():
        raise ValueError(f"{where}: empty source; every number needs one")
    try:
        value, unit = parse_quantity(entry["value"], expect)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not value > 0:
        raise ValueError(f"{where}: value must be > 0, got {entry['value']!r}")
    return Quantity(value, unit, str(entry["kind"]), str(entry["source"]))


def parse_target(doc: Mapping[str, Any], *, path: str = "", origin: str = "catalog") -> Target:
    """Build a :class:`Target` from a parsed YAML mapping (validates everything)."""
    where = path or "<target>"
    if not isinstance(doc, Mapping):
        raise ValueError(f"{where}: expected a mapping at top level")
    version = doc.get("schema_version")
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"{where}: schema_version {version!r} not supported; this version of "
                         f"perfmodel reads {SCHEMA_VERSIONS}")
    required = ("name", "title", "device", "isa", "sockets", "cores", "compute", "memory",
                "model")
    missing = [k for k in required if k not in doc]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    known = {*required, "schema_version", "clock", "notes"}
    if set(doc) - known:
        raise ValueError(f"{where}: unknown keys {sorted(set(doc) - known)}; valid: "
                         f"{sorted(known)}")
    name = str(doc["name"])
    compute = {}
    for key, entry in dict(doc["compute"]).items():
        q = _quantity(entry, f"{where}: compute.{key}", None)
        if q.unit not in ("FLOP/s", "OP/s"):
            raise ValueError(f"{where}: compute.{key} must be in FLOP/s or OP/s, got {q.unit}")
        compute[str(key)] = q
    if "fp32" not in compute:
        raise ValueError(f"{where}: compute.fp32 is required")
    levels = []
    for i, entry in enumerate(doc["memory"]):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ValueError(f"{where}: memory[{i}] needs a name")
        lname = str(entry["name"])
        extra = {}
        for key, val in entry.items():
            if key in ("name", "size", "bandwidth"):
                continue
            extra[str(key)] = _quantity(val, f"{where}: memory.{lname}.{key}", None)
        levels.append(MemoryLevel(
            lname,
            _quantity(entry["size"], f"{where}: memory.{lname}.size", "B")
            if "size" in entry else None,
            _quantity(entry["bandwidth"], f"{where}: memory.{lname}.bandwidth", "B/s")
            if "bandwidth" in entry else None,
            MappingProxyType(extra)))
    if not any(lv.bandwidth is not None for lv in levels):
        raise ValueError(f"{where}: at least one memory level needs a bandwidth")
    model = {str(k): _quantity(v, f"{where}: model.{k}", "") for k, v in
             dict(doc["model"]).items()}
    missing = [k for k in _MODEL_KEYS if k not in model]
    if missing:
        raise ValueError(f"{where}: model lacks {missing}")
    return Target(
        name=name, title=str(doc["title"]), device=str(doc["device"]), isa=str(doc["isa"]),
        sockets=_quantity(doc["sockets"], f"{where}: sockets", ""),
        cores=_quantity(doc["cores"], f"{where}: cores", ""),
        clock=_quantity(doc["clock"], f"{where}: clock", "Hz") if "clock" in doc else None,
        compute=MappingProxyType(compute), memory=tuple(levels),
        model=MappingProxyType(model), notes=str(doc.get("notes", "")).strip(),
        path=path, origin=origin)


def load_target_file(path: str | os.PathLike, origin: str = "user") -> Target:
    """Load one description file; its ``name`` must equal the file name."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    target = parse_target(doc, path=str(path), origin=origin)
    if target.name != path.stem:
        raise ValueError(f"{path}: name {target.name!r} differs from the file name "
                         f"{path.stem!r}; rename one")
    return target


def _files() -> dict[str, tuple[Path, str]]:
    found = {p.stem: (p, "catalog") for p in sorted(CATALOG_DIR.glob("*.yaml"))}
    user_dir = data_dir() / "machines"
    if user_dir.is_dir():
        found.update({p.stem: (p, "user") for p in sorted(user_dir.glob("*.yaml"))})
    return found


def list_targets() -> list[str]:
    """Names of every loadable target: ``host`` first, then catalog and user files."""
    return ["host", *sorted(n for n in _files() if n != "host")]


# ---- host ---------------------------------------------------------------------------------

def _load_profile() -> tuple[dict | None, str]:
    path = host_profile_path()
    try:
        from . import characterize  # written by the characterize helper (issue 2)
        loader = getattr(characterize, "load_host_profile", None)
    except ImportError:
        loader = None
    if not path.exists():
        return None, str(path)
    if loader is not None:
        return loader(path), str(path)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh), str(path)


def _thread_key(key: str) -> int:
    return int(key) if str(key).isdigit() else 10**6


def _best_up_to(table: Mapping[str, Any], threads: int | None, field: str | None
                ) -> tuple[str, Any]:
    """(key, value) of the best measurement with at most ``threads`` threads.

    A machine running more threads can always leave some idle, so the ceiling for n threads
    is the best one measured with n or fewer; this also guards against an all-core run that
    a busy machine spoiled.
    """
    keys = sorted(table, key=_thread_key)
    if threads is not None:
        keys = [k for k in keys if _thread_key(k) <= threads] or keys[:1]

    def value(k: str) -> float:
        entry = table[k]
        if field is None:
            return float(entry or 0.0)
        return float(entry.get(field) or entry.get(field.replace("flops", "ops")) or 0.0)

    best = max(keys, key=value)
    return best, value(best)


def _cache_sizes_from_os() -> dict[str, float]:
    sizes: dict[str, float] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for idx in sorted(base.glob("index*")):
        try:
            level = (idx / "level").read_text().strip()
            ctype = (idx / "type").read_text().strip()
            size = parse_quantity((idx / "size").read_text().strip().replace("K", " KiB")
                                  .replace("M", " MiB"))[0]
            shared = (idx / "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        if ctype == "Instruction":
            continue
        n_shared = sum(len(range(int(a), int(b) + 1)) if "-" in part else 1
                       for part in shared.split(",")
                       for a, _, b in [part.partition("-")])
        cpus = os.cpu_count() or 1
        sizes[f"L{level}"] = size * max(1, cpus // max(1, n_shared))
    return sizes


def _host_from_profile(profile: dict, path: str, threads: int | None) -> dict:
    src = f"host profile {path} (perfmodel characterize, {profile.get('created', '?')})"
    cpu = profile.get("cpu", {})
    isa = str(cpu.get("isa_path", "portable"))
    cores = int(cpu.get("cores", os.cpu_count() or 1))
    compute = {}
    for dtype in ("fp32", "int8"):
        paths = profile.get("peaks", {}).get(dtype, {})
        name = isa if isa in paths else (next(iter(paths)) if paths else None)
        if name is None:
            continue
        key, value = _best_up_to(paths[name], threads, "median_flops")
        if value > 0:
            compute[dtype] = {"value": value, "kind": "measured",
                              "source": f"{src}: peaks.{dtype}.{name}[{key} threads] median"}
    theo = profile.get("theoretical", {})
    if "fp32" not in compute:
        per_cycle = theo.get("fp32_flops_per_cycle")
        clock = theo.get("clock_hz")
        n = threads or cores
        if per_cycle and clock:
            compute["fp32"] = {"value": float(per_cycle) * float(clock) * n, "kind": "derived",
                               "source": f"{src}: theoretical clock x FLOP/cycle x {n}"}
    caches = profile.get("caches", {})
    levels = profile.get("levels", {})
    kind = "triad" if levels.get("triad") else "read"
    table = levels.get(kind) or {}
    memory = []
    for lv in ("L1", "L2", "L3", "DRAM"):
        entry: dict[str, Any] = {"name": lv}
        stem = "l1d" if lv == "L1" else lv.lower()
        size = caches.get(f"{stem}_bytes")
        if size and lv != "DRAM":
            # the profile lists one instance and how many CPUs share it
            shared = max(int(caches.get(f"{stem}_shared_cpus") or
                             (1 if lv in ("L1", "L2") else cores)), 1)
            count = max(cores // shared, 1)
            entry["size"] = {"value": float(size) * count, "kind": "measured",
                             "source": f"{src}: caches ({lv} x {count})"}
        if table:
            per_level = {k: (v or {}).get(lv, 0.0) for k, v in table.items()}
            key, bw = _best_up_to(per_level, threads, None)
            if bw > 0:
                entry["bandwidth"] = {"value": bw, "kind": "measured",
                                      "source": f"{src}: levels.{kind}[{key} threads].{lv}"}
        if len(entry) > 1 or lv == "DRAM":
            memory.append(entry)
    return {"isa": isa, "cores": cores, "compute": compute, "memory": memory, "source": src,
            "clock": theo.get("clock_hz")}


def _host_fallback(threads: int | None) -> dict:
    try:
        import kernels_c  # the kernels' own ISA detection
        isa = kernels_c.isa()
    except Exception:  # no built kernels: still describe the host
        isa = "portable"
    cores = os.cpu_count() or 1
    n = threads or cores
    src = "no host profile: run `perfmodel characterize`"
    per_cycle = {"avx512_vnni": 32, "avx512": 32, "avx2": 32}.get(isa, 8)
    clock = 2.5e9
    memory: list[dict[str, Any]] = []
    for lv, size in _cache_sizes_from_os().items():
        memory.append({"name": lv, "size": {"value": size, "kind": "measured",
                                             "source": "/sys/devices/system/cpu/cpu0/cache"}})
    memory.append({"name": "DRAM", "bandwidth": {
        "value": 10e9 * min(n, 4), "kind": "assumed",
        "source": f"{src}; 10 GB/s per thread up to 4 threads"}})
    compute = {"fp32": {"value": per_cycle * clock * n, "kind": "assumed",
                        "source": f"{src}; {per_cycle} FLOP/cycle ({isa}) x 2.5 GHz x {n}"},
               "int8": {"value": per_cycle * clock * n * (4 if "vnni" in isa else 2),
                        "kind": "assumed",
                        "source": f"{src}; int8 at {4 if 'vnni' in isa else 2}x fp32"}}
    return {"isa": isa, "cores": cores, "compute": compute, "memory": memory, "source": src,
            "clock": None}


def _build_host(threads: int | None) -> Target:
    profile, path = _load_profile()
    info = _host_from_profile(profile, path, threads) if profile else None
    if info is None or "fp32" not in info["compute"] or not any(
            "bandwidth" in m for m in info["memory"]):
        info, origin = _host_fallback(threads), "host-fallback"
    else:
        origin = "host-profile"
    src = info["source"]
    doc = {
        "schema_version": 1, "name": "host", "device": "cpu", "isa": info["isa"],
        "title": f"this machine ({info['isa']}, {info['cores']} cores"
                 f"{'' if threads is None else f', {threads} threads'})",
        "sockets": {"value": 1, "kind": "assumed", "source": src},
        "cores": {"value": info["cores"], "kind": "measured", "source": "os.cpu_count()"},
        "compute": {k: {**v, "value": float(v["value"])} for k, v in info["compute"].items()},
        "memory": info["memory"],
        "model": {
            "dense_efficiency": {"value": 0.85, "kind": "assumed", "source":
                                 "until calibrated from the store: OpenBLAS at 85% of the "
                                 "fp32 peak (peers.md)"},
            "sparse_alpha": {"value": 2.5, "kind": "derived", "source":
                             "until calibrated from the store: CSR crossover ~0.6 (peers.md)"},
            "sparse_beta": {"value": 2.0, "kind": "derived", "source":
                            "fp32 value + int32 index per nonzero vs 4 B per dense weight"}},
        "notes": src if origin == "host-fallback" else "",
    }
    return parse_target(_unitize(doc), path=path, origin=origin)


def _unitize(doc: dict) -> dict:
    """Attach base-unit suffixes to host numbers so ``parse_target`` checks units as usual."""
    for key, entry in doc["compute"].items():
        unit = "OP/s" if key.startswith("int") else "FLOP/s"
        entry["value"] = f"{entry['value']!r} {unit}"
    for level in doc["memory"]:
        if "size" in level:
            level["size"]["value"] = f"{float(level['size']['value'])!r} B"
        if "bandwidth" in level:
            level["bandwidth"]["value"] = f"{float(level['bandwidth']['value'])!r} B/s"
    return doc


@functools.lru_cache(maxsize=64)
def _load_cached(name: str, threads: int | None, stamp: tuple) -> Target:
    if name == "host":
        return _build_host(threads)
    files = _files()
    return load_target_file(files[name][0], origin=files[name][1])


def _stamp(name: str) -> tuple:
    """Cache key part that changes when the file behind ``name`` changes."""
    path = host_profile_path() if name == "host" else _files()[name][0]
    try:
        st = path.stat()
        return (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return (str(path), None, None)


def load_target(name: str = "host", *, threads: int | None = None) -> Target:
    """Load a target by name (cached until its file changes).

    Parameters
    ----------
    name : str
        ``"host"``, a catalog name (``perfmodel targets`` lists them) or the name of a file
        in ``data_dir()/machines/``.
    threads : int, optional
        Only for ``host``: the measured ceilings for this thread count (default: all cores).
    """
    if not isinstance(name, str):
        raise TypeError(f"target must be a str, got {type(name).__name__}")
    if name != "host" and name not in _files():
        raise ValueError(f"unknown target {name!r}; valid: {list_targets()} (add your own as "
                         f"{data_dir() / 'machines' / (name + '.yaml')})")
    return _load_cached(name, threads if name == "host" else None, _stamp(name))
