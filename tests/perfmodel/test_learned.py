"""Learned model: fit/predict contract, JSON persistence and schema checks, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from perfmodel.models._evaluate import (
    _crossover_conditioning,
    crossover,
    evaluate,
    format_details,
    format_report,
    metrics,
)
from perfmodel.models.base import NotFittedError
from perfmodel.models.learned import LearnedModel, fit_and_save

from ._synthetic import make_results


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path))


@pytest.fixture(scope="module")
def data():
    return make_results(seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    return LearnedModel(max_iter=80, learning_rate=0.05).fit(data)


def test_fit_predict(fitted, data):
    pred = fitted.predict(data)
    assert pred.shape == (len(data),) and np.all(pred > 0)
    assert np.mean(np.abs(pred / data["median_s"] - 1)) < 0.1


def test_not_fitted(data):
    with pytest.raises(NotFittedError):
        LearnedModel().predict(data)


def test_too_few_rows(data):
    with pytest.raises(ValueError, match="at least 10"):
        LearnedModel().fit(data.head(3))


def test_failed_rows_are_ignored(data):
    bad = data.copy()
    bad.loc[:20, "status"] = "runtime_failed"
    bad.loc[:20, "median_s"] = np.nan
    assert LearnedModel(max_iter=5).fit(bad).n_train_ == len(data) - 21


def test_json_round_trip_is_exact(fitted, data, tmp_path):
    path = fitted.save(tmp_path / "m.json")
    text = path.read_text()
    doc = json.loads(text)          # plain JSON, nothing executable
    assert doc["format"] == "perfmodel-learned-model" and "schema_hash" in doc
    loaded = LearnedModel.load(path)
    np.testing.assert_array_equal(loaded.predict(data), fitted.predict(data))


def test_a_loaded_model_saved_again_keeps_what_fit_and_save_wrote(data, tmp_path):
    """The candidate configurations and the probed uncertainty are not model attributes:
    saving a loaded model must not drop them (best_config would rank defaults only)."""
    first = fit_and_save(data, tmp_path / "a.json", cv_folds=0, max_iter=5)
    again = LearnedModel.load(tmp_path / "a.json").save(tmp_path / "b.json")
    a, b = (json.loads(p.read_text()) for p in (tmp_path / "a.json", again))
    assert b["configs"] == a["configs"] == json.loads(json.dumps(first.metadata_["configs"]))
    assert {k: v for k, v in a.items() if k != "training"} == \
        {k: v for k, v in b.items() if k != "training"}


def test_format_2_files_with_json_lists_still_load(fitted, data, tmp_path):
    """Format 3 stores the node arrays as base64 bytes; format 2's JSON lists still read."""
    import base64

    path = fitted.save(tmp_path / "m.json")
    doc = json.loads(path.read_text())
    assert doc["format_version"] == 3
    for forest in doc["forests"].values():
        for name, value in forest.items():
            if isinstance(value, dict):
                forest[name] = np.frombuffer(base64.b64decode(value["base64"]),
                                             dtype=value["dtype"]).tolist()
    doc["format_version"] = 2
    path.write_text(json.dumps(doc))
    np.testing.assert_array_equal(LearnedModel.load(path).predict(data), fitted.predict(data))


@pytest.mark.parametrize("edit,match", [
    (lambda a: a.update(base64="not base64!"), "not valid base64"),
    (lambda a: a.update(base64=a["base64"][:-4]), "not valid base64"),   # a partial value
    (lambda a: a.update(dtype="<f4"), "expected"),
    (lambda a: a.pop("base64"), "not valid base64"),
])
def test_corrupt_node_arrays_are_refused(fitted, tmp_path, edit, match):
    path = fitted.save(tmp_path / "m.json")
    doc = json.loads(path.read_text())
    edit(next(iter(doc["forests"].values()))["threshold"])
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        LearnedModel.load(path)


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.update(format="something-else"), "not a perfmodel model file"),
    (lambda d: d.update(format_version=99), "format_version 99"),
    (lambda d: d["feature_schema"].update(version=0), "feature schema"),
    (lambda d: d["feature_schema"]["base"].append("new_feature"), "feature schema"),
    (lambda d: d["feature_schema"]["kernels"].append("other_kernel"), "hash mismatch"),
])
def test_refuses_other_schemas(fitted, tmp_path, edit, match):
    path = fitted.save(tmp_path / "m.json")
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        LearnedModel.load(path)


def test_refuses_non_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(ValueError, match="not a perfmodel model file"):
        LearnedModel.load(path)


def test_extrapolation_flag(fitted):
    inside = {"op": "spmm", "kernel": "spmm_csr_f32", "threads": 1, "m": 512, "n": 128,
              "k": 512, "sparsity": 0.8, "density": 0.2, "nnz": 52429, "params": {}}
    outside = {**inside, "m": 1 << 18, "k": 1 << 16}
    unseen = {**inside, "kernel": "never_measured"}
    _, flags = fitted.predict_records([inside, outside, unseen])
    assert flags.tolist() == [False, True, True]


def test_extrapolation_is_checked_against_the_kernels_own_rows(data, tmp_path):
    """A sparse kernel measured up to density 0.6 extrapolates at density 1, although the
    dense baseline's rows span it; a file without per-kernel ranges checks all rows'."""
    sparse = data["kernel"] == "spmm_csr_f32"
    model = LearnedModel(max_iter=10).fit(data[~(sparse & (data["density"] > 0.6))])
    row = {"op": "spmm", "kernel": "spmm_csr_f32", "threads": 1, "m": 512, "n": 128,
           "k": 512, "sparsity": 0.8, "density": 0.2, "nnz": 52429, "params": {}}
    dense_sparse = {**row, "sparsity": 0.0, "density": 1.0, "nnz": 512 * 512}
    dense = {**dense_sparse, "kernel": "gemm_blas_f32"}
    loaded = LearnedModel.load(model.save(tmp_path / "m.json"))
    for fitted in (model, loaded):
        assert fitted.predict_records([row, dense_sparse, dense])[1].tolist() == [
            False, True, False]
        _, flags = fitted.predict_configs([(row, [{}, {}]), (dense_sparse, [{}]),
                                           (dense, [{}])])
        assert flags.tolist() == [False, False, True, False]
    loaded.kernel_ranges_ = {}
    assert loaded.predict_records([row, dense_sparse])[1].tolist() == [False, False]


def test_a_kernel_with_enough_rows_has_a_model_of_its_own(data):
    counts = data[data["status"] == "ok"]["kernel"].value_counts()
    threshold = int(counts.sort_values().iloc[len(counts) // 2])
    model = LearnedModel(max_iter=20, own_model_rows=threshold).fit(data)
    groups = set(model.forests_.forests)
    assert {f"op:{o}" for o in data["op"].unique()} <= groups
    assert {f"kernel:{k}" for k, c in counts.items() if c >= threshold} == \
        {g for g in groups if g.startswith("kernel:")}
    assert any(c < threshold for c in counts)  # and some kernels use their op's model
    # a kernel's own model and its operation's model are different models
    rows = data[data["kernel"] == counts.index[0]]
    own = model.predict(rows)
    shared_only = LearnedModel(max_iter=20, own_model_rows=10**9).fit(data)
    assert set(shared_only.forests_.forests) == {f"op:{o}" for o in data["op"].unique()}
    assert not np.allclose(own, shared_only.predict(rows))


def test_a_model_fitted_again_predicts_as_a_new_one(data):
    model = LearnedModel(max_iter=10).fit(data)
    assert any(name.startswith("kernel:") for name in model.forests_.forests)
    model.predict(data)              # which forest each kernel takes is kept...
    model.own_model_rows = 10**9     # ...and no longer true after this fit
    model.fit(data)
    fresh = LearnedModel(max_iter=10, own_model_rows=10**9).fit(data)
    np.testing.assert_array_equal(model.predict(data), fresh.predict(data))


def test_an_operation_never_trained_gets_the_roofline_and_a_flag(data):
    spmm_only = data[data["op"] == "spmm"]
    model = LearnedModel(max_iter=20).fit(spmm_only)
    conv = {"op": "conv2d", "kernel": "conv_direct_sparse_f32", "threads": 1, "c": 64,
            "h": 28, "w": 28, "o": 64, "r": 3, "s": 3, "stride": 1, "padding": 1,
            "batch": 1, "sparsity": 0.8, "density": 0.2, "params": {}}
    seconds, flags = model.predict_records([conv])
    assert np.isfinite(seconds[0]) and seconds[0] > 0 and flags.tolist() == [True]
    expected = model.roofline_.predict(pd.DataFrame([conv]))[0]
    assert seconds[0] == pytest.approx(expected)


def test_pointwise_im2col_conv_is_predicted_as_its_gemm(fitted, data):
    # a 1 x 1 stride-1 unpadded im2col convolution runs one sgemm (O x C) @ (C x H W) per
    # image: the GEMM model predicts it, times the batch
    conv = {"op": "conv2d", "kernel": "conv_im2col_blas_f32", "threads": 1, "c": 256,
            "h": 16, "w": 32, "o": 512, "r": 1, "s": 1, "stride": 1, "padding": 0,
            "batch": 2, "sparsity": 0.0, "density": 1.0, "params": "{}", "cache": "warm"}
    gemm = {"op": "spmm", "kernel": "gemm_blas_f32", "threads": 1, "m": 512, "n": 512,
            "k": 256, "sparsity": 0.0, "density": 1.0, "nnz": 512 * 256, "params": "{}",
            "cache": "warm", "pattern": "dense"}
    (t_gemm,), _ = fitted.predict_records([gemm])
    (t_conv,), (flag,) = fitted.predict_records([conv])
    assert t_conv == pytest.approx(2 * t_gemm, rel=1e-12) and not flag
    table = pd.DataFrame([conv, {**conv, "r": 3, "s": 3, "padding": 1},
                          {**conv, "stride": 2}, data.iloc[0].to_dict()])
    pred = fitted.predict(table)
    assert pred[0] == pytest.approx(t_conv, rel=1e-12)
    assert pred[3] == pytest.approx(fitted.predict(data.iloc[:1])[0], rel=1e-12)
    # a 3 x 3 or strided convolution copies its input (im2col) first: not a plain GEMM;
    # this model never saw a convolution, so those fall back to the roofline
    roof = fitted.roofline_.predict(table.iloc[1:3])
    assert pred[1:3] == pytest.approx(roof, rel=1e-12)
    # without GEMM rows in the training there is no twin to ask
    spmm_only = LearnedModel(max_iter=20).fit(data[data["kernel"] != "gemm_blas_f32"])
    (t_alone,), (flag,) = spmm_only.predict_records([conv])
    assert t_alone == pytest.approx(spmm_only.roofline_.predict(pd.DataFrame([conv]))[0])
    assert flag


def test_pointwise_sparse_conv_is_predicted_as_its_spmm(fitted):
    from kernels_c.spmm import default_params

    conv = {"op": "conv2d", "kernel": "conv_direct_sparse_f32", "threads": 1, "c": 256,
            "h": 16, "w": 16, "o": 512, "r": 1, "s": 1, "stride": 1, "padding": 0,
            "batch": 3, "sparsity": 0.8, "density": 0.2, "nnz": 0.2 * 512 * 256,
            "pattern": "random", "cache": "warm",
            "params": json.dumps({"tile_vectors": 16, "c_block": 0, "o_block": 32,
                                  "align": 1, "pointwise": 1})}
    spmm = {"op": "spmm", "kernel": "spmm_csr_f32", "threads": 1, "m": 512, "n": 256,
            "k": 256, "sparsity": 0.8, "density": 0.2, "nnz": 0.2 * 512 * 256,
            "pattern": "random", "cache": "warm",
            "params": json.dumps(default_params(512, 256, 256, 0.2))}
    (t_spmm,), _ = fitted.predict_records([spmm])
    (t_conv,), (flag,) = fitted.predict_records([conv])
    assert t_conv == pytest.approx(3 * t_spmm, rel=1e-12) and not flag
    assert fitted.predict(pd.DataFrame([conv]))[0] == pytest.approx(t_conv, rel=1e-12)
    # the direct kernel (pointwise = 0) is its own kernel: this model never saw it
    direct = {**conv, "params": json.dumps({**json.loads(conv["params"]), "pointwise": 0})}
    (t_direct,), (flag,) = fitted.predict_records([direct])
    assert flag and t_direct == pytest.approx(
        fitted.roofline_.predict(pd.DataFrame([direct]))[0])


def test_configurations_of_a_row_predict_as_the_rows_they_make(data):
    """predict_configs (a query's candidates: each row once, its parameter sets after)
    gives predict_records' numbers bit for bit, whatever path a row takes: a plain row,
    a 1 x 1 convolution that pointwise = 1 turns into its spmm call, a 3 x 3 one whose
    im2col has a GEMM view, a direct convolution through its forest, a kernel the training
    never saw."""
    from perfmodel.models.learned import _may_have_view, _view

    cost = {"fma_slots": 0.2e-9, "tile_visits": 10e-9, "copy_vectors": 4e-9}
    conv = _direct_conv_rows(data.iloc[0].to_dict(), cost, [
        (64, 56, 64, 3, 1), (128, 28, 128, 3, 1), (512, 7, 512, 3, 1), (128, 56, 128, 3, 2)])
    fitted = LearnedModel(max_iter=20, min_samples_leaf=2).fit(
        pd.concat([data, conv], ignore_index=True))
    spmm = {"op": "spmm", "kernel": "spmm_csr_f32", "threads": 1, "m": 512, "n": 128,
            "k": 512, "sparsity": 0.8, "density": 0.2, "nnz": 52429, "pattern": "random",
            "params": {}}
    pointwise = {"op": "conv2d", "kernel": "conv_direct_sparse_f32", "threads": 1,
                 "c": 256, "h": 16, "w": 16, "o": 512, "r": 1, "s": 1, "stride": 1,
                 "padding": 0, "batch": 3, "sparsity": 0.8, "density": 0.2,
                 "nnz": 0.2 * 512 * 256, "pattern": "random", "params": {}}
    im2col = {**pointwise, "kernel": "conv_im2col_blas_f32", "r": 3, "s": 3, "padding": 1,
              "sparsity": 0.0, "density": 1.0, "nnz": 512 * 256 * 9, "pattern": "dense"}
    problems = [
        (spmm, [{"reg_vectors": 1}, {"reg_vectors": 8}, {}]),
        (pointwise, [{"pointwise": 1}, {"pointwise": 0, "o_block": 16}, {"pointwise": 1}]),
        (im2col, [{}]),
        ({**pointwise, "r": 3, "s": 3, "padding": 1}, [{"pointwise": 0}, {"o_block": 8}]),
        ({**spmm, "kernel": "never_measured"}, ["{}", {"tile_vectors": 2}]),
    ]
    rows = [{**row, "params": params} for row, configs in problems for params in configs]
    seconds, flags = fitted.predict_configs(problems)
    expected, expected_flags = fitted.predict_records(rows)
    np.testing.assert_array_equal(seconds, expected)
    np.testing.assert_array_equal(flags, expected_flags)
    assert np.isfinite(seconds).all() and flags.tolist()[-2:] == [True, True]
    assert seconds[0] != seconds[1]   # the sets' parameters matter here
    # the 3 x 3 direct convolution's sets went through the trees, not the roofline
    direct = slice(7, 9)
    assert "op:conv2d" in fitted.forests_
    roofline = fitted.roofline_.predict(pd.DataFrame(rows[direct]))
    assert not np.isclose(seconds[direct], roofline, rtol=1e-6).any()
    empty = fitted.predict_configs([])
    assert empty[0].shape == empty[1].shape == (0,)
    for bad in ([(spmm, "{}")], [(spmm, {"tile_vectors": 1})], [("spmm", [{}])]):
        with pytest.raises(TypeError, match="pairs"):
            fitted.predict_configs(bad)
    # _may_have_view: no parameter set gives a row a view it says it cannot have
    for row, configs in problems:
        if not _may_have_view(row):
            assert all(_view({**row, "params": params}) is None for params in configs)
    assert _may_have_view(pointwise) and _may_have_view(im2col)
    assert not _may_have_view(problems[3][0]) and not _may_have_view(spmm)


def test_forest_names_may_cover_runs_of_rows(fitted, data):
    x, _ = fitted.featurizer_.matrix(data.iloc[:6])
    names = ["op:spmm", "nothing", "op:spmm", next(iter(fitted.forests_.forests))]
    per_row = [names[0]] * 2 + [names[1]] + [names[2]] * 2 + [names[3]]
    got = fitted.forests_.predict(x, names, [2, 1, 2, 1])
    np.testing.assert_array_equal(got, fitted.forests_.predict(x, per_row))
    assert np.isnan(got[2]) and np.isfinite(np.delete(got, 2)).all()


def test_training_records_twins_as_their_view_calls(data):
    from perfmodel.models.learned import _as_twins

    base = data.iloc[0].to_dict()
    conv = {**base, "op": "conv2d", "m": np.nan, "n": np.nan, "k": np.nan, "c": 64, "h": 8,
            "w": 8, "o": 32, "r": 1, "s": 1, "stride": 1, "padding": 0, "batch": 2,
            "groups": 1, "median_s": 4e-3}
    rows = pd.DataFrame([
        {**conv, "kernel": "conv_im2col_blas_f32", "sparsity": 0.0, "density": 1.0,
         "params": "{}", "pattern": "dense"},
        {**conv, "kernel": "conv_direct_sparse_f32", "sparsity": 0.9, "density": 0.1,
         "nnz": 205, "pattern": "random", "params": json.dumps({"pointwise": 1})},
        {**conv, "kernel": "conv_direct_sparse_f32", "sparsity": 0.9, "density": 0.1,
         "r": 3, "s": 3, "padding": 1, "params": json.dumps({"pointwise": 0})},
        base], columns=data.columns)
    out = _as_twins(rows)
    assert list(out["kernel"]) == ["gemm_blas_f32", "spmm_csr_f32", "conv_direct_sparse_f32",
                                   base["kernel"]]
    assert list(out["op"][:2]) == ["spmm", "spmm"] and out["op"][2] == "conv2d"
    assert (out.loc[:1, ["m", "n", "k"]].to_numpy() == [[32, 64, 64], [32, 64, 64]]).all()
    assert out["median_s"][:2].tolist() == [2e-3, 2e-3] and out["median_s"][2] == 4e-3
    assert out.loc[:1, "c"].isna().all() and out["c"][2] == 64
    assert json.loads(out["params"][1])["reg_vectors"] >= 1   # spmm's own defaults
    pd.testing.assert_series_equal(out.iloc[3], rows.iloc[3], check_names=False)


def test_spmm_reference_counts_whole_vectors_per_nonzero():
    """Narrow N does not make an spmm nonzero cheaper than one vector of FMAs: the
    reference of a cache-resident problem is flat up to N = 16 on AVX-512 (16 fp32 lanes)
    and steps by 8 columns on AVX2."""
    from perfmodel.models.learned import _Featurizer

    def reference(target, n):
        return _Featurizer(["spmm_csr_f32"], [], target=target).base(
            {"op": "spmm", "kernel": "spmm_csr_f32", "threads": 1, "m": 256, "n": n,
             "k": 256, "sparsity": 0.5, "density": 0.5, "nnz": 32768, "params": {}})[1]

    avx512, avx2 = "xeon-8470", "xeon-e5-2697v4"
    assert reference(avx512, 1) == reference(avx512, 4) == reference(avx512, 16)
    assert reference(avx512, 32) == pytest.approx(2 * reference(avx512, 16))
    assert reference(avx2, 12) == pytest.approx(reference(avx2, 16))
    assert reference(avx2, 16) == pytest.approx(2 * reference(avx2, 8))


def test_held_out_n_2_is_not_predicted_as_a_matrix_vector_product(data):
    """A kernel with a fast N = 1 path (scipy's, MKL's matrix-vector code) trained on N = 1,
    4, 8, 16: the held-out N = 2 follows N = 4, not the N = 1 path (log2_n alone split
    them at log2 N = 1 and put N = 2 with N = 1)."""
    template = data.iloc[0].to_dict()
    rows = []
    for m, k in ((256, 512), (512, 1024), (1024, 768), (2048, 256), (768, 2048)):
        for n in (1, 2, 4, 8, 16):
            for density in (0.7, 0.5, 0.3, 0.1):
                nnz = round(density * m * k)
                per_nnz = 1e-9 if n == 1 else 4e-9 * n   # a scalar loop over N per nonzero
                rows.append({**template, "op": "spmm", "kernel": "scipy_csr", "m": m,
                             "n": n, "k": k, "sparsity": 1 - density, "density": density,
                             "nnz": nnz, "pattern": "random", "params": "{}",
                             "median_s": nnz * per_nnz})
    rows = pd.DataFrame(rows)
    model = LearnedModel(max_iter=100).fit(rows[rows["n"] != 2])
    held = rows[rows["n"] == 2]
    ratio = model.predict(held) / held["median_s"].to_numpy()
    assert np.all((ratio > 0.5) & (ratio < 2.5))   # N = 1's law would give 0.125


def _direct_conv_rows(template: dict, cost: dict[str, float], shapes) -> pd.DataFrame:
    """Direct-convolution rows whose time is ``cost`` (seconds per unit) times the kernel's
    work on AVX-512 (kernels_c.conv.direct_work)."""
    from kernels_c.conv import ConvGeometry, direct_work

    rows = []
    for c, hw, o, r, stride in shapes:
        geo = ConvGeometry(c, hw, hw, o, r, r, stride, r // 2, 1)
        for sparsity in (0.5, 0.7, 0.9, 0.95):
            nnz = round((1 - sparsity) * o * c * r * r)
            work = direct_work(geo, "avx512", nnz)
            t = 2 * sum(cost[u] * work[u] for u in cost)   # a batch of 2
            rows.append({**template, "op": "conv2d", "kernel": "conv_direct_sparse_f32",
                         "m": np.nan, "n": np.nan, "k": np.nan, "c": c, "h": hw, "w": hw,
                         "o": o, "r": r, "s": r, "stride": stride, "padding": r // 2,
                         "batch": 2, "groups": 1, "sparsity": sparsity, "density": 1 - sparsity,
                         "nnz": nnz, "pattern": "random", "params": "{}", "median_s": t})
    return pd.DataFrame(rows)


def test_direct_conv_reference_is_its_calibrated_work(data, tmp_path):
    from perfmodel.models.learned import _Featurizer

    cost = {"fma_slots": 0.2e-9, "tile_visits": 10e-9, "copy_vectors": 4e-9}
    shapes = [(64, 56, 64, 3, 1), (128, 28, 128, 3, 1), (512, 7, 512, 3, 1),
              (128, 56, 128, 3, 2), (64, 27, 192, 5, 1)]
    conv = _direct_conv_rows(data.iloc[0].to_dict(), cost, shapes)
    rows = pd.concat([data, conv], ignore_index=True)
    model = LearnedModel(max_iter=20, target="xeon-8470").fit(rows)
    assert model.featurizer_.direct_cost == pytest.approx(cost, rel=1e-6)
    # the reference of every direct row is the calibrated work: nothing left to learn
    references = [model.featurizer_.base(r)[1] for r in conv.to_dict("records")]
    assert references == pytest.approx(conv["median_s"].tolist(), rel=1e-6)
    loaded = LearnedModel.load(model.save(tmp_path / "m.json"))
    assert loaded.featurizer_.direct_cost == model.featurizer_.direct_cost
    # fewer than three shapes: no calibration, the compute bound padded to the tiles
    few = LearnedModel(max_iter=20, target="xeon-8470").fit(
        pd.concat([data, conv[conv["c"] <= 64]], ignore_index=True))
    assert few.featurizer_.direct_cost is None
    plain = _Featurizer([], [], target="xeon-8470")
    small, large = (conv[conv["h"] == hw].iloc[0].to_dict() for hw in (7, 56))
    # per nonzero and output pixel a 7 x 7 plane costs more than a 56 x 56 one
    per_fma = [plain.base(r)[1] / (r["nnz"] * r["h"] * r["w"]) for r in (small, large)]
    assert per_fma[0] > 1.5 * per_fma[1]


@pytest.mark.parametrize("target, l1_bytes", [("xeon-8470", 48 * 1024),
                                              ("xeon-e5-2697v4", 32 * 1024)])
def test_direct_conv_l1_set_overflow_feature(data, target, l1_bytes):
    """The direct convolution's rows carry how much of a register tile's input block
    overflows the target's L1 sets (kernels_c.conv.input_set_overflow, the target's L1 per
    core, its vector width); every other row 0."""
    from kernels_c.conv import ConvGeometry, input_set_overflow
    from perfmodel.models.learned import BASE_FEATURES, _Featurizer

    f = _Featurizer(["conv_direct_sparse_f32", "conv_im2col_blas_f32"], [], target=target)
    assert f._machine(1)[1][2] == l1_bytes
    level = f._direct_level()
    column = BASE_FEATURES.index("conv_l1_set_overflow")
    conv = _direct_conv_rows(data.iloc[0].to_dict(), {"fma_slots": 1e-9},
                             [(192, 30, 48, 3, 1), (64, 62, 64, 3, 2), (64, 1, 64, 1, 1)])
    seen = []
    for rec in conv.to_dict("records"):
        geo = ConvGeometry(rec["c"], rec["h"], rec["w"], rec["o"], rec["r"], rec["s"],
                           rec["stride"], rec["padding"], 1)
        expected = (0.0 if rec["r"] == 1 else
                    input_set_overflow(geo, level, rec["nnz"], l1_bytes=l1_bytes))
        assert f.base(rec)[0][column] == expected
        assert f.base({**rec, "kernel": "conv_im2col_blas_f32"})[0][column] == 0.0
        seen.append(expected)
    assert f.base(data.iloc[0].to_dict())[0][column] == 0.0
    assert len(set(seen)) > 1   # not the same value everywhere


def test_im2col_conv_reference_is_its_sgemm_calls(data):
    """A 3 x 3 im2col convolution is referred to the predicted time of its sgemm calls;
    its own model learns what the im2col copy adds (here 25 %)."""
    from perfmodel.models.learned import _view

    from ._synthetic import hidden_time

    template = data.iloc[0].to_dict()
    convs = []
    for c, hw, o in ((64, 16, 128), (128, 8, 256), (32, 32, 64), (256, 8, 128)):
        rec = {**template, "op": "conv2d", "kernel": "conv_im2col_blas_f32", "m": np.nan,
               "n": np.nan, "k": np.nan, "c": c, "h": hw, "w": hw, "o": o, "r": 3, "s": 3,
               "stride": 1, "padding": 1, "batch": 2, "groups": 1, "sparsity": 0.0,
               "density": 1.0, "nnz": o * c * 9, "pattern": "dense", "params": "{}"}
        rec["median_s"] = 2 * 1.25 * hidden_time("gemm_blas_f32", o, hw * hw, 9 * c, 1.0)
        convs.append(rec)
    convs = pd.DataFrame(convs)
    model = LearnedModel(max_iter=200, min_samples_leaf=2).fit(
        pd.concat([data, convs], ignore_index=True))
    rec = convs.iloc[0].to_dict()
    view, calls = _view(rec)
    assert (view["m"], view["n"], view["k"], calls) == (128, 256, 576, 2.0)
    (t_view,), _ = model.predict_records([view])
    _, bound = model.featurizer_.matrix(convs.iloc[:1])
    assert model._view_references(bound, [rec])[0] == pytest.approx(calls * t_view)
    pred = model.predict(convs)
    assert pred == pytest.approx(convs["median_s"].to_numpy(), rel=0.1)
    # grouped: one sgemm per group on its share of the channels
    view, calls = _view({**rec, "groups": 4})
    assert (view["m"], view["k"], calls) == (32, 144, 8.0)
    assert _view({**rec, "kernel": "conv_direct_sparse_f32"}) is None   # 3 x 3: direct
    # a strided pointwise sparse convolution: spmm on the subsampled pixels, per image
    pointwise = {**rec, "kernel": "conv_direct_sparse_f32", "r": 1, "s": 1, "padding": 0,
                 "stride": 2, "sparsity": 0.8, "density": 0.2, "nnz": 0.2 * 128 * 64,
                 "pattern": "random", "params": json.dumps({"pointwise": 1})}
    view, calls = _view(pointwise)
    assert (view["kernel"], view["m"], view["n"], view["k"], calls) == (
        "spmm_csr_f32", 128, 64, 64, 2.0)
    assert json.loads(view["params"])["reg_vectors"] >= 1
    assert _view({**rec, "c": np.nan}) is None


def test_crossover_interpolation():
    assert crossover(np.array([0.5, 0.6, 0.7]), np.array([0.8, 1.0, 1.25])) == \
        pytest.approx(0.6)
    assert np.isnan(crossover(np.array([0.5, 0.9]), np.array([2.0, 3.0])))
    assert np.isnan(crossover(np.array([0.5, 0.9]), np.array([0.2, 0.3])))


def test_perfect_predictions_score_perfectly(data):
    m = metrics(data, data["median_s"].to_numpy())
    assert m["mape"] == 0 and m["regret_geomean"] == 1.0
    assert m["kendall_tau"] == pytest.approx(1.0)
    assert m["crossover_shapes"] > 0 and m["crossover_mae"] == 0
    assert m["crossover_missed"] == 0 and m["crossover_hit_rate"] == 1.0
    assert m["crossover_speedup_error"] == pytest.approx(0, abs=1e-12)
    assert m["crossover_tolerance"] > 0


def test_crossover_conditioning():
    """Speedup 0.8 -> 1.0 over 0.5 -> 0.6, where the curve crosses: log slope ln(1.25) / 0.1
    per unit of sparsity, so 0.05 moves the speedup by 1.25 ** 0.5 - 1 = 11.8 % (the
    steeper segment after the crossing does not count)."""
    measured = (np.array([0.5, 0.6, 0.7]), np.array([0.8, 1.0, 1.5]))
    error, tolerance = _crossover_conditioning(measured, (measured[0], measured[1] * 1.1))
    assert error == pytest.approx(0.1) and tolerance == pytest.approx(1.25 ** 0.5 - 1)
    error, _ = _crossover_conditioning(measured, (np.array([0.65, 0.9]), np.ones(2)))
    assert np.isnan(error)  # the predicted curve does not reach the measured crossover
    assert np.isnan(_crossover_conditioning((measured[0], measured[1] * 2), None)[1])


def test_crossover_speedup_error_of_a_slower_sparse_prediction(data):
    pred = data["median_s"].to_numpy().copy()
    pred[(data["kernel"] != "gemm_blas_f32").to_numpy()] *= 1.25
    m = metrics(data, pred)
    assert m["crossover_speedup_error"] == pytest.approx(0.2)
    assert "xover tol" in format_report({"random": m})


def test_mape_per_kernel(data):
    pred = data["median_s"].to_numpy().copy()
    dense_rows = (data["kernel"] == "gemm_blas_f32").to_numpy()
    assert dense_rows.any()
    pred[dense_rows] *= 1.5
    m = metrics(data, pred)
    by_kernel = m["by_kernel"]
    assert set(by_kernel) == set(data["kernel"])
    assert sum(k["rows"] for k in by_kernel.values()) == m["rows"]
    assert by_kernel["gemm_blas_f32"]["mape"] == pytest.approx(0.5)
    assert all(k["mape"] == 0 for name, k in by_kernel.items() if name != "gemm_blas_f32")
    lines = format_details({"random": m}, "learned").splitlines()
    first = lines[lines.index("learned random: MAPE per kernel (rows, MAPE, median APE)") + 1]
    assert first.split()[0] == "gemm_blas_f32" and first.split()[2] == "0.5000"


def test_a_crossover_predicted_out_of_range_counts_as_a_miss(data):
    perfect = metrics(data, data["median_s"].to_numpy())
    # dense predicted 100x slower on one shape: its sparse kernel "wins" at every sparsity
    pred = data["median_s"].to_numpy().copy()
    shape = (data["m"] == data["m"].iloc[0]) & (data["n"] == data["n"].iloc[0]) & (
        data["k"] == data["k"].iloc[0])
    pred[(shape & (data["kernel"] == "gemm_blas_f32")).to_numpy()] *= 100
    m = metrics(data, pred)
    assert m["crossover_missed"] == 1 and m["crossover_within_0.05"] == 1.0
    n = perfect["crossover_shapes"]
    assert m["crossover_shapes"] == n - 1
    assert m["crossover_hit_rate"] == pytest.approx((n - 1) / n)
    # per operation and thread count: the same shapes, the miss in its own group
    assert sum(g["shapes"] for g in m["crossover_hits_by"].values()) == n
    assert sum(g["hits"] for g in m["crossover_hits_by"].values()) == n - 1
    assert all(g["hits"] == g["shapes"] for g in perfect["crossover_hits_by"].values())
    group = f"spmm, {int(data['threads'].iloc[0])} thread(s)"
    assert m["crossover_hits_by"][group]["hits"] == \
        perfect["crossover_hits_by"][group]["hits"] - 1
    assert f"{group} " in format_details({"random": m})


def test_details_name_the_shape_whose_crossover_moved_and_the_costly_choices(data):
    pred = data["median_s"].to_numpy().copy()
    assert "crossovers off" in format_details({"random": metrics(data, pred)})
    shape = (data["m"] == data["m"].iloc[0]) & (data["n"] == data["n"].iloc[0]) & (
        data["k"] == data["k"].iloc[0])
    pred[(shape & (data["kernel"] == "gemm_blas_f32")).to_numpy()] *= 100
    m = metrics(data, pred)
    moved = [k for k, (meas, p) in m["crossovers"].items()
             if np.isfinite(meas) and not np.isfinite(p)]
    assert len(moved) == 1 and moved[0].startswith(
        f"spmm m={data['m'].iloc[0]} n={data['n'].iloc[0]} k={data['k'].iloc[0]}, ")
    assert m["worst_regrets"][0][0] == pytest.approx(m["regret_max"])
    text = format_details({"random": m, "random/converged": m}, "learned")
    assert f"{moved[0]}: " in text and "-> out of range" in text
    assert text.count("largest regrets") == 1  # the converged subset is not repeated


def test_evaluate_held_out(data):
    data = data.copy()
    data.loc[::7, "noisy"] = True
    report = evaluate(lambda: LearnedModel(max_iter=120, learning_rate=0.1), data, n_folds=4)
    assert set(report) == {"random", "leave-shape-out", "leave-sparsity-out",
                           "random/converged", "leave-shape-out/converged",
                           "leave-sparsity-out/converged"}
    assert report["random/converged"]["rows"] == int((~data["noisy"]).sum())
    shape = report["leave-shape-out"]
    assert shape["rows"] == len(data)
    # the synthetic machine is learnable: held-out errors stay small
    assert shape["mape"] < 0.3 and shape["regret_geomean"] < 1.1
    assert shape["crossover_mae"] < 0.1


def test_one_fold_per_group(data):
    """n_folds=0: every shape group (every sparsity level) is a fold of its own."""
    from perfmodel.models._evaluate import _groups, held_out_groups, out_of_fold

    folds = _groups(data, "leave-shape-out", 0, seed=0)
    shapes = held_out_groups(data).to_numpy()
    assert len(set(folds.tolist())) == len(set(shapes))
    for f in set(folds.tolist()):
        assert len(set(shapes[folds == f])) == 1
    sparse = data["sparsity"].to_numpy() > 0
    levels = _groups(data, "leave-sparsity-out", 0, seed=0)[sparse]
    assert len(set(levels.tolist())) == data.loc[sparse, "sparsity"].nunique()
    pred = out_of_fold(lambda: LearnedModel(max_iter=20), data, "leave-shape-out", n_folds=0)
    assert np.isfinite(pred).all()
    for bad in (-1, 1):
        with pytest.raises(ValueError, match="n_folds"):
            _groups(data, "leave-shape-out", bad, seed=0)
    with pytest.raises(ValueError, match="grouped split"):
        _groups(data, "random", 0, seed=0)


def test_held_out_groups_join_one_problem_in_its_forms():
    """A 1 x 1 layer and its spmm twin, an im2col layer and its GEMM view, a quantized GEMM
    of a GEMM shape and two rows of one named layer are held out together; other shapes
    stay apart, and missing dimensions group by shape alone."""
    from perfmodel.models._evaluate import _groups, held_out_groups

    nan = float("nan")
    rows = pd.DataFrame([
        dict(op="conv2d", c=256, h=56, w=56, o=64, r=1, s=1, stride=1, padding=0, batch=1),
        dict(op="spmm", m=64, n=3136, k=256),
        dict(op="qgemm", m=64, n=3136, k=256),
        dict(op="conv2d", c=64, h=56, w=56, o=64, r=3, s=3, stride=1, padding=1, batch=1),
        dict(op="spmm", m=64, n=3136, k=576),
        dict(op="conv2d", c=64, h=112, w=112, o=64, r=3, s=3, stride=2, padding=1, batch=1),
        dict(op="spmm", m=1000, n=8, k=2048, layer="net:fc"),
        dict(op="spmm", m=1000, n=16, k=2048, layer="net:fc"),
        dict(op="spmm", m=1000, n=16, k=1024),
        dict(op="conv2d", c=3, h=nan, w=8, o=4, r=3, s=3, stride=1, padding=1, batch=1),
    ])
    for col in ("m", "n", "k", "c", "h", "w", "o", "r", "s", "stride", "padding", "batch"):
        rows[col] = rows[col].astype(float)
    g = held_out_groups(rows).tolist()
    assert g[0] == g[1] == g[2] != g[3]
    assert g[3] == g[4] == g[5]         # the stride-2 layer has the same im2col GEMM
    assert g[6] == g[7] != g[8]
    assert len(set(g)) == 5
    folds = _groups(rows, "leave-shape-out", 0, seed=0)
    assert len(set(folds.tolist())) == 5 and folds[0] == folds[1] == folds[2]


def test_fit_and_save(data, tmp_path):
    model = fit_and_save(data, tmp_path / "model.json", cv_folds=2, max_iter=20)
    doc = json.loads((tmp_path / "model.json").read_text())
    assert doc["configs"]["spmm_csr_f32"] and doc["configs"]["gemm_blas_f32"] == [{}]
    assert 0 < model.log_uncertainty_ < 2


def test_candidates_are_the_kernels_defaults_for_the_problem(data, tmp_path):
    """A query ranks the kernel's defaults for its own problem, not the sets measured on
    other shapes (there they were those shapes' defaults, and carried their speed along);
    a kernel whose defaults are not resolved ranks the sets measured most often."""
    from kernels_c.conv import ConvGeometry
    from kernels_c.conv import default_params as conv_defaults
    from kernels_c.quant import default_params as qgemm_defaults
    from kernels_c.spmm import default_params

    cost = {"fma_slots": 0.2e-9, "tile_visits": 10e-9, "copy_vectors": 4e-9}
    conv = _direct_conv_rows(data.iloc[0].to_dict(), cost,
                             [(64, 28, 64, 3, 1), (32, 14, 48, 1, 2)])
    model = fit_and_save(pd.concat([data, conv], ignore_index=True), tmp_path / "m.json",
                         cv_folds=0, max_iter=5)
    doc = json.loads((tmp_path / "m.json").read_text())
    assert len(doc["configs"]["spmm_csr_f32"]) == 4          # reg_vectors 1, 2, 4, 8
    loaded = LearnedModel.load(tmp_path / "m.json")
    new = {"op": "spmm", "kernel": "spmm_csr_f32", "m": 300, "n": 40, "k": 700,
           "density": 0.4}
    for fitted in (model, loaded):
        assert fitted.candidate_configs(new) == [default_params(300, 700, 40, 0.4)]
        for layer in conv.to_dict("records"):     # 3 x 3, and 1 x 1 (the spmm path)
            geo = ConvGeometry(layer["c"], layer["h"], layer["w"], layer["o"], layer["r"],
                               layer["s"], layer["stride"], layer["padding"], 1)
            defaults = conv_defaults(geo, None, layer["density"])
            assert defaults["pointwise"] == (layer["r"] == 1)
            assert fitted.candidate_configs(layer) == [defaults]
        int4 = {"op": "qgemm", "kernel": "gemm_s4s8_acc32", "m": 8, "n": 512, "k": 256}
        assert fitted.candidate_configs(int4) == [{**qgemm_defaults(8, 512, 256),
                                                   "group_size": 64}]
        assert fitted.candidate_configs({"op": "spmm", "kernel": "gemm_blas_f32"}) == \
            doc["configs"]["gemm_blas_f32"] == [{}]
        assert fitted.candidate_configs({"op": "spmm", "kernel": "unseen"}) == [{}]


def test_qgemm_rows(tmp_path):
    """int8/int4 GEMM rows (dense operands, bits column) train and rank with their
    fp32 baseline."""
    from perfmodel.models._evaluate import metrics
    from perfmodel.query import best_config

    from ._synthetic import COLUMNS
    rows = []
    rng = np.random.default_rng(0)
    for m, n, k in [(1, 1024, 256), (64, 768, 512), (256, 512, 256), (128, 4096, 1024),
                    (16, 256, 1500), (1024, 1024, 1024), (6, 4096, 2048), (102, 1024, 512)]:
        flops = 2.0 * m * n * k
        for kernel, bits, rate in (("gemm_blas_f32", np.nan, 90e9),
                                   ("gemm_u8s8_acc32", 8, 380e9),
                                   ("gemm_s4s8_acc32", 4, 300e9)):
            t = flops / rate * float(np.exp(rng.normal(0, 0.02))) + 2e-6
            rows.append({"op": "qgemm", "kernel": kernel, "threads": 1, "params": "{}",
                         "m": m, "n": n, "k": k, "bits": bits, "sparsity": 0.0,
                         "density": 1.0, "nnz": n * k, "pattern": "dense",
                         "cache": "warm", "status": "ok", "median_s": t, "noisy": False})
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    df["status"], df["noisy"] = "ok", False
    model = LearnedModel(max_iter=50, learning_rate=0.2, min_samples_leaf=2).fit(df)
    m = metrics(df, model.predict(df))
    assert m["problems"] == 16 and m["regret_geomean"] < 1.05
    from perfmodel._paths import model_path
    fit_and_save(df, model_path(), cv_folds=0, max_iter=50)
    r = best_config("qgemm", m=64, n=768, k=512, bits=8, threads=1)
    assert r.source == "model" and r.kernel == "gemm_u8s8_acc32"
    assert r.dense_kernel == "gemm_blas_f32" and r.speedup > 1.5
