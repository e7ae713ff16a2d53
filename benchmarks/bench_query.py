"""How long ``perfmodel.best_config`` takes, on the default store and model file.

Usage::

    PERFMODEL_HOME=STORE_HOME python benchmarks/bench_query.py [REPEATS]

Prints the median time of: a repeated query (the answer cache), a new problem of a shape
the store has not measured (the learned model), and a new sparsity of a shape it has
(the model corrected by the shape's measurements, ``perfmodel/models/_probe.py``). Needs
a fitted model (``perfmodel fit``) and, for the last case, a store holding spmm
768 x 128 x 3072 with 1 thread (the standard preset's BERT layer).
"""

from __future__ import annotations

import statistics
import sys
import time


def _median_ms(calls) -> float:
    times = []
    for call in calls:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(repeats: int = 100) -> None:
    from perfmodel import best_config

    first = best_config("spmm", m=768, n=128, k=3072, sparsity=0.5, threads=1)
    print(f"first answer: source {first.source}; "
          f"{'; '.join(first.notes) or 'no notes'}")
    cached = _median_ms(lambda: best_config("spmm", m=768, n=128, k=3072, sparsity=0.5,
                                            threads=1) for _ in range(repeats))
    # sparsities no sweep measures (a new problem, hence no cache hit, each time)
    sparsities = [0.5003 + 0.001 * i for i in range(repeats)]
    new_shape = _median_ms((lambda s=s: best_config("spmm", m=771, n=128, k=3072,
                                                    sparsity=s, threads=1))
                           for s in sparsities)
    measured_shape = _median_ms((lambda s=s: best_config("spmm", m=768, n=128, k=3072,
                                                         sparsity=s, threads=1))
                                for s in sparsities)
    print(f"repeated query (cache hit)           {cached:8.3f} ms")
    print(f"new problem, shape not in the store  {new_shape:8.3f} ms")
    print(f"new sparsity of a measured shape     {measured_shape:8.3f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
