"""How long ``perfmodel.best_config`` takes, on the default store and model file.

Usage::

    PERFMODEL_HOME=STORE_HOME python benchmarks/bench_query.py [REPEATS]

Prints the median time of, interleaved so that every case sees the same machine state: a
repeated query (the answer cache); new problems the store has not measured (the learned
model) -- a new sparsity of one shape, as a sweet-spot curve asks (what does not depend on
the sparsity, such as the dense baseline's features, is kept from the shape's earlier
queries), and a new shape every time; a new sparsity of a shape the store has measured
(the model corrected by those measurements, ``perfmodel/models/_probe.py``); the same for
a 3 x 3 convolution. Pin it to one core (``taskset -c 0``) on a VM whose vCPUs differ.
Needs a fitted model (``perfmodel fit``) and a store holding spmm 768 x 128 x 3072 with 1
thread (the standard preset's BERT layer).
"""

from __future__ import annotations

import statistics
import sys
import time


def main(repeats: int = 100) -> None:
    from perfmodel import best_config

    first = best_config("spmm", m=768, n=128, k=3072, sparsity=0.5, threads=1)
    print(f"first answer: source {first.source}; "
          f"{'; '.join(first.notes) or 'no notes'}")
    # sparsities and shapes no sweep measures (a new problem, hence no cache hit, each time)
    sparsities = [0.5003 + 0.001 * i for i in range(repeats)]
    conv = {"c": 200, "h": 20, "w": 20, "o": 160, "r": 3, "s": 3, "padding": 1}
    cases = {
        "repeated query (cache hit)": (lambda _: best_config(
            "spmm", m=768, n=128, k=3072, sparsity=0.5, threads=1)),
        # what a sweet-spot curve or a sparsity sweep asks: one shape, many sparsities
        "new sparsity of an unmeasured shape": (lambda i: best_config(
            "spmm", m=771, n=128, k=3072, sparsity=sparsities[i], threads=1)),
        "new shape": (lambda i: best_config(
            "spmm", m=1001 + i, n=128, k=3072, sparsity=0.5, threads=1)),
        "new sparsity of a measured shape": (lambda i: best_config(
            "spmm", m=768, n=128, k=3072, sparsity=sparsities[i], threads=1)),
        "conv2d: new sparsity": (lambda i: best_config(
            "conv2d", sparsity=sparsities[i], threads=1, **conv)),
        "conv2d: new shape": (lambda i: best_config(
            "conv2d", sparsity=0.5, threads=1, **{**conv, "o": 161 + i})),
    }
    times: dict[str, list[float]] = {label: [] for label in cases}
    for i in range(repeats):  # interleaved: every case sees the same machine state
        for label, ask in cases.items():
            start = time.perf_counter()
            ask(i)
            times[label].append(time.perf_counter() - start)
    for label, t in times.items():
        print(f"{label:37s} {statistics.median(t) * 1e3:8.3f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
