"""``benchmarks/bench_query.py`` on two checkouts, side by side: rounds of A B B A (then
B A A B), each run a fresh process pinned to one CPU, and per case the median over rounds of
each checkout's time and of the per-round ratio new / old.

Usage::

    git worktree add /tmp/old REV && cp kernels_c/*.so /tmp/old/kernels_c/
    (cd /tmp/old && python kernels_c/_build.py forest)   # the C the old side ran
    PERFMODEL_HOME=STORE_HOME python benchmarks/bench_query_ab.py /tmp/old . [ROUNDS] [REPEATS]
        [--old-home OLD_STORE_HOME]

Each side imports its own ``perfmodel`` and ``kernels_c`` (``PYTHONPATH``) and runs its own
copy of ``bench_query.py`` (the old checkout's must print the same cases). ``--old-home``
gives the old side its own ``PERFMODEL_HOME`` (a model file of the feature schema its code
reads). On a shared machine the load moves by 2x within minutes; ratios within a round are
what compare.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

_LINE = re.compile(r"^(.{37}) +([\d.]+) ms$", re.M)


def _run(tree: Path, repeats: int, cpu: str, home: str | None = None) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if home is not None:
        env["PERFMODEL_HOME"] = home
    out = subprocess.run(["taskset", "-c", cpu, sys.executable, "benchmarks/bench_query.py",
                          str(repeats)], cwd=tree, env=env, capture_output=True, text=True,
                         check=True).stdout
    return {m.group(1).strip(): float(m.group(2)) for m in _LINE.finditer(out)}


def main(old: str, new: str, rounds: int = 8, repeats: int = 60, cpu: str = "0",
         old_home: str | None = None) -> None:
    trees = {"old": Path(old).resolve(), "new": Path(new).resolve()}
    homes = {"old": old_home, "new": None}
    per_round: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for r in range(rounds):
        order = ("old", "new", "new", "old") if r % 2 == 0 else ("new", "old", "old", "new")
        runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        for side in order:
            runs[side].append(_run(trees[side], repeats, cpu, homes[side]))
        for side, got in runs.items():
            per_round[side].append({case: statistics.mean(run[case] for run in got)
                                    for case in got[0]})
    print(f"{'ms, median over rounds (range)':37s} {'old':>22s} {'new':>22s}   new / old")
    for case in per_round["old"][0]:
        o = [r[case] for r in per_round["old"]]
        n = [r[case] for r in per_round["new"]]
        ratio = [b / a for a, b in zip(o, n, strict=True)]
        print(f"{case:37s} {statistics.median(o):7.3f} ({min(o):.3f}-{max(o):.3f}) "
              f"{statistics.median(n):7.3f} ({min(n):.3f}-{max(n):.3f})   "
              f"{statistics.median(ratio):.2f} ({min(ratio):.2f}-{max(ratio):.2f})")


if __name__ == "__main__":
    args = sys.argv[1:]
    home = None
    if "--old-home" in args:
        i = args.index("--old-home")
        if i + 1 >= len(args):
            raise SystemExit(__doc__)
        home, args = args[i + 1], args[:i] + args[i + 2:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    main(args[0], args[1], *(int(v) for v in args[2:4]), old_home=home)
