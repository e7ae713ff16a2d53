"""The ``perfmodel`` command line.

Each subcommand lives in its own module that defines ``add_parser(subparsers)``; the module
registers its parser and sets ``func`` (called with the parsed namespace, returning an exit
code). Modules are listed in ``COMMANDS`` and imported when the CLI starts.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenBLAS's idle worker threads spin for ~2^28 cycles (tens of ms) after each call and
# steal the core that the next multithreaded kernel needs: a 2-thread spmm right after a
# 2-thread dense GEMM ran 12-25x slower here. 2^4 cycles makes them sleep at once. This
# must be set before numpy loads OpenBLAS, so it lives at the top of the CLI. Likewise the
# OpenMP runtimes (ours, torch's, MKL's) sleep when idle instead of spinning: with spinning
# workers, 2-thread spmm points in a standard sweep read 8 ms instead of 1 ms. But a
# worker that sleeps at once makes every call of a 2-thread kernel pay its wake-up and the
# join (~70 us per call on this VM, 20-26 % of a 0.3 ms spmm, and as variable as the
# hypervisor): GNU OpenMP workers (ours, torch's) first spin this many pause loops (tens
# of us, enough for back-to-back calls), which GOMP_SPINCOUNT sets even under passive.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

#: subcommand modules, in the order ``perfmodel --help`` lists them
COMMANDS: tuple[str, ...] = ("perfmodel._cmd_characterize", "perfmodel._cmd_sweep",
                             "perfmodel._cmd_models",
                             # the tuner's commands live in tuner/ (it may import perfmodel,
                             # never the reverse); named here as a string, loaded at start
                             "tuner._cli",
                             # report / run live in reports/ (data flows kernels_c ->
                             # perfmodel -> tuner -> reports): named here as a string and
                             # loaded when the CLI starts, so perfmodel never imports reports
                             "reports._cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfmodel",
        description="Measure, model and tune sparse and quantized kernels on this machine.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        # point stdout at /dev/null so the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"perfmodel {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
