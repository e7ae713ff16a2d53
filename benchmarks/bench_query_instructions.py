"""Instructions per ``best_config`` query, counted by valgrind (callgrind) on two checkouts:
a measure of the query path's cost that the load of a shared machine does not move.

Usage::

    git worktree add /tmp/old REV && cp kernels_c/*.so /tmp/old/kernels_c/
    (cd /tmp/old && python kernels_c/_build.py forest)   # the C the old side ran
    PERFMODEL_HOME=STORE_HOME python benchmarks/bench_query_instructions.py /tmp/old . \
        [--queries 400] [--cases conv2d-shape spmm-shape ...]

Per case and checkout, two processes run under ``valgrind --tool=callgrind``: one that
answers a few warm-up queries only, one that then answers ``--queries`` new problems of the
case (the same problems as ``bench_query.py``); the difference of their instruction totals
over the number of queries is the cost of one query (imports, reading the store, loading
the model and the warm-up cancel). ``PYTHONHASHSEED`` is fixed; what is left varies by
~1-2 % between identical runs at 400 queries. A case takes 1-2 min; the two checkouts run
side by side on two CPUs.

Instructions are not time: a query that moves less data or waits less can win on time
while executing as many. Read them with ``bench_query_ab.py``'s wall-clock ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_CONV = {"c": 200, "h": 20, "w": 20, "o": 160, "r": 3, "s": 3, "padding": 1}
#: case -> the keyword arguments of query i (new problems each, as in bench_query.py)
CASES = {
    "spmm-shape": "dict(op='spmm', m=1001 + i, n=128, k=3072, sparsity=0.5, threads=1)",
    "spmm-sparsity": "dict(op='spmm', m=771, n=128, k=3072, sparsity=0.5003 + 1e-5 * i, "
                     "threads=1)",
    "conv2d-shape": f"dict(op='conv2d', sparsity=0.5, threads=1, **{{**{_CONV!r}, "
                    f"'o': 161 + i}})",
    "conv2d-sparsity": f"dict(op='conv2d', sparsity=0.5003 + 1e-5 * i, threads=1, "
                       f"**{_CONV!r})",
}
_SCRIPT = """
import sys
from perfmodel import best_config
# warm-up: the model loaded, the store read and indexed, every kernel's candidates known
best_config("conv2d", sparsity=0.5, threads=1, **{conv!r})
best_config("spmm", m=1000, n=128, k=3072, sparsity=0.5, threads=1)
best_config("conv2d", sparsity=0.5, threads=1, **{{**{conv!r}, "o": 2000}})
best_config("spmm", m=771, n=128, k=3072, sparsity=0.4, threads=1)
for i in range(int(sys.argv[1])):
    kwargs = {problem}
    best_config(kwargs.pop("op"), **kwargs)
"""
_TOTAL = re.compile(r"Collected : (\d+)")


def _instructions(tree: Path, case: str, queries: int, cpu: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "queries.py"
        script.write_text(_SCRIPT.format(conv=_CONV, problem=CASES[case]))
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
        out = subprocess.run(
            ["taskset", "-c", cpu, "valgrind", "--tool=callgrind",
             f"--callgrind-out-file={tmp}/callgrind.out", sys.executable, str(script),
             str(queries)], cwd=tree, env=env, capture_output=True, text=True, check=True)
    found = _TOTAL.search(out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction total in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_query(tree: Path, case: str, queries: int, cpu: str) -> float:
    """Instructions of one query of ``case`` on checkout ``tree``."""
    return (_instructions(tree, case, queries, cpu) - _instructions(tree, case, 0, cpu)) / queries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    cpus = ["0", str(min(1, (os.cpu_count() or 1) - 1))]
    print(f"{'M instructions per query':26s} {'old':>8s} {'new':>8s}   new / old")
    with ThreadPoolExecutor(2) as pool:
        for case in args.cases:
            runs = [pool.submit(per_query, tree.resolve(), case, args.queries, cpu)
                    for tree, cpu in ((args.old, cpus[0]), (args.new, cpus[1]))]
            old, new = (run.result() for run in runs)
            print(f"{case:26s} {old / 1e6:8.3f} {new / 1e6:8.3f}   {new / old:.3f}")


if __name__ == "__main__":
    main()
