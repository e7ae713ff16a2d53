"""The learned model's tree sums: the numpy walk it used until commit 6026397 (read from
git history) against the C walk (``kernels_c.forest``), side by side in one process, on the
rows of one ``best_config`` query (spmm 771 x 128 x 3072, every candidate configuration).

Usage::

    PERFMODEL_HOME=STORE_HOME python benchmarks/bench_forest_walk.py

Needs a fitted model in ``STORE_HOME`` (``perfmodel fit``) and a git checkout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from perfmodel.models._problem import normalize
from perfmodel.query import _candidates, _load_learned, _record

OLD = "6026397"


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "show", f"{OLD}:perfmodel/models/learned.py"],
                         capture_output=True, text=True, cwd=root, check=True).stdout
    ns = {"np": np, "Mapping": Mapping, "Any": Any}
    exec(src[src.index("class _ForestSet:"):src.index("class LearnedModel(PerfModel):")], ns)
    m, _ = _load_learned()
    if m is None:
        raise SystemExit("no model file: run perfmodel fit first")
    old = ns["_ForestSet"](m.forests_.forests)
    p = normalize("spmm", {"m": 771, "n": 128, "k": 3072, "sparsity": 0.55})
    choices, dense = _candidates(p)
    configs = m.metadata_.get("configs", {})
    recs = [_record(k, params, p, 1) for k in choices + dense
            for params in configs.get(k) or [{}]]
    f = m.featurizer_
    x = np.vstack([np.concatenate([f.base(r)[0], f.param_vector(r.get("params"))])
                   for r in recs])
    names = np.array([f"kernel:{r['kernel']}" if f"kernel:{r['kernel']}" in m.forests_
                      else f"op:{r['op']}" for r in recs], dtype=object)
    if not np.allclose(old.predict(x, names), m.forests_.predict(x, names), rtol=1e-12):
        raise SystemExit("the two walks disagree")
    times: dict[str, list[float]] = {"numpy": [], "C": []}
    for _ in range(200):  # interleaved: both see the same machine state
        for label, forests in (("numpy", old), ("C", m.forests_)):
            start_s = time.perf_counter()
            forests.predict(x, names)
            times[label].append(time.perf_counter() - start_s)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    print(f"{len(x)} rows: numpy walk {med['numpy']:.3f} ms, C {med['C']:.3f} ms "
          f"(medians of 200), {med['numpy'] / med['C']:.1f}x")

if __name__ == "__main__":
    main()
