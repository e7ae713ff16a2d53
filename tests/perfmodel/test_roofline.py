"""Roofline model: operation and byte counts, hierarchy, calibration, contract."""

from __future__ import annotations

import itertools

import pytest

from perfmodel.models._problem import normalize
from perfmodel.models.base import NotFittedError
from perfmodel.models.roofline import FAMILIES, RooflineModel, family_of, footprint, work
from perfmodel.targets import load_target

from ._synthetic import make_results


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path))


BROADWELL = "xeon-e5-2697v4"


@pytest.mark.parametrize("kernel,op,family", [
    ("spmm_csr_f32", "spmm", "spmm"), ("scipy_csr", "spmm", "spmm"),
    ("mkl_csr", "spmm", "spmm"), ("gemm_blas_f32", "spmm", "gemm"),
    ("torch_mm", "spmm", "gemm"), ("conv_direct_sparse_f32", "conv2d", "sparse_conv"),
    ("conv_im2col_blas_f32", "conv2d", "im2col_conv"), ("gemm_u8s8_acc32", "qgemm",
                                                        "int8_gemm"),
    ("gemm_s4s8_acc32", "qgemm", "int4_gemm"), ("gemm_blas_f32", "qgemm", "gemm"),
])
def test_family_of(kernel, op, family):
    assert family_of(kernel, op) == family and family in FAMILIES


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 7, 13), (15, 17, 33), (512, 64, 1024)])
def test_operation_counts(m, n, k):
    t = load_target(BROADWELL)
    p = normalize("spmm", {"m": m, "n": n, "k": k, "sparsity": 0.75})
    assert work("spmm_csr_f32", p, t).ops == 2 * p["nnz"] * n
    assert work("gemm_blas_f32", p, t).ops == 2 * m * n * k
    q = normalize("qgemm", {"m": m, "n": n, "k": k, "bits": 8})
    assert work("gemm_u8s8_acc32", q, t).dtype == "int8"
    assert work("gemm_s4s8_acc32", q, t).dtype == "int4"


def test_conv_gemm_view_and_counts():
    t = load_target(BROADWELL)
    p = normalize("conv2d", {"c": 3, "h": 13, "w": 7, "o": 5, "r": 3, "s": 3, "stride": 2,
                             "padding": 1, "batch": 2, "sparsity": 0.5})
    assert (p["p"], p["q"]) == (7, 4)
    assert (p["m"], p["k"], p["n"]) == (5, 27, 56)
    assert work("conv_direct_sparse_f32", p, t).ops == 2 * p["nnz"] * 56
    assert work("conv_im2col_blas_f32", p, t).ops == 2 * 5 * 27 * 56


def test_bytes_per_level():
    t = load_target(BROADWELL)
    p = normalize("spmm", {"m": 8192, "n": 1024, "k": 8192, "sparsity": 0.9})
    w = work("spmm_csr_f32", p, t)
    # L1 sees every B row load (no reuse in registers): at least nnz * n * 4 bytes
    assert w.bytes["L1"] >= p["nnz"] * 1024 * 4
    # each level sees no more than the one closer to the core, except for the
    # write-allocate reads of C that the register level does not see
    levels = [lv.name for lv in t.bandwidth_levels()]
    allocate = 8192 * 1024 * 4
    assert all(w.bytes[a] + allocate >= w.bytes[b] for a, b in itertools.pairwise(levels))
    assert w.bytes["L1"] > w.bytes["L3"] > w.bytes["DRAM"]
    # at least the compulsory CSR bytes reach DRAM
    assert w.bytes["DRAM"] >= p["nnz"] * 8
    denser = normalize("spmm", {"m": 8192, "n": 1024, "k": 8192, "sparsity": 0.5})
    assert work("spmm_csr_f32", denser, t).bytes["DRAM"] > w.bytes["DRAM"]


def test_warm_working_set_stays_in_cache():
    t = load_target(BROADWELL)
    p = normalize("spmm", {"m": 64, "n": 16, "k": 64, "sparsity": 0.5})
    assert footprint("spmm", p) < 100e3
    w = work("spmm_csr_f32", p, t)
    assert w.bytes["DRAM"] == 0 and w.bytes["L1"] > 0


def test_defaults_follow_description():
    model = RooflineModel(target=BROADWELL).defaults()
    assert set(model.calibration_source_.values()) == {"description"}
    assert model.alpha_ == pytest.approx(2.5)
    p = normalize("spmm", {"m": 2048, "n": 2048, "k": 2048, "sparsity": 0.0})
    info = model.analyze("gemm_blas_f32", p)
    assert info["bound_by"] == "compute"
    assert info["seconds"] == pytest.approx(2 * 2048**3 / 2150e9)
    # sparse at 0% sparsity costs alpha times dense when compute-bound
    assert model.predict_one("spmm_csr_f32", p) >= 2.0 * info["seconds"]


def test_not_fitted():
    with pytest.raises(NotFittedError, match="fit"):
        RooflineModel(target=BROADWELL).predict(make_results().head(2))


def test_calibration_recovers_hidden_factors(tmp_path):
    # a user target whose ceilings are the synthetic machine's: factors should be ~1 and
    # alpha ~ the hidden 2.5
    import yaml

    from perfmodel.targets import CATALOG_DIR
    doc = yaml.safe_load((CATALOG_DIR / "atom-c2750.yaml").read_text())
    doc["name"] = "synthetic"
    doc["compute"]["fp32"]["value"] = "100 GFLOP/s"
    doc["memory"] = [{"name": "DRAM", "bandwidth": {"value": "20 GB/s", "kind": "measured",
                                                    "source": "test"}}]
    (tmp_path / "machines").mkdir()
    (tmp_path / "machines" / "synthetic.yaml").write_text(yaml.safe_dump(doc))
    df = make_results(noise=0.0)
    model = RooflineModel(target="synthetic").fit(df)
    assert model.calibration_source_["spmm"] == "measured"
    assert model.calibration_source_["int8_gemm"] == "description"
    assert model.alpha_ == pytest.approx(2.5, rel=0.25)
    pred = model.predict(df[df.kernel == "gemm_blas_f32"])
    meas = df[df.kernel == "gemm_blas_f32"].median_s.to_numpy()
    assert abs(pred / meas - 1).max() < 0.5


def test_params_dict_reads_stored_parameters_and_ignores_malformed_ones():
    from perfmodel.models._problem import params_dict

    assert params_dict('{"tile_vectors": 4}') == {"tile_vectors": 4}
    assert params_dict({"pointwise": 1}) == {"pointwise": 1}
    for bad in (None, "", "{not json", "[1, 2]", 3, ["a"]):
        assert params_dict(bad) == {}
