"""``perfmodel targets | fit | evaluate | best | advise``: the model-side commands."""

from __future__ import annotations

import argparse


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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("targets", help="list the machine descriptions (catalog, user, host)")
    p.add_argument("name", nargs="?", help="show every number of one target with its source")
    p.add_argument("-v", "--verbose", action="store_true", help="details for every target")
    p.set_defaults(func=_cmd_targets)
