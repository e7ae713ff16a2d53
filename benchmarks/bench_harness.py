"""Benchmarks of the measurement harness and the results store (issue 5 targets).

1. Harness overhead per kernel call on the empty C kernel ``kc_noop``: the per-call sample
   the C loop records (timer + call), and the wall time of a whole ``measure()`` divided by
   the calls it made (everything the harness adds, Python batching included). Target
   <= 2 us. A Python no-op callable is shown for comparison (the peers' timing path).
2. ``perfmodel sweep --preset quick`` end to end in a fresh data folder (process start,
   imports, inputs, references, measuring, storing): target <= 3 min on 2 cores with
   >= 90 % of the points converged.
3. Inserting 100k samples into SQLite: one measurement of 100k samples, and 1000
   measurements of 100 samples each (each its own transaction, as a sweep commits):
   target <= 5 s. With PERFMODEL_TEST_PG_URL set, the same into PostgreSQL.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_harness.py``
(``--skip-quick`` leaves out the sweep).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from perfmodel.harness import TimingConfig, measure, noop_overhead
from perfmodel.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def overhead() -> list[tuple[str, float, str]]:
    noop_overhead(TimingConfig(budget_s=0.05))  # warm up imports and caches
    rows = []
    per_sample, per_call = [], []
    for _ in range(7):
        t, wall = noop_overhead()  # 100k calls each
        per_sample.append(t.median_s)
        per_call.append(wall)
    rows.append(("kc_noop: C-loop sample (median of 7 runs)", np.median(per_sample) * 1e9, "ns"))
    rows.append(("kc_noop: measure() wall / call (100k calls)", np.median(per_call) * 1e9,
                 "ns"))
    py = []
    for _ in range(7):
        t = measure(lambda: None, TimingConfig(budget_s=1.0, min_samples=100_000,
                                               max_samples=100_000))
        py.append((t.median_s, t.wall_s / t.n_samples))
    rows.append(("python no-op: sample", np.median([p[0] for p in py]) * 1e9, "ns"))
    rows.append(("python no-op: measure() wall / call (100k calls)",
                 np.median([p[1] for p in py]) * 1e9, "ns"))
    return rows


def quick_sweep() -> list[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PERFMODEL_HOME": home}
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "perfmodel", "sweep", "--preset", "quick",
                              "--no-progress"], env=env, cwd=ROOT, capture_output=True,
                             text=True, check=True)
        wall = time.perf_counter() - start
        from perfmodel.store import load_results

        df = load_results(Path(home) / "results.db")
    ok = df[df.status == "ok"]
    print(out.stdout.strip())
    return [("quick preset: wall time (fresh process)", wall, "s"),
            ("quick preset: points", len(df), ""),
            ("quick preset: converged fraction of ok points", ok.converged.mean() * 100, "%"),
            ("quick preset: load average at the end", os.getloadavg()[0], "")]


def _insert(url: str) -> list[tuple[str, float, str]]:
    rows = []
    with open_store(url) as st:
        mid = st.machine_id("bench-machine", "bench")
        rid = st.start_run(mid, "bench")
        samples = np.random.default_rng(0).random(100_000)
        start = time.perf_counter()
        st.add_measurement(rid, mid, {"point_key": "one-big", "op": "spmm", "kernel": "k",
                                      "status": "ok"}, samples)
        rows.append(("1 x 100k samples", time.perf_counter() - start, "s"))
        start = time.perf_counter()
        for i in range(1000):
            st.add_measurement(rid, mid, {"point_key": f"p{i}", "op": "spmm", "kernel": "k",
                                          "status": "ok", "median_s": 1e-3},
                               samples[i * 100:(i + 1) * 100])
        rows.append(("1000 x 100 samples (1000 commits)", time.perf_counter() - start, "s"))
    return rows


def store_inserts() -> list[tuple[str, float, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += [(f"SQLite: {n}", v, u) for n, v, u in _insert(str(Path(tmp) / "b.db"))]
    pg = os.environ.get("PERFMODEL_TEST_PG_URL")
    if pg:
        import uuid

        import sqlalchemy

        base = sqlalchemy.engine.make_url(pg)
        name = f"pm_bench_{uuid.uuid4().hex[:8]}"
        admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            url = base.set(database=name).render_as_string(hide_password=False)
            rows += [(f"PostgreSQL: {n}", v, u) for n, v, u in _insert(url)]
        finally:
            with admin.connect() as c:
                c.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
            admin.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-quick", action="store_true", help="skip the quick sweep")
    args = parser.parse_args()
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        rows += overhead()
        rows += store_inserts()
    if not args.skip_quick:
        rows += quick_sweep()
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':{width}s}  value")
    for name, value, unit in rows:
        print(f"{name:{width}s}  {value:10.3f} {unit}")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
