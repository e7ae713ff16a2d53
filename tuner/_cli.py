"""``perfmodel tune OP ...`` and ``perfmodel tune-eval``.

This module lives in ``tuner`` (data flows kernels_c -> perfmodel -> tuner): the
``perfmodel`` command lists it by name in ``perfmodel.cli.COMMANDS`` and imports it when the
CLI starts, so ``perfmodel`` code never imports ``tuner``.
"""

from __future__ import annotations

import argparse
import math
import sys


def _cmd_tune(args: argparse.Namespace) -> int:
    from .study import TuneOptions, tune

    shape = {"m": args.m, "n": args.n, "k": args.k, "sparsity": args.sparsity}
    options = TuneOptions(store=args.db, seed=args.seed, simulate=args.simulate,
                          progress=not args.quiet, top_k=args.top_k)
    if args.budget is not None:
        from perfmodel.harness import TimingConfig

        options.timing = TimingConfig(budget_s=args.budget, target_rel_ci=0.03)
    result = tune(args.op, n_trials=args.trials, timeout=args.timeout, storage=args.storage,
                  study_name=args.study, sampler=args.sampler,
                  warm_start=not args.no_warm_start, threads=args.threads, options=options,
                  **shape)
    params = " ".join(f"{k}={v}" for k, v in sorted(result.params.items()))
    note = " (interrupted: best so far, not re-timed)" if result.interrupted else ""
    print(f"best{note}: {result.kernel} {params}")
    if not math.isnan(result.default_seconds):
        print(f"  median {result.seconds * 1e6:.2f} us, {result.speedup_over_default:.2f}x "
              f"the default configuration ({result.default_seconds * 1e6:.2f} us)")
    else:
        print(f"  median {result.seconds * 1e6:.2f} us (default configuration not timed)")
    evaluated = sum(1 for t in result.study.trials if t.user_attrs.get("evaluated"))
    print(f"  study {result.study.study_name!r}: {evaluated} configurations evaluated in "
          f"{len(result.study.trials)} trials"
          + ("; recorded in the results store" if result.recorded else ""))
    return 130 if result.interrupted else 0


def _cmd_tune_eval(args: argparse.Namespace) -> int:
    from .evaluate import PROBLEMS, evaluate, format_table

    problems = PROBLEMS[:args.problems] if args.problems else PROBLEMS
    df = evaluate(problems, strategies=args.strategies.split(","), seeds=args.seeds,
                  store=args.db, max_evaluations=args.max_evals,
                  progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(df))
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="find the fastest kernel and parameters for one problem")
    p.add_argument("op", help="op to tune (spmm)")
    p.add_argument("--m", type=int, required=True, help="rows of the sparse matrix A")
    p.add_argument("--n", type=int, required=True, help="columns of the dense matrix B")
    p.add_argument("--k", type=int, required=True, help="columns of A = rows of B")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of zeros in A")
    p.add_argument("--trials", type=int, default=50, help="trials this process runs (50)")
    p.add_argument("--timeout", type=float, help="seconds after which no trial starts")
    p.add_argument("--threads", type=int, help="fix the thread count (default: tuned)")
    p.add_argument("--sampler", default="tpe", choices=("tpe", "random", "gp"))
    p.add_argument("--storage", help="Optuna storage URL (postgresql://... for a fleet; "
                   "default: the SQLite file tuner.db in the data folder)")
    p.add_argument("--study", help="study name (default: derived from op, shape, machine)")
    p.add_argument("--db", help="results store (default: the data folder's results.db)")
    p.add_argument("--seed", type=int, help="sampler seed (default: random)")
    p.add_argument("--top-k", type=int, default=4, help="model predictions to try first (4)")
    p.add_argument("--budget", type=float, help="seconds of timing per trial (0.2)")
    p.add_argument("--no-warm-start", action="store_true",
                   help="do not seed the study from the store and the model")
    p.add_argument("--simulate", action="store_true",
                   help="replay the recorded exhaustive sweep instead of timing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tune)

    e = sub.add_parser("tune-eval", help="compare tuning strategies in simulation mode")
    e.add_argument("--problems", type=int,
                   help="how many built-in problems, first ones first (default: all)")
    e.add_argument("--seeds", type=int, default=20, help="runs per strategy (20)")
    e.add_argument("--strategies", default="random,tpe,default+tpe,model-only,model",
                   help="comma-separated: random, tpe, default+tpe, model-only, model, gp")
    e.add_argument("--max-evals", type=int, default=400,
                   help="give up after this many distinct configurations (400)")
    e.add_argument("--db", help="results store for the exhaustive sweeps")
    e.add_argument("--csv", help="also write the per-strategy rows to this CSV file")
    e.set_defaults(func=_cmd_tune_eval)
