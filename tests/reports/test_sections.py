"""The data each report section draws from, checked against the fixture store by hand."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from reports import figures as F
from reports import sections as S

from .fixture_store import FINGERPRINT, HOSTILE_MACHINE, host_profile


@pytest.fixture
def inputs(filled_home):
    inp = S.collect(filled_home / "results.db", targets=["host", "xeon-phi-7250"])
    yield inp
    inp.store.close()


def test_collect_identifies_the_host(inputs):
    assert inputs.host_fingerprint == FINGERPRINT
    assert inputs.host_name == HOSTILE_MACHINE
    assert inputs.problems.get("store") is None and inputs.problems.get("profile") is None
    rows = inputs.host_rows
    assert len(rows) and (rows["status"] == "ok").all() and (rows["median_s"] > 0).all()
    assert set(rows["family"]) >= {"spmm", "gemm", "sparse_conv", "im2col_conv", "int8_gemm",
                                   "int4_gemm"}


def test_collect_without_anything(home):
    inp = S.collect(targets=["host"])
    assert inp.store is None and inp.results.empty and inp.host_profile is None
    assert "perfmodel sweep" in inp.problems["store"]
    assert "perfmodel characterize" in inp.problems["profile"]


# ---- 1. machine
def test_machine_data():
    d = S.machine_data(host_profile())
    t = d["table"].set_index("quantity")
    row = t.loc["fp32 peak, avx512_vnni, 2 thread(s)"]
    assert row["measured"] == pytest.approx(190.0) and row["spec"] == pytest.approx(192.0)
    assert row["ratio"] == pytest.approx(190 / 192)
    assert t.loc["int8 peak, avx512_vnni, 1 thread(s)", "unit"] == "GOP/s"
    assert set(d["series"]) == {"read, 1 thread(s)", "read, 2 thread(s)",
                                "triad, 1 thread(s)", "triad, 2 thread(s)"}
    xs, ys = d["series"]["read, 1 thread(s)"]
    assert xs == sorted(xs) and len(xs) == len(ys) == 8
    assert d["caches"] == {"L1d": 48 * 1024, "L2": 2 << 20, "L3": 32 << 20}
    assert d["plateaus"]["DRAM (read, 2 thr)"] == pytest.approx(12e9)


def test_machine_data_without_profile():
    d = S.machine_data(None)
    assert d["table"].empty and d["series"] == {}


# ---- 2. roofline
def test_roofline_data_host_measured(inputs):
    d = S.roofline_data(inputs, "host")
    assert d["kind"] == "measured"
    assert {c["name"] for c in d["comp"]} >= {"fp32", "int8"}
    fp32 = next(c for c in d["comp"] if c["name"] == "fp32")
    assert fp32["ops_per_s"] == pytest.approx(190e9) and fp32["empirical"]
    assert [c["name"] for c in d["mem"]] == ["L1", "L2", "L3", "DRAM"]
    assert d["dots"] and all(x["intensity"] > 0 and x["ops_per_s"] > 0 for x in d["dots"])
    # hierarchical: the dots of one run share one height, one per level
    by_y: dict[float, set[str]] = {}
    for x in d["dots"]:
        by_y.setdefault(x["ops_per_s"], set()).add(x["level"])
    assert max(len(v) for v in by_y.values()) >= 2


def test_roofline_data_catalog_predicted(inputs):
    d = S.roofline_data(inputs, "xeon-phi-7250")
    assert d["kind"] == "predicted"
    assert {c["name"] for c in d["mem"]} == {"MCDRAM", "DDR4"}
    assert d["dots"]
    peak = max(c["ops_per_s"] for c in d["comp"])
    assert all(x["ops_per_s"] <= peak * 1.0001 for x in d["dots"])


# ---- 3. sweet spots
def test_measured_speedups_by_hand(inputs):
    rows = inputs.host_rows
    pts = S.measured_speedups(rows, "spmm")
    p = pts[(pts["shape"] == "256x256·256x64") & (pts["sparsity"] == 0.9)].iloc[0]
    sub = rows[(rows["op"] == "spmm") & (rows["m"] == 256) & (rows["n"] == 64)]
    dense = sub[sub["kernel"] == "gemm_blas_f32"]["median_s"].min()
    sparse = sub[(sub["sparsity"] == 0.9) & (sub["kernel"] != "gemm_blas_f32")]
    assert p["sparse_kernel"] == "spmm_csr_f32"     # scipy_csr is 2.5x slower
    assert p["speedup"] == pytest.approx(dense / sparse["median_s"].min())
    assert set(pts["sparsity"]) == {0.3, 0.5, 0.7, 0.8, 0.9, 0.95}


def test_measured_crossover():
    def pts(sp, su):
        return pd.DataFrame({"sparsity": sp, "speedup": su})
    assert S.measured_crossover(pts([0.5, 0.7, 0.9], [0.5, 1.2, 3.0])) == 0.7
    assert S.measured_crossover(pts([0.5, 0.7, 0.9], [1.5, 0.9, 3.0])) == 0.9
    assert S.measured_crossover(pts([0.5, 0.7, 0.9], [1.1, 1.2, 3.0])) == "≤ 0.5"
    assert S.measured_crossover(pts([0.5, 0.7], [0.5, 0.9])) is None
    assert S.measured_crossover(pts([], [])) is None


def test_main_variant_prefers_warm_random_most_threads():
    df = pd.DataFrame({"cache": ["warm", "warm", "cold", "warm", "warm"],
                       "pattern": ["random", "random", "random", "block4x1", "random"],
                       "threads": [1, 1, 1, 1, 2], "sparsity": [0.5, 0.9, 0.5, 0.5, 0.5]})
    out = S.main_variant(df)
    assert list(out.index) == [0, 1]


def test_sweet_spot_data(inputs):
    d = S.sweet_spot_data(inputs)
    assert not d["errors"], d["errors"]
    assert set(d["spots"]) == {"host", "xeon-phi-7250"}
    for spots in d["spots"].values():
        assert len(spots) == len(d["shapes"]) <= S.MAX_SWEET_SHAPES
        for sp in spots:
            assert len(sp["model_x"]) == len(sp["model_y"]) > 10
            assert 0.0 <= sp["upper"] <= 1.0
            assert sp["lower"] is None or 0.0 <= sp["lower"] <= 1.0


def test_sweet_spot_table_has_the_suites_break_even(inputs):
    """Next to the measured crossover, where perfmodel.break_even puts sparse ahead."""
    from perfmodel import break_even

    sec = S.section_sweet_spots(inputs)
    table = next(t for t in sec.tables if "break-even" in t.columns)
    rows = [dict(zip(table.columns, r, strict=True)) for r in table.rows]
    shapes = {label: shape for label, _, shape in S.sweet_spot_data(inputs)["shapes"]}
    assert {r["target"] for r in rows} == {"host", "xeon-phi-7250"}
    assert any(r["break-even"] is not None for r in rows if r["target"] == "host")
    for r in rows:
        if r["target"] != "host":
            assert r["break-even"] == break_even(r["op"], target=r["target"],
                                                 **shapes[r["shape"]])
        assert r["break-even"] is None or 0.0 <= r["break-even"] <= 0.98


# ---- 4. choice map
def _inject(inputs, pred_col: str, fn) -> None:
    """Pretend a model predicted ``fn(row)`` for every host row."""
    for r in inputs.host_rows.to_dict("records"):
        v = float(fn(r))
        inputs._pred[int(r["measurement_id"])] = (
            (v, math.nan) if pred_col == "pred_roofline_s" else (math.nan, v))
    inputs.__dict__.pop("predictions", None)


def test_choice_data_agrees_with_a_perfect_model(inputs):
    _inject(inputs, "pred_learned_s", lambda r: r["median_s"])
    df = S.choice_data(inputs)
    assert len(df) and (df["model"] == "learned").all()
    assert df["agree"].all() and (df["regret"] == 1.0).all()
    one = df[(df["shape"] == "256x256·256x64 t1") & (df["sparsity"] == 0.3)].iloc[0]
    assert one["measured_best"] == "gemm_blas_f32"


def test_choice_data_marks_disagreement(inputs):
    # a model that always prefers dense: wrong wherever sparse is measured faster
    _inject(inputs, "pred_roofline_s",
            lambda r: 1e-9 if r["family"] in ("gemm", "im2col_conv") else 1.0)
    df = S.choice_data(inputs)
    spmm = df[df["op"] == "spmm"]
    wrong = spmm[spmm["measured_best"] != "gemm_blas_f32"]
    assert len(wrong) and (wrong["agree"] == False).all()  # noqa: E712
    r = wrong.iloc[0]
    assert r["regret"] == pytest.approx(r["predicted_measured_s"] / r["measured_s"])
    assert r["regret"] > 1.0
    assert (df["model"] == "roofline").all()


# ---- 5. quantized
def test_quant_data(inputs):
    df = S.quant_data(inputs.host_rows)
    assert list(df["shape"]) == ["256x256·256x256", "1024x1024·1024x128"]
    rows = inputs.host_rows
    sub = rows[(rows["op"] == "qgemm") & (rows["m"] == 256)]
    t = {k: sub[sub["kernel"] == k]["median_s"].min() for k in sub["kernel"]}
    r = df.iloc[0]
    assert r["int8_vs_fp32"] == pytest.approx(t["gemm_blas_f32"] / t["gemm_u8s8_acc32"])
    assert r["int4_vs_fp32"] == pytest.approx(t["gemm_blas_f32"] / t["gemm_s4s8_acc32"])
    assert r["peer"] == "torch_qlinear_int8"
    assert r["int8_vs_peer"] == pytest.approx(t["torch_qlinear_int8"] / t["gemm_u8s8_acc32"])


def test_quant_data_empty():
    assert S.quant_data(pd.DataFrame()).empty


# ---- 6. accuracy
def test_accuracy_errors(inputs):
    _inject(inputs, "pred_roofline_s", lambda r: r["median_s"] * 1.5)
    d = S.accuracy_data(inputs)
    assert list(d["scatter"]) == ["roofline (calibrated)"]
    err = d["errors"].set_index("family")
    assert err.loc["(all)", "MAPE %"] == pytest.approx(50.0)
    assert err.loc["(all)", "n"] == len(inputs.host_rows)


def test_evaluation_table(tmp_path):
    path = tmp_path / "ev.json"
    path.write_text(json.dumps({"learned": {"random": {"mape": 0.1, "rows": 5},
                                            "leave-shape-out": {"mape": 0.2, "rows": 5}},
                                "_rows": 5}))
    df = S.evaluation_table(path)
    assert list(df["split"]) == ["random", "leave-shape-out"]
    assert list(df["mape"]) == [0.1, 0.2]
    assert S.evaluation_table(tmp_path / "missing.json") is None


# ---- 7. tuning
def test_tuned_rows(inputs):
    df = S.tuned_rows(inputs.store)
    assert len(df) == 1 and df["kernel"].iloc[0] == "spmm_csr_f32"
    assert df["study"].iloc[0] == "study-<i>x</i>"
    assert json.loads(df["problem"].iloc[0])["sparsity"] == 0.9


def test_study_curves(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = optuna.create_study(study_name="s1", storage=url)
    study.set_user_attr("strategy", "random")
    for v in (5.0, 3.0, 4.0, 1.0, 2.0):
        study.add_trial(optuna.trial.create_trial(value=v, params={},
                                                  distributions={}))
    curves = S.study_curves(url)
    assert curves["s1"]["best"] == [5.0, 3.0, 3.0, 1.0, 1.0]
    assert curves["s1"]["trials"] == [0, 1, 2, 3, 4]
    assert curves["s1"]["strategy"] == "random"


def test_best_so_far_skips_failed():
    assert F.best_so_far([3.0, math.nan, 2.0, 5.0]) == [3.0, 3.0, 2.0, 2.0]


# ---- 8. pruning
def test_advise_data(inputs):
    if S.api("perfmodel.advise", "advise") is None:
        pytest.skip("perfmodel.advise not in this checkout")
    df = S.advise_data("resnet50", "host", inputs.store)
    assert len(df) > 5 and {"layer", "lower", "upper", "speedup"} <= set(df.columns)
    assert df["shape"].map(lambda s: "=" in s).all()


# ---- 9. provenance
def test_provenance_data(inputs):
    d = S.provenance_data(inputs)
    runs = d["runs"]
    assert len(runs) == 1 and runs["points"].iloc[0] == len(inputs.results)
    assert runs["status"].iloc[0] == "done"
    m = d["machines"].iloc[0]
    assert m["points"] == len(inputs.results)
    assert m["noisy"] == int(inputs.results["noisy"].sum())
    assert d["failed"]["status"].tolist() == ["runtime_failed"]
    assert d["versions"]["points"].sum() == len(inputs.results)


def test_shape_labels_vectorized_match(inputs):
    rows = inputs.host_rows
    for op in ("spmm", "conv2d", "qgemm"):
        sub = rows[rows["op"] == op]
        assert list(S.shape_labels(sub, op)) == [S._shape_label(r, op)
                                                 for r in sub.to_dict("records")]


def test_accuracy_sample_is_bounded(inputs, monkeypatch):
    monkeypatch.setattr(S, "ACCURACY_SAMPLE", 10)
    inputs.__dict__.pop("predictions", None)
    assert len(inputs.predictions) == 10


def test_label_disables_mathtext():
    assert F.label("a$b$c") == r"a\$b\$c"
    assert len(F.label("x" * 100, 20)) == 20


def test_tuning_section_with_studies_and_tune_eval(filled_home):
    import optuna

    url = f"sqlite:///{filled_home / 'tuner.db'}"
    for name, strategy, values in (("a", "random", [4.0, 3.0, 2.0, 1.0]),
                                   ("b", "model", [1.04, 1.0, 1.0])):
        study = optuna.create_study(study_name=name, storage=url)
        study.set_user_attr("strategy", strategy)
        for v in values:
            study.add_trial(optuna.trial.create_trial(value=v, params={}, distributions={}))
    pd.DataFrame({"problem": ["m1 n1 k1 s0.9"] * 2, "strategy": ["random", "model"],
                  "median_evals": [30.0, 9.0], "reached": [1.0, 1.0]}
                 ).to_csv(filled_home / "tune-eval.csv", index=False)
    inp = S.collect(targets=["host"])
    try:
        sec = S.section_tuning(inp)
    finally:
        inp.store.close()
    assert sec.status == "ok", sec.missing
    assert set(sec.data["studies"]) == {"a", "b"}
    assert len(sec.figures) == 2     # best-so-far curves, tune-eval bars
    strat = next(t for t in sec.tables if t.columns[0] == "strategy")
    rows = {r[0]: r[2] for r in strat.rows}
    assert rows == {"random": 4.0, "model": 1.0}     # trials to within 5 % of final best
    assert any("tune-eval" in t.caption for t in sec.tables)


def test_tuning_section_without_studies(home):
    sec = S.section_tuning(S.collect(targets=["host"]))
    assert sec.status == "no data"
    assert any("perfmodel tune" in m for m in sec.missing)


def test_missing_api_is_reported_not_fatal(inputs, monkeypatch):
    real = S.api

    def without(module, name):
        return None if name in ("sweet_spot", "advise") else real(module, name)

    monkeypatch.setattr(S, "api", without)
    sec = S.section_sweet_spots(inputs)
    assert any("perfmodel.sweet_spot is not available" in m for m in sec.missing)
    assert sec.figures            # the measured points are still drawn
    sec = S.section_pruning(inputs)
    assert sec.status == "no data"
    assert any("perfmodel.advise is not available" in m for m in sec.missing)


def test_host_is_the_machine_with_most_rows_when_this_one_has_none():
    df = pd.DataFrame({"fingerprint": ["a", "b", "b"], "machine": ["ma", "mb", "mb"]})
    fp, name = S._host_identity(df, None)
    assert (fp, name) == ("b", "mb")
