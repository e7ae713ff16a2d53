"""The learned model's tree sums, three ways side by side in one process, on the rows of one
``best_config`` query as it was until the thirty-first session (every parameter set the
model file lists for each candidate kernel of spmm 771 x 128 x 3072, or of a conv2d with
``conv2d``; a query now ranks each kernel's defaults only, so these are many rows sharing
a forest, as ``predict`` on a store has): the numpy walk used until commit 6026397, the
C walk over seven node arrays of commit ad24d03, the walk over packed nodes of commit
3a5b3b1, row by row (all read from git history; the C ones built into a temporary folder),
and the current C walk (``kernels_c.forest``: the rows that share a forest go down each
tree together, a split on a feature they share decided once).

Usage::

    PERFMODEL_HOME=STORE_HOME python benchmarks/bench_forest_walk.py [conv2d]

Needs a fitted model in ``STORE_HOME`` (``perfmodel fit``), a git checkout and a C
compiler. Prints medians of 200 interleaved calls per walk, with warm caches and with a
32 MB array summed before each call (as the rest of a query's Python evicts the trees).
The C walks are timed on the C call alone, the numpy one on its ``predict``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from perfmodel.models._problem import normalize
from perfmodel.models.learned import _calls
from perfmodel.query import _candidates, _load_learned, _record

NUMPY_WALK, ARRAYS_WALK, PACKED_WALK = "6026397", "ad24d03", "3a5b3b1"
ROOT = Path(__file__).resolve().parent.parent


def _git_show(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True,
                          cwd=ROOT, check=True).stdout


def _numpy_walk(forests: Mapping[str, Any]) -> Any:
    src = _git_show(NUMPY_WALK, "perfmodel/models/learned.py")
    ns = {"np": np, "Mapping": Mapping, "Any": Any}
    exec(src[src.index("class _ForestSet:"):src.index("class LearnedModel(PerfModel):")], ns)
    return ns["_ForestSet"](forests)


def _c_walk(rev: str, tmp: Path) -> Any:
    """``rev``'s forest_sum built as a stand-alone cffi module in ``tmp / rev``."""
    from cffi import FFI

    tmp = tmp / rev
    tmp.mkdir()
    header = _git_show(rev, "kernels_c/cdef/forest.h")
    (tmp / "forest.h").write_text(header)
    (tmp / "forest.c").write_text(_git_show(rev, "kernels_c/src/forest.c"))
    ffi = FFI()
    ffi.cdef(header)
    name = f"_forest_walk_{rev}"
    ffi.set_source(name, "#include <stdint.h>\n" + header,
                   sources=[str(tmp / "forest.c")], include_dirs=[str(tmp)],
                   extra_compile_args=["-O3", "-std=gnu11", "-fno-math-errno"])
    so = ffi.compile(tmpdir=str(tmp))
    spec = importlib.util.spec_from_file_location(name, so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(op: str = "spmm") -> None:
    m, _ = _load_learned()
    if m is None:
        raise SystemExit("no model file: run perfmodel fit first")
    shape = ({"m": 771, "n": 128, "k": 3072, "sparsity": 0.55} if op == "spmm" else
             {"c": 256, "h": 14, "w": 14, "o": 256, "r": 3, "s": 3, "padding": 1,
              "sparsity": 0.7})
    p = normalize(op, shape)
    choices, dense = _candidates(p)
    configs = m.metadata_.get("configs", {})
    known = set(m.featurizer_.kernels)   # rows as the model predicts them (twins replaced)
    recs = [_calls(_record(k, params, p, 1), known)[0] for k in choices + dense
            for params in configs.get(k) or [{}]]
    f = m.featurizer_
    x = np.ascontiguousarray(np.vstack([np.concatenate([f.base(r)[0],
                                                        f.param_vector(r.get("params"))])
                                        for r in recs]))
    forests = m.forests_
    names = np.array([m._forest_name(str(r["kernel"]), str(r["op"])) for r in recs],
                     dtype=object)
    start = np.array([forests.span[n][0] for n in names], dtype=np.int64)
    count = np.array([forests.span[n][1] for n in names], dtype=np.int64)
    baseline = np.array([forests.baseline[n] for n in names])
    sums = forests._sums
    lib = sums._module.lib
    now_out = np.empty(len(x))
    now_args = sums._c_args(x, start, count, now_out)
    # the same trees as seven arrays, for ad24d03's walk
    parts = {k: np.concatenate([getattr(t, k) for t in forests.forests.values()])
             for k in ("feature", "threshold", "missing_left", "is_leaf", "value")}
    offsets = np.cumsum([0] + [t.feature.size for t in forests.forests.values()])[:-1]
    for k in ("left", "right"):
        parts[k] = np.concatenate([getattr(t, k) + o for t, o in
                                   zip(forests.forests.values(), offsets, strict=True)])
    parts = {k: np.ascontiguousarray(v, dtype=np.uint8 if k in ("missing_left", "is_leaf")
                                     else np.float64 if k in ("threshold", "value")
                                     else np.int64) for k, v in parts.items()}
    old_numpy = _numpy_walk(forests.forests)
    with tempfile.TemporaryDirectory() as tmp:
        arrays, packed = _c_walk(ARRAYS_WALK, Path(tmp)), _c_walk(PACKED_WALK, Path(tmp))
        pffi, packed_out = packed.ffi, np.empty(len(x))
        packed_args = pffi.new("forest_sum_args *", {   # the same layout as now
            "n_rows": x.shape[0], "n_features": x.shape[1], "n_nodes": sums.n_nodes,
            "n_roots": sums.roots.size, "x": pffi.from_buffer("double[]", x),
            "nodes": pffi.from_buffer("forest_node[]", sums._nodes),
            "roots": pffi.from_buffer("int64_t[]", sums.roots),
            "row_start": pffi.from_buffer("int64_t[]", start),
            "row_count": pffi.from_buffer("int64_t[]", count),
            "out": pffi.from_buffer("double[]", packed_out)})
        affi = arrays.ffi
        arrays_out = np.empty(len(x))
        arrays_args = affi.new("forest_sum_args *", {
            "n_rows": x.shape[0], "n_features": x.shape[1], "n_nodes": sums.n_nodes,
            "n_roots": sums.roots.size, "x": affi.from_buffer("double[]", x),
            **{k: affi.from_buffer({np.dtype(np.uint8): "uint8_t[]",
                                    np.dtype(np.float64): "double[]",
                                    np.dtype(np.int64): "int64_t[]"}[v.dtype], v)
               for k, v in parts.items()},
            "roots": affi.from_buffer("int64_t[]", sums.roots),
            "row_start": affi.from_buffer("int64_t[]", start),
            "row_count": affi.from_buffer("int64_t[]", count),
            "out": affi.from_buffer("double[]", arrays_out)})
        walks = {"numpy (6026397)": lambda: old_numpy.predict(x, names),
                 "C, seven arrays (ad24d03)": lambda: arrays.lib.forest_sum(arrays_args),
                 "C, packed nodes (3a5b3b1)": lambda: packed.lib.forest_sum(packed_args),
                 "C, rows together (now)": lambda: lib.forest_sum(now_args)}
        for walk in walks.values():
            walk()
        reference = forests.predict(x, names)
        for label, got in (("numpy", old_numpy.predict(x, names)),
                           ("seven arrays", baseline + arrays_out),
                           ("packed", baseline + packed_out),
                           ("now", baseline + now_out)):
            if not np.allclose(got, reference, rtol=1e-12):
                raise SystemExit(f"the {label} walk disagrees")
        evict = np.ones(4_000_000)
        print(f"{op}: {len(x)} rows, {sorted(set(names))}")
        for flushed in (False, True):
            times: dict[str, list[float]] = {k: [] for k in walks}
            for _ in range(200):  # interleaved: every walk sees the same machine state
                for label, walk in walks.items():
                    if flushed:
                        evict.sum()
                    start_s = time.perf_counter()
                    walk()
                    times[label].append(time.perf_counter() - start_s)
            med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
            now = med["C, rows together (now)"]
            print(f"  {'caches flushed' if flushed else 'warm caches'}: " + ", ".join(
                f"{k} {v:.3f} ms ({v / now:.2f}x now)" for k, v in med.items()))


if __name__ == "__main__":
    main(*sys.argv[1:2])
