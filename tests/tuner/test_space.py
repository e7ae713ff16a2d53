"""Search spaces: constraints as data, conditional parameters, bad input."""

from __future__ import annotations

import optuna
import pytest

from tuner.space import KernelSpec, search_space

from .conftest import TINY


def test_every_config_is_valid_and_distinct():
    space = search_space("spmm", threads=(1, 2), m=64, n=100, k=300, sparsity=0.9)
    configs = list(space.configs())
    assert len(configs) == space.size > 0
    keys = {(k, tuple(sorted(p.items()))) for k, p in configs}
    assert len(keys) == len(configs)
    for kernel, params in configs:
        assert space.violation(kernel, params) is None
    assert {k for k, _ in configs} == {"spmm_csr_f32", "gemm_blas_f32"}
    assert {p["threads"] for _, p in configs} == {1, 2}


def test_single_parameter_constraints_filter_values():
    space = search_space("spmm", threads=1, m=64, n=100, k=100, sparsity=0.9)
    values = space.values("spmm_csr_f32")
    assert all(t == 0 or t < 100 for t in values["n_tile"])      # n_tile < n
    assert all(b == 0 or b < 100 for b in values["k_block"])     # k_block < k
    assert 0 in values["n_tile"] and 64 in values["n_tile"]


def test_conditional_parameter_is_fixed_where_inactive():
    space = search_space("spmm", threads=1, m=64, n=64, k=256, sparsity=0.9)
    for kernel, params in space.configs():
        if kernel == "spmm_csr_f32" and params["k_block"] == 0:
            assert params["row_block"] == 32
    bad = {**next(p for k, p in space.configs() if k == "spmm_csr_f32" and not p["k_block"]),
           "row_block": 8}
    assert "fixed" in space.violation("spmm_csr_f32", bad)


def test_multi_parameter_constraint_is_reported():
    space = search_space("spmm", threads=1, m=64, n=512, k=256, sparsity=0.9)
    vw = space.env["vector_width"]
    params = {"reg_vectors": 8, "n_tile": 64, "k_block": 0, "row_block": 32, "acc_sets": 2,
              "prefetch": 0, "threads": 1}
    reason = space.violation("spmm_csr_f32", params)
    assert (reason is None) == (64 >= 8 * vw)
    if reason:
        assert "n_tile >= reg_vectors * vector_width" in reason


def test_suggest_round_trips_through_optuna(tiny_space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        kernel, params = tiny_space.suggest(trial)
        assert tiny_space.violation(kernel, params) is None
        assert tiny_space.from_optuna(trial.params) == (kernel, params)
        assert tiny_space.optuna_params(kernel, params) == trial.params
        study.tell(trial, 1.0)
        seen.add(kernel)
    assert seen == set(tiny_space.kernels)


@pytest.mark.parametrize(("op", "shape", "match"), [
    ("fft", TINY, "no search space for op 'fft'"),
    ("spmm", {**TINY, "q": 3}, r"unknown \['q'\]"),
    ("spmm", {"m": 4, "n": 4, "k": 4}, r"missing \['sparsity'\]"),
    ("spmm", {**TINY, "sparsity": 1.0}, "sparsity must be"),
    ("spmm", {**TINY, "m": 0}, "m must be a positive int"),
    ("spmm", {**TINY, "n": 2.5}, "n must be a positive int"),
])
def test_bad_problems(op, shape, match):
    with pytest.raises(ValueError, match=match):
        search_space(op, threads=1, **shape)


def test_bad_threads():
    with pytest.raises(ValueError, match="threads"):
        search_space("spmm", threads=0, **TINY)


def test_empty_space_after_constraints():
    specs = {"spmm_csr_f32": KernelSpec(params={"reg_vectors": (1, 2)},
                                        constraints=("reg_vectors > n",))}
    with pytest.raises(ValueError, match="empty after its constraints"):
        search_space("spmm", threads=1, specs=specs, **TINY)
    # a multi-parameter constraint that nothing satisfies empties the space too
    specs = {"spmm_csr_f32": KernelSpec(params={"reg_vectors": (1, 2)},
                                        constraints=("reg_vectors * threads > 99",))}
    with pytest.raises(ValueError, match="empty"):
        search_space("spmm", threads=1, specs=specs, **TINY)


def test_constraint_with_unknown_name():
    specs = {"spmm_csr_f32": KernelSpec(params={"reg_vectors": (1, 2)},
                                        constraints=("reg_vector < 2",))}
    with pytest.raises(ValueError, match=r"unknown variable\(s\) \['reg_vector'\]"):
        search_space("spmm", threads=1, specs=specs, **TINY)


def test_unknown_parameter_and_kernel():
    space = search_space("spmm", threads=1, **TINY)
    assert "unknown parameter" in space.violation("spmm_csr_f32", {"tile": 3})
    with pytest.raises(ValueError, match="not in the spmm search space"):
        space.violation("spmm_bogus", {})


def test_canonical_fixes_inactive_parameters():
    space = search_space("spmm", threads=1, m=64, n=64, k=256, sparsity=0.9)
    params = {"reg_vectors": 1, "n_tile": 0, "k_block": 0, "row_block": 8, "acc_sets": 2,
              "prefetch": 0, "threads": 1}
    assert space.violation("spmm_csr_f32", params) is not None
    fixed = space.canonical("spmm_csr_f32", params)
    assert fixed["row_block"] == 32 and space.violation("spmm_csr_f32", fixed) is None
    assert space.canonical("spmm_csr_f32", {**params, "k_block": 64})["row_block"] == 8


@pytest.mark.parametrize("shape", [dict(m=256, n=512, k=1024, sparsity=0.8),
                                   dict(m=4096, n=8, k=4096, sparsity=0.5)])
def test_the_default_configuration_is_always_in_the_space(shape):
    from tuner.study import default_config

    space = search_space("spmm", threads=1, **shape)
    kernel, params = default_config(space)
    assert space.violation(kernel, params) is None
    assert any(c == (kernel, params) for c in space.configs())


def test_kernel_defaults_join_the_grid():
    spec = KernelSpec(params={"tile": (8, 16)}, defaults=lambda p: {"tile": p["m"] // 2})
    space = search_space("spmm", threads=1, specs={"k": spec}, m=100, n=4, k=4,
                         sparsity=0.5)
    assert space.values("k")["tile"] == (8, 16, 50)
