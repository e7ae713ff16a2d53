"""Per-shape correction from measurements of the shape (perfmodel.models._probe)."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel.models._evaluate import evaluate, metrics, probed
from perfmodel.models._probe import probe_factors
from perfmodel.models.learned import LearnedModel

from ._synthetic import make_results


@pytest.fixture(scope="module")
def data():
    return make_results(seed=3)


def test_dense_kernels_use_every_row_sparse_ones_the_nearest_sparsity():
    kernels = ["gemm", "gemm", "csr", "csr", "csr", "csr"]
    dense = [True, True, False, False, False, False]
    sparsity = [0.0, 0.0, 0.3, 0.5, 0.5, 0.9]
    measured = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    predicted = np.array([0.5, 2.0, 4.0, 0.5, 0.8, 9.0])
    factors, used = probe_factors(kernels, dense, sparsity, measured, predicted, near=0.6)
    assert factors["gemm"] == pytest.approx(1.0)          # geometric median of x2 and x0.5
    assert factors["csr"] == pytest.approx(np.sqrt(2.0 * 1.25))   # the two rows at 0.5
    assert used.tolist() == [True, True, False, True, True, False]
    factors, used = probe_factors(kernels, dense, sparsity, measured, predicted, near=0.95)
    assert factors["csr"] == pytest.approx(1 / 9) and used.tolist()[2:] == [0, 0, 0, 1]


def test_rows_without_a_usable_time_give_no_factor():
    factors, used = probe_factors(["a", "b"], [False, False], [0.5, 0.5], [1.0, np.nan],
                                  [1.0, 1.0], near=0.5)
    assert set(factors) == {"a"} and used.tolist() == [True, False]


def test_an_error_shared_by_a_shapes_sparsities_is_removed_by_one_probe(data):
    rng = np.random.default_rng(0)
    measured = data["median_s"].to_numpy()
    shape = data["m"].astype(str) + "x" + data["n"].astype(str) + "x" + data["k"].astype(str)
    factor = {key: float(np.exp(rng.normal(0.0, 0.3)))
              for key in set(shape + "|" + data["kernel"])}
    pred = measured * np.array([factor[key] for key in shape + "|" + data["kernel"]])
    before = metrics(data, pred)
    assert before["crossover_hit_rate"] < 1.0 and before["mape"] > 0.1
    fixed, was_probe = probed(data, pred, 0.5)
    np.testing.assert_allclose(fixed, measured, rtol=1e-9)
    after = metrics(data, fixed)
    assert after["crossover_hit_rate"] == 1.0 and after["regret_geomean"] == 1.0
    # every dense baseline and each sparse kernel's rows at sparsity 0.5
    expected = (data["kernel"] == "gemm_blas_f32") | (data["sparsity"] == 0.5)
    assert was_probe.tolist() == expected.tolist()


def test_evaluate_scores_the_probed_predictions_on_the_other_rows(data):
    report = evaluate(lambda: LearnedModel(max_iter=30), data,
                      splits=("random", "leave-shape-out"), n_folds=3, probe=0.5)
    assert [k for k in report if "probe" in k] == ["leave-shape-out/probe 0.5"]
    plain, probed_split = report["leave-shape-out"], report["leave-shape-out/probe 0.5"]
    assert probed_split["rows"] + probed_split["probe_rows"] == plain["rows"]
    assert probed_split["probe_rows"] == int(((data["kernel"] == "gemm_blas_f32")
                                              | (data["sparsity"] == 0.5)).sum())
    assert probed_split["mape"] < plain["mape"]
