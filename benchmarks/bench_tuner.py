"""Tuner evaluation: trials each strategy needs to come within 5 % of the exhaustive optimum.

1. Every configuration of each problem's search space is measured once and stored (sweep
   ``tuner-exhaustive``; resumable, reused by later runs of this script).
2. In simulation mode (the sweep replayed, no timing), each strategy runs over 20 seeds;
   we count the distinct configurations it measures until its best is within 5 % of the
   optimum: random search, plain TPE, TPE from the default configuration, model-guided
   TPE with and without the default configuration (learned model's top 8 + surrogate
   proposals; the model never sees the problem it guides), optionally GP.
3. ``--real``: one real tuning run of the first problem (model-guided TPE, 30 trials), its
   winner re-timed interleaved against the default configuration.

    python benchmarks/bench_tuner.py                      # all four problems, 20 seeds
    python benchmarks/bench_tuner.py --strategies random,tpe,model,gp --seeds 5
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_tuner.py --real

Set ``PERFMODEL_HOME`` to keep the sweeps apart from your own store. Same as
``perfmodel tune-eval``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner import TuneOptions, tune  # noqa: E402
from tuner.evaluate import PROBLEMS, evaluate, format_table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", default="random,tpe,default+tpe,model-only,model")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--problems", type=int, default=len(PROBLEMS))
    ap.add_argument("--max-evals", type=int, default=400)
    ap.add_argument("--db", help="results store (default: the data folder's results.db)")
    ap.add_argument("--real", action="store_true", help="also one real tuning run")
    args = ap.parse_args()
    with threadpool_limits(limits=1):  # BLAS baseline single-threaded, like the sweeps
        t0 = time.perf_counter()
        df = evaluate(PROBLEMS[:args.problems], strategies=args.strategies.split(","),
                      seeds=args.seeds, store=args.db, max_evaluations=args.max_evals,
                      progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        print(format_table(df))
        print(f"\n({time.perf_counter() - t0:.0f} s including any sweeps not yet stored)")
        if args.real:
            p = PROBLEMS[0]
            t0 = time.perf_counter()
            r = tune("spmm", n_trials=30, threads=1, options=TuneOptions(store=args.db,
                                                                          record=False), **p)
            print(f"\nreal run {p}: {r.kernel} {r.params}\n  {r.seconds * 1e6:.1f} us, "
                  f"{r.speedup_over_default:.2f}x the default ({r.default_seconds * 1e6:.1f} us)"
                  f", {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
