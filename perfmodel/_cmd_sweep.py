"""``perfmodel sweep | import | export``: measure into a store, merge stores, export results."""

from __future__ import annotations

import argparse
import sys


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ._sweep import load_spec, sweep

    if args.spec and args.preset:
        raise ValueError("give either a SPEC file or --preset, not both")
    spec = load_spec(args.spec or args.preset or "quick")
    print(f"sweep {spec.name!r}: {len(spec.points)} points (budget {spec.timing.budget_s:g} s "
          f"each, target +-{spec.timing.target_rel_ci:.0%} CI of the median)",
          file=sys.stderr)
    try:
        summary = sweep(spec, args.db, remeasure=args.remeasure,
                        progress=not args.no_progress, limit=args.limit,
                        recheck=args.recheck, passes=args.passes)
    except KeyboardInterrupt:
        print("interrupted: every finished point is stored; rerun the same command to "
              "resume", file=sys.stderr)
        return 130
    print(summary)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from .store import open_store

    total = 0
    with open_store(args.db) as st:
        for path in args.other:
            with open_store(path, create=False, readonly=True) as other:
                counts = st.merge_from(other)
            total += counts["measurements"]
            print(f"{path}: {counts['measurements']} measurements added, "
                  f"{counts['skipped']} already present, {counts['tuned']} tuned configs "
                  f"updated")
        print(f"{total} measurements added to {st.url}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .store import open_store

    with open_store(args.db, create=False) as st:
        path = st.export(args.output, sweep=args.sweep, op=args.op)
        print(f"wrote {len(st.results(sweep=args.sweep, op=args.op))} rows to {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    db_help = ("results store: a file path (SQLite) or an SQLAlchemy URL such as "
               "postgresql://user@host/db (default: $PERFMODEL_HOME/results.db)")
    p = sub.add_parser("sweep", help="measure kernels over shapes, sparsities and parameters",
                       description="Measure the points of a sweep spec into the store; points "
                                   "already measured on this machine are skipped, so an "
                                   "interrupted sweep resumes where it stopped.")
    p.add_argument("spec", nargs="?", help="sweep spec file (TOML or YAML)")
    p.add_argument("--preset", choices=("quick", "standard", "full"),
                   help="built-in spec (default: quick)")
    p.add_argument("--db", help=db_help)
    p.add_argument("--remeasure", action="store_true",
                   help="measure points already in the store again (replacing them)")
    p.add_argument("--limit", type=int, help="measure at most this many points this time")
    p.add_argument("--recheck", action="store_true",
                   help="then measure again the points slower than the same kernel at the "
                        "next lower sparsity (>10 %%) and keep the faster median")
    p.add_argument("--passes", type=int,
                   help="measure every point this many times, in passes over the whole "
                        "spec, and keep the fastest median (default: the spec's passes, 1); "
                        "for machines shared with other load")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("import", help="merge other stores into this one (no duplicates)")
    p.add_argument("other", nargs="+", help="store file(s) or URL(s) to merge from")
    p.add_argument("--db", help=db_help)
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("export", help="write results to CSV (or Parquet with pyarrow)")
    p.add_argument("output", help="output file: .csv or .parquet")
    p.add_argument("--db", help=db_help)
    p.add_argument("--sweep", help="only this sweep's points")
    p.add_argument("--op", help="only this op's points")
    p.set_defaults(func=_cmd_export)
