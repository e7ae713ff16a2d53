"""Idle worker threads for side-by-side benchmarks; import before numpy (this sets the
environment that OpenBLAS and the OpenMP runtimes read when they load).

Contenders run interleaved, each after the others, on the same 2 cores: a worker that
spins for long after its call steals the core that the next contender's 2-thread call
needs (OpenBLAS's default 2^28 cycles made a 2-thread spmm after a dense GEMM 12-25x
slower), and one that sleeps at once makes each call of its own pay a wake-up (0.1-0.2
ms in this VM). So every pool spins briefly, then sleeps: OpenBLAS not at all (2^4
cycles), GNU OpenMP 10000 pause loops (ours, torch's; perfmodel/cli.py), Intel OpenMP
(MKL's) 1 ms. Intel OpenMP's setting matters for our kernels too: once MKL is loaded,
an extension module of ours loaded after it binds its GOMP_* calls to libiomp5's
implementation of them, and with OMP_WAIT_POLICY=passive alone (block time 0) a 2-thread
spmm of DLMC 3_block_group3_2_1 (1024 x 256 x 196, sparsity 0.9) ran 0.29 ms instead of
0.11 ms, a 3 x 3 sparse convolution of 256 x 14 x 14 0.71 ms instead of 0.33 (docs/spmm.md,
sixteenth session).
"""

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
os.environ.setdefault("KMP_BLOCKTIME", "1")
