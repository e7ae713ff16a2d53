"""``perfmodel targets | fit | evaluate | best | advise``: the model-side commands."""

from __future__ import annotations

import argparse
import math
from typing import Any


def _fmt_rate(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= scale:
            return f"{value / scale:,.4g} {prefix}{unit}"
    return f"{value:,.4g} {unit}"


def _cmd_targets(args: argparse.Namespace) -> int:
    from .targets import list_targets, load_target

    names = [args.name] if args.name else list_targets()
    for name in names:
        t = load_target(name)
        fp32, dram = t.peak("fp32"), t.main_memory()
        print(f"{t.name:16s} {t.device:4s} {t.isa:12s} fp32 {_fmt_rate(fp32.value, 'FLOP/s')}"
              f" ({fp32.kind}), {dram.name} {_fmt_rate(dram.bandwidth.value, 'B/s')} "
              f"({dram.bandwidth.kind})  [{t.origin}]")
        if args.verbose or args.name:
            print(f"  {t.title}")
            for key in ("sockets", "cores", "clock"):
                q = getattr(t, key)
                if q is not None:
                    print(f"  {key:18s} {q.value:,.4g} {q.unit:7s} {q.kind:8s} {q.source}")
            for key, q in t.compute.items():
                print(f"  {key:18s} {_fmt_rate(q.value, q.unit):18s} {q.kind:8s} {q.source}")
            for lv in t.memory:
                if lv.size is not None:
                    print(f"  {lv.name + ' size':18s} {lv.size.value / 2**20:,.4g} MiB"
                          f"{'':8s} {lv.size.kind:8s} {lv.size.source}")
                for key, q in (("bandwidth", lv.bandwidth), *lv.extra.items()):
                    if q is not None:
                        print(f"  {lv.name + ' ' + key:18s} {_fmt_rate(q.value, q.unit):18s} "
                              f"{q.kind:8s} {q.source}")
            for key, q in t.model.items():
                print(f"  {key:18s} {q.value:<18.4g} {q.kind:8s} {q.source}")
            if t.notes:
                print(f"  notes: {t.notes}")
    return 0


#: options a shape argument might be mistaken for
_OPTIONS = {"threads": "--threads N", "target": "--target NAME", "store": "--db STORE",
            "db": "--db STORE"}


def _parse_shape(items: list[str]) -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"shape arguments are key=value (e.g. m=1024 sparsity=0.9), got "
                             f"{item!r}")
        if key in _OPTIONS:
            raise ValueError(f"{key} is not part of the shape: use {_OPTIONS[key]}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {value!r}") from None
        shape[key] = int(number) if number.is_integer() and key != "sparsity" else number
    return shape


def _probe_sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"a sparsity in [0, 1), got {text!r}")
    return value


def _probe_arguments(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--probe", type=_probe_sparsity, nargs="?", const=0.5, metavar="SPARSITY",
                   help=f"first measure {what} once at SPARSITY (default 0.5: the dense "
                        f"baseline and the sparse kernel) into the store; answers for it at "
                        f"every sparsity are then corrected by that (spmm, gemm, conv2d on "
                        f"the host)")
    p.add_argument("--passes", type=int, default=1,
                   help="with --probe: measure this many times, keep the fastest")


def _host_rows(db: str | None, all_machines: bool):
    from .store import load_results

    if all_machines:
        return load_results(db)
    from ._context import machine
    return load_results(db, fingerprint=machine()[0])


def _cmd_fit(args: argparse.Namespace) -> int:
    from ._paths import model_path
    from .models.learned import fit_and_save

    rows = _host_rows(args.db, args.all_machines)
    out = args.output or model_path()
    hyper = {} if args.max_iter is None else {"max_iter": args.max_iter}
    model = fit_and_save(rows, out, cv_folds=args.cv_folds, **hyper)
    print(f"fitted the learned model on {model.n_train_} measurements "
          f"({len(model.featurizer_.kernels)} kernels, {len(model.featurizer_.names)} "
          f"features); uncertainty ±{math.expm1(model.log_uncertainty_):.0%}; "
          f"saved to {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from .models._evaluate import SPLITS, evaluate, format_details, format_report, report_json
    from .models.learned import LearnedModel
    from .models.roofline import RooflineModel

    rows = _host_rows(args.db, args.all_machines)
    if args.threads:
        rows = rows[rows["threads"].isin(args.threads)].reset_index(drop=True)
    hyper = {} if args.max_iter is None else {"max_iter": args.max_iter}
    makers = {"learned": lambda: LearnedModel(**hyper),
              "roofline": lambda: RooflineModel()}
    names = list(makers) if args.model == "all" else [args.model]
    splits = tuple(args.split) if args.split else SPLITS
    full, kept = {}, []
    for name in names:
        predictions: dict[str, pd.DataFrame] = {}
        report = evaluate(makers[name], rows, splits=splits, n_folds=args.folds,
                          predictions=predictions, probe=args.probe)
        full[name] = report
        kept += [df.assign(model=name, split=split) for split, df in predictions.items()]
        print(format_report(report, name))
        if args.details:
            print(format_details(report, name))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(report_json(full))
    if args.predictions:
        pd.concat(kept, ignore_index=True).to_csv(args.predictions, index=False)
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    from .query import best_config

    shape = _parse_shape(args.shape)
    if args.probe is not None:
        from .probe import probe

        if args.target != "host":
            raise ValueError(f"--probe measures this machine; it does not apply to target "
                             f"{args.target!r}")
        summary = probe(args.op, threads=args.threads, sparsity=args.probe, store=args.db,
                        passes=args.passes,
                        **{k: v for k, v in shape.items() if k != "sparsity"})
        print(f"probe at sparsity {args.probe:g}: {summary}")
    print(best_config(args.op, target=args.target, threads=args.threads, store=args.db,
                      **shape))
    from .models._problem import SPARSE_OPS

    if args.op in SPARSE_OPS:
        from .query import break_even

        found = break_even(args.op, target=args.target, threads=args.threads, store=args.db,
                           **shape)
        print("  sparse does not beat dense up to sparsity 0.98" if found is None else
              f"  sparse beats dense from sparsity {found:.2f} (break_even)")
    return 0


def _cmd_advise(args: argparse.Namespace) -> int:
    from .advise import advise, format_advice

    if not 0.0 <= args.sparsity < 1.0:
        raise ValueError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    rows = advise(args.network, target=args.target, sparsity=args.sparsity, store=args.db,
                  threads=args.threads, probe=args.probe, passes=args.passes)
    print(f"guided pruning for {args.network} on {args.target} (Park et al., ICLR 2017): "
          f"prune each layer into its sweet spot; speedups over dense at sparsity "
          f"{args.sparsity:.2f}")
    print(format_advice(rows, args.sparsity))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list the machine descriptions (catalog, user, host)")
    p.add_argument("name", nargs="?", help="show every number of one target with its source")
    p.add_argument("-v", "--verbose", action="store_true", help="details for every target")
    p.set_defaults(func=_cmd_targets)

    p = sub.add_parser("fit", help="train the learned model on this machine's measurements")
    p.add_argument("--db", help="results store (path or URL; default: the default store)")
    p.add_argument("-o", "--output", help="model file (default: $PERFMODEL_HOME/model.json)")
    p.add_argument("--max-iter", type=int, default=None,
                   help="boosting iterations (default: the model's; see perfmodel.models."
                        "LearnedModel)")
    p.add_argument("--cv-folds", type=int, default=3,
                   help="leave-shape-out folds for the uncertainty estimate (0: in-sample)")
    p.add_argument("--all-machines", action="store_true",
                   help="train on every machine in the store, not only this one")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("evaluate", help="held-out accuracy of the models (MAPE, Kendall tau, "
                                        "regret, crossover error)")
    p.add_argument("--db", help="results store (path or URL; default: the default store)")
    p.add_argument("--model", choices=("learned", "roofline", "all"), default="all")
    p.add_argument("--split", action="append",
                   choices=("random", "leave-shape-out", "leave-sparsity-out"),
                   help="repeatable; default: all three")
    p.add_argument("--folds", type=int, default=5,
                   help="folds per split (default 5); 0: one per shape or sparsity level "
                        "(leave-one-out, grouped splits only)")
    p.add_argument("--max-iter", type=int, default=None,
                   help="boosting iterations (default: the model's; see perfmodel.models."
                        "LearnedModel)")
    p.add_argument("--threads", type=int, action="append",
                   help="only rows measured with this many threads (repeatable)")
    p.add_argument("--json", help="also write the metrics as JSON to this file (with "
                                  "every crossover and the largest regrets)")
    p.add_argument("--predictions", metavar="CSV",
                   help="also write every scored row with its held-out prediction "
                        "(predicted_s, model, split columns) to this CSV")
    p.add_argument("--details", action="store_true",
                   help="also print the crossovers predicted more than 0.05 off and the "
                        "problems with the largest regrets")
    p.add_argument("--probe", type=_probe_sparsity, metavar="SPARSITY",
                   help="also score leave-shape-out as if every held-out shape had been "
                        "probed: its dense baselines and sparse kernels at the sparsity "
                        "nearest this one measured, the model's predictions for the shape "
                        "corrected by them (what perfmodel best does with a store that has "
                        "the shape)")
    p.add_argument("--all-machines", action="store_true")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("best", help="best kernel and parameters for a problem",
                       description="e.g. perfmodel best spmm m=1024 n=256 k=1024 sparsity=0.9")
    p.add_argument("op", help="spmm | gemm | conv2d | qgemm")
    p.add_argument("shape", nargs="+", help="key=value: m n k sparsity | c h w o r s stride "
                                            "padding batch sparsity | m n k bits")
    p.add_argument("--target", default="host")
    p.add_argument("--threads", type=int)
    p.add_argument("--db", help="results store (path or URL; default: the default store)")
    _probe_arguments(p, "the shape")
    p.set_defaults(func=_cmd_best)

    p = sub.add_parser("advise", help="guided-pruning table: sweet spot and speedup per layer")
    p.add_argument("--network", required=True, help="alexnet | resnet50 | bert-base")
    p.add_argument("--target", default="host")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--threads", type=int)
    p.add_argument("--db", help="results store (path or URL; default: the default store)")
    _probe_arguments(p, "every layer")
    p.set_defaults(func=_cmd_advise)
