"""``perfmodel report`` and ``perfmodel run`` (the one-command main job).

This module lives in ``reports`` (data flows kernels_c -> perfmodel -> tuner -> reports): the
``perfmodel`` command lists it by name in ``perfmodel.cli.COMMANDS`` and imports it when the
CLI starts, so no ``perfmodel`` code imports ``reports``. Only ``argparse`` is imported at
module level; the report machinery (matplotlib, jinja2) loads when a command runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _targets(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    from perfmodel.targets import list_targets

    known = list_targets()
    unknown = [t for t in names if t not in known]
    if unknown:
        raise ValueError(f"unknown target(s) {unknown}; valid: {known}")
    return ["host", *[t for t in names if t != "host"]] if "host" not in names else names


def _cmd_report(args: argparse.Namespace) -> int:
    from .render import write_report

    start = time.perf_counter()
    out = write_report(args.output, args.db, targets=_targets(args.targets),
                       network=args.network, tuning_storage=args.tuning_storage,
                       model_file=args.model, evaluation_file=args.evaluation,
                       tune_eval_file=args.tune_eval)
    _say(f"report written in {time.perf_counter() - start:.1f} s")
    print(out)
    return 0


# ---- perfmodel run --------------------------------------------------------------------
def _step_characterize(force: bool) -> str:
    from perfmodel import _paths
    from perfmodel.characterize import (
        cache_info,
        characterize,
        cpu_info,
        fingerprint,
        load_host_profile,
    )

    path = _paths.host_profile_path()
    if path.is_file() and not force:
        try:
            profile = load_host_profile(path)
            if profile.get("fingerprint") == fingerprint(cpu_info(), cache_info()):
                return f"host profile reused ({path}, {profile.get('created', '?')})"
        except (ValueError, OSError):
            pass
    characterize(quick=True, progress=lambda m: _say(f"  characterize: {m}"))
    return f"host characterized (quick) -> {path}"


def _step_sweep(store: Any, preset: str) -> str:
    import perfmodel

    # the model is fitted on these points: ones a busy moment slowed are measured again
    summary = perfmodel.sweep(preset, store=store, progress=sys.stderr.isatty(),
                              recheck=True)
    parts = [f"sweep {preset}: {getattr(summary, 'measured', '?')} measured, "
             f"{getattr(summary, 'skipped', '?')} already in the store"]
    for key in ("unavailable", "noisy", "rechecked"):
        v = getattr(summary, key, 0)
        if v:
            parts.append(f"{v} {key}")
    return ", ".join(parts)


def _step_fit(store: Any) -> str:
    from perfmodel import _paths
    from perfmodel._context import machine
    from perfmodel.models.learned import LearnedModel, fit_and_save
    from perfmodel.store import load_results

    rows = load_results(store, fingerprint=machine()[0])
    ok = rows[(rows["status"] == "ok") & (rows["median_s"] > 0)]
    path = _paths.model_path()
    if path.is_file():
        try:
            old = LearnedModel.load(path)
            if old.n_train_ == len(ok):
                return f"model reused ({path}, {old.n_train_} measurements, none new)"
        except (ValueError, OSError, KeyError):
            pass
    model = fit_and_save(rows, path)
    return f"model fitted on {model.n_train_} measurements -> {path}"


def _step_evaluate(store: Any) -> str:
    import json

    from perfmodel import _paths
    from perfmodel._context import machine
    from perfmodel.models._evaluate import evaluate
    from perfmodel.models.learned import LearnedModel
    from perfmodel.store import load_results

    from .sections import evaluation_path

    rows = load_results(store, fingerprint=machine()[0])
    path = evaluation_path()
    n_ok = int(((rows["status"] == "ok") & (rows["median_s"] > 0)).sum())
    model = _paths.model_path()
    # stale when points arrived or the model file was rewritten (a new model version)
    stamp = model.stat().st_mtime_ns if model.is_file() else 0
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            if old.get("_rows") == n_ok and old.get("_model_mtime_ns") == stamp:
                return f"evaluation reused ({path})"
        except (ValueError, OSError):
            pass
    report = {"learned": evaluate(lambda: LearnedModel(max_iter=150), rows, n_folds=3,
                                  probe=0.5),
              "_rows": n_ok, "_model_mtime_ns": stamp}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, sort_keys=True, default=float))
    return f"held-out evaluation (3 folds per split) -> {path}"


def _cmd_run(args: argparse.Namespace) -> int:
    from .render import write_report

    start = time.perf_counter()
    failed = []
    steps = [("characterize", lambda: _step_characterize(args.recharacterize)),
             ("sweep", lambda: _step_sweep(args.db, args.preset)),
             ("fit", lambda: _step_fit(args.db)),
             ("evaluate", lambda: _step_evaluate(args.db))]
    for name, step in steps:
        t0 = time.perf_counter()
        _say(f"[{name}] ...")
        try:
            msg = step()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            failed.append(name)
            msg = f"FAILED: {type(exc).__name__}: {exc} (the report says what is missing)"
        _say(f"[{name}] {msg} ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    out = write_report(args.output, args.db, targets=_targets(args.targets))
    _say(f"[report] written ({time.perf_counter() - t0:.1f} s); main job "
         f"{time.perf_counter() - start:.0f} s in all"
         + (f"; failed steps: {', '.join(failed)}" if failed else ""))
    print(out)
    return 1 if failed else 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="results store: SQLite path or SQLAlchemy URL (default: the "
                                "default store, $PERFMODEL_HOME/results.db)")
    p.add_argument("-o", "--output", type=Path,
                   help="HTML file to write (default: $PERFMODEL_HOME/report.html)")
    p.add_argument("--targets", help="comma-separated targets for the roofline and sweet-"
                                     "spot sections (default: host and the whole catalog)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the self-contained HTML performance report",
                       description="Write one self-contained HTML report (no network "
                                   "needed) from the results store, host profile, learned "
                                   "model and tuner studies; parts with no data say so.")
    _common(p)
    p.add_argument("--network", default="resnet50",
                   help="network of the guided-pruning table (default resnet50)")
    p.add_argument("--model", type=Path, help="learned-model file (default: "
                                              "$PERFMODEL_HOME/model.json)")
    p.add_argument("--evaluation", type=Path,
                   help="held-out evaluation JSON (`perfmodel evaluate --json`; default: "
                        "$PERFMODEL_HOME/evaluation.json)")
    p.add_argument("--tuning-storage", help="Optuna storage URL of the tuner studies "
                                            "(default: $PERFMODEL_HOME/tuner.db if present)")
    p.add_argument("--tune-eval", type=Path,
                   help="strategy comparison CSV (`perfmodel tune-eval --csv FILE`; default: "
                        "$PERFMODEL_HOME/tune-eval.csv if present)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("run", help="the main job: characterize, quick sweep, fit, report",
                       description="Characterize this host (quick), run the quick sweep into "
                                   "the store, fit and evaluate the model, write the report "
                                   "and print its path. A rerun reuses what is measured.")
    _common(p)
    p.add_argument("--preset", default="quick", help="sweep preset or spec file "
                                                     "(default quick)")
    p.add_argument("--recharacterize", action="store_true",
                   help="measure the host again even when its profile exists")
    p.set_defaults(func=_cmd_run)
