"""``perfmodel characterize``: measure this machine and write the host profile."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._paths import host_profile_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "characterize",
        help="measure compute peaks, bandwidth per memory level and the clock of this host",
        description="Run the machine micro-benchmarks (fp32 FMA and int8 dot-product peaks, "
                    "read and triad bandwidth from L1 to DRAM, clock) on 1 ... all cores and "
                    "write the host profile (JSON).",
    )
    p.add_argument("--quick", action="store_true",
                   help="top ISA path only, fewer repeats, one size per memory level (~10 s)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="PATH",
                   help=f"where to write the profile (default {host_profile_path()})")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="largest thread count (measures 1, 2, 4, ..., N; default all cores)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .characterize import characterize, format_summary

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    out = args.output if args.output is not None else host_profile_path()

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"  {msg}", file=sys.stderr, flush=True)

    profile = characterize(quick=args.quick, threads=args.threads, path=out, progress=progress)
    print(format_summary(profile))
    print(f"\nwrote {out}")
    return 0
