"""Tuner evaluation: trials each strategy needs to come within 5 % of the exhaustive optimum.

1. Every configuration of each problem's search space is measured once and stored (sweep
   ``tuner-exhaustive``; resumable, reused by later runs of this script).
2. In simulation mode (the sweep replayed, no timing), each strategy runs over 20 seeds;
   we count the distinct configurations it measures until its best is within 5 % of the
   optimum: random search, plain TPE, TPE from the default configuration, model-guided
   search with and without the default configuration (the learned model's top 4, then
   ModelGuide proposals; the model never sees the problem it guides), optionally GP.
   ``--guide`` changes the ModelGuide settings (how docs/tuner.md compares them).
3. ``--real`` (instead of 1-2): real tuning runs of a problem outside the sweeps,
   model-guided (model fitted on every recorded sweep) against plain TPE, seeds 0-2, each
   winner re-timed interleaved against the default configuration; then the problem's
   exhaustive sweep, to place each winner against the optimum.

    python benchmarks/bench_tuner.py                      # all problems, 20 seeds
    python benchmarks/bench_tuner.py --problems 10 --strategies model --seeds 10 \\
        --guide every=2,noise_scale=0.05,kappa=1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_tuner.py --real

Set ``PERFMODEL_HOME`` to keep the sweeps apart from your own store. Steps 1-2 are
``perfmodel tune-eval``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuner import TuneOptions, tune  # noqa: E402
from tuner.evaluate import PROBLEMS, evaluate, format_table  # noqa: E402

#: outside every tune-eval sweep
REAL_PROBLEM = {"m": 384, "n": 192, "k": 768, "sparsity": 0.85}


def _guide_options(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        out[name.strip()] = int(value) if name.strip() == "every" else float(value)
    return out


def real_runs(store: Any, trials: int, seeds: int = 3) -> None:
    """Model-guided vs plain TPE on :data:`REAL_PROBLEM`, timed, then its exhaustive sweep."""
    import tempfile

    from perfmodel.models.learned import LearnedModel
    from perfmodel.store import load_results
    from tuner.simulate import SWEEP, record_sweep, recorded
    from tuner.space import search_space

    rows = load_results(store, sweep=SWEEP)
    seen = (rows["m"] == REAL_PROBLEM["m"]) & (rows["n"] == REAL_PROBLEM["n"]) & \
        (rows["k"] == REAL_PROBLEM["k"]) & (rows["sparsity"].round(6) == REAL_PROBLEM["sparsity"])
    model = LearnedModel().fit(rows[~seen])  # never the problem it guides
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            for name, warm in (("model", True), ("tpe", False)):
                t0 = time.perf_counter()
                r = tune("spmm", n_trials=trials, threads=1, warm_start=warm,
                         storage=f"sqlite:///{tmp}/tuner.db", study_name=f"{name}-{seed}",
                         # an empty store: no warm start from an earlier run's sweep
                         options=TuneOptions(store=f"{tmp}/results.db", seed=seed,
                                             model=model if warm else False,
                                             progress=False, record=False),
                         **REAL_PROBLEM)
                found.append((name, seed, r))
                print(f"{name:5s} seed {seed}: {r.speedup_over_default:.2f}x the default "
                      f"({r.seconds * 1e6:.1f} us vs {r.default_seconds * 1e6:.1f} us), "
                      f"{json.dumps(r.params, sort_keys=True)}, "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
    space = search_space("spmm", threads=1, **REAL_PROBLEM)
    record_sweep(space, store)
    table = recorded(space, store).set_index("config")
    ok = table[table.status == "ok"]
    best = float(ok.median_s.min())
    print(f"exhaustive sweep: {len(table)} configurations, optimum {best * 1e6:.1f} us")
    from tuner.objective import config_key
    for name, seed, r in found:
        t = float(table.loc[config_key(r.kernel, r.params), "median_s"])
        print(f"{name:5s} seed {seed}: winner at {t / best:.3f} of the sweep's optimum")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", default="random,tpe,default+tpe,model-only,model")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--problems", type=int, default=len(PROBLEMS))
    ap.add_argument("--max-evals", type=int, default=400)
    ap.add_argument("--guide", default="", help="ModelGuide settings, e.g. every=2,kappa=1")
    ap.add_argument("--db", help="results store (default: the data folder's results.db)")
    ap.add_argument("--real", action="store_true", help="real runs instead (see above)")
    ap.add_argument("--trials", type=int, default=15, help="evaluations per real run")
    args = ap.parse_args()
    with threadpool_limits(limits=1):  # BLAS baseline single-threaded, like the sweeps
        if args.real:
            real_runs(args.db, args.trials)
            return 0
        t0 = time.perf_counter()
        df = evaluate(PROBLEMS[:args.problems], strategies=args.strategies.split(","),
                      seeds=args.seeds, store=args.db, max_evaluations=args.max_evals,
                      guide=_guide_options(args.guide),
                      progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        print(format_table(df))
        print(f"\n({time.perf_counter() - t0:.0f} s including any sweeps not yet stored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
