"""Report generation time from a store of 10 k measurements (goal: ≤ 10 s).

Builds a synthetic SQLite store (``tests/reports/fixture_store.py`` rows repeated with
thread/parameter variants until there are ``--points`` measurements), a host profile and a
learned model fitted on the store (setup, not timed), then times ``reports.build_report``
end to end — open the store, load every row, calibrate the roofline, predict every row with
both models, draw every figure for ``host`` and the whole catalog, render and write the
HTML — ``--repeat`` times, printing the median, the min and a per-section breakdown.

    python benchmarks/bench_report.py [--points 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="folder for the store/report (default: a temp folder)")
    args = ap.parse_args()
    home = Path(args.keep or tempfile.mkdtemp(prefix="bench-report-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PERFMODEL_HOME"] = str(home)

    from tests.reports.fixture_store import (
        FINGERPRINT,
        fixture_rows,
        make_fixture_store,
        write_host_profile,
    )

    per_repeat = len(fixture_rows(1))
    repeat = max(1, -(-args.points // per_repeat))
    db = home / "results.db"
    t0 = time.perf_counter()
    if not db.exists():
        write_host_profile(home, FINGERPRINT)
        make_fixture_store(db, repeat=repeat)
    from perfmodel.models.learned import LearnedModel
    from perfmodel.store import load_results

    rows = load_results(db)
    if not (home / "model.json").exists():
        LearnedModel(max_iter=200).fit(rows).save(home / "model.json")
    print(f"setup: {len(rows)} measurements, host profile, learned model "
          f"({time.perf_counter() - t0:.1f} s, not timed)")

    from reports import sections as S
    from reports.render import render_html, write_report

    times: list[float] = []
    cpu: list[float] = []     # CPU time: what the wall time would be on an idle machine
    with threadpool_limits(limits=1, user_api="blas"):
        for i in range(args.repeat):
            # a fresh process state would also re-import matplotlib; the first run pays it
            t, c = time.perf_counter(), time.process_time()
            out = write_report(home / "report.html", db)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            print(f"run {i + 1}: {times[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU -> {out} "
                  f"({out.stat().st_size / 1e6:.1f} MB)")
        inputs = S.collect(db)
        parts = []
        for sid, title, fn in S.SECTIONS:
            t = time.perf_counter()
            sec = S._run_guarded(fn, inputs, sid, title)
            parts.append((sid, time.perf_counter() - t, len(sec.figures), sec.status))
        t = time.perf_counter()
        render_html([], inputs)
        inputs.store.close()
    print(f"\n{'section':14s} {'s':>6s} {'figures':>8s}  status")
    for sid, dt, nfig, status in parts:
        print(f"{sid:14s} {dt:6.2f} {nfig:8d}  {status}")
    med = statistics.median(times)
    print(f"\nreport from {len(rows)} measurements, {len(S.SECTIONS)} sections, targets: "
          f"all: median {med:.2f} s wall ({statistics.median(cpu):.2f} s CPU), min "
          f"{min(times):.2f} s over {len(times)} runs; load average {os.getloadavg()[0]:.1f} "
          f"(goal <= 10 s: {'met' if med <= 10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
