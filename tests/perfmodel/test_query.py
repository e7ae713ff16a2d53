"""best_config, advise and the model commands: sources, errors, caching, CLI."""

from __future__ import annotations

import math

import pytest

from perfmodel import best_config
from perfmodel.advise import advise, network_layers
from perfmodel.cli import main
from perfmodel.models.learned import fit_and_save

from ._synthetic import make_results


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path))


@pytest.fixture
def store_path(tmp_path):
    """A tiny real store holding the synthetic rows as this machine's measurements."""
    from perfmodel.store import open_store
    from perfmodel.store import tables as T

    known = {c.name for c in T.measurements.c} - {"id", "run_id", "machine_id"}
    path = tmp_path / "results.db"
    store = open_store(path)
    mid = store.machine_id()
    run = store.start_run(mid, "test")
    df = make_results(seed=2)
    for i, rec in enumerate(df.to_dict("records")):
        row = {k: v for k, v in rec.items() if k in known and not (
            isinstance(v, float) and math.isnan(v))}
        row["point_key"] = f"p{i}"
        store.add_measurement(run, mid, row, [rec["median_s"]] * 3)
    store.finish_run(run)
    store.close()
    return path


SHAPE = {"m": 512, "n": 128, "k": 512, "sparsity": 0.9}


def test_catalog_target_uses_described_roofline():
    r = best_config("spmm", target="xeon-e5-2697v4", **SHAPE)
    assert r.source == "roofline" and r.extrapolation
    assert r.kernel in ("spmm_csr_f32", "gemm_blas_f32") and r.dense_kernel == "gemm_blas_f32"
    assert r.speedup == pytest.approx(r.dense_seconds / r.seconds)
    assert any("description" in n for n in r.notes)
    assert r.threads is None
    assert "speedup" in str(r)


def test_gemm_alias_and_dense_wins_when_dense():
    r = best_config("gemm", target="xeon-8470", m=1024, n=1024, k=1024, sparsity=0.0)
    assert r.kernel == "gemm_blas_f32" and r.speedup == 1.0
    # the sparse kernel it beat, and by how much
    assert r.sparse_kernel == "spmm_csr_f32" and r.sparse_seconds > r.dense_seconds
    assert f"best sparse spmm_csr_f32: {r.sparse_seconds * 1e3:.4g} ms" in str(r)


def _speedup_curve(monkeypatch, speedup):
    """best_config replaced by answers whose sparse speedup over dense is speedup(s)."""
    from types import SimpleNamespace

    from perfmodel import query

    asked = []

    def fake(op, *, sparsity, **kwargs):
        asked.append((sparsity, kwargs))
        return SimpleNamespace(dense_seconds=1.0, sparse_seconds=1.0 / speedup(sparsity))

    monkeypatch.setattr(query, "best_config", fake)
    return asked


def test_break_even_reads_the_crossover_of_best_configs_answers(monkeypatch):
    from perfmodel.query import BREAK_EVEN_GRID, break_even

    # log speedup linear in the sparsity: interpolated in log, the crossover is exact
    asked = _speedup_curve(monkeypatch, lambda s: math.exp(4.0 * (s - 0.37)))
    shape = {"c": 8, "h": 8, "w": 8, "o": 8, "r": 3, "s": 3}
    assert break_even("conv2d", threads=2, sparsity=0.9, **shape) == pytest.approx(0.37)
    assert [s for s, _ in asked] == list(BREAK_EVEN_GRID)
    assert all(kw == {"target": "host", "threads": 2, "store": None, **shape}
               for _, kw in asked)       # the asked sparsity is not passed on
    # the first crossing counts; ahead everywhere is 0, behind everywhere None
    _speedup_curve(monkeypatch, lambda s: 2.0 if 0.25 <= s <= 0.45 or s >= 0.75 else 0.5)
    assert 0.2 < break_even("spmm", m=8, n=8, k=8) < 0.3
    _speedup_curve(monkeypatch, lambda s: 1.5)
    assert break_even("gemm", m=8, n=8, k=8) == 0.0
    _speedup_curve(monkeypatch, lambda s: 0.9)
    assert break_even("spmm", m=8, n=8, k=8) is None
    with pytest.raises(ValueError, match=r"prunable op; valid: .*conv2d"):
        break_even("qgemm", m=8, n=8, k=8, bits=8)


def test_break_even_agrees_with_best_config():
    """On a target's roofline: behind below the break-even, ahead above it."""
    from perfmodel.query import break_even

    shape = {"m": 1024, "n": 256, "k": 1024}
    found = break_even("spmm", target="xeon-e5-2697v4", **shape)
    assert 0.0 < found < 0.98
    before, after = (best_config("spmm", target="xeon-e5-2697v4", sparsity=s, **shape)
                     for s in (found - 0.05, found + 0.05))
    assert before.speedup == 1.0 and before.sparse_seconds > before.dense_seconds
    assert after.speedup > 1.0 and after.kernel == after.sparse_kernel


@pytest.mark.parametrize("op,shape,target", [
    ("conv2d", {"c": 64, "h": 28, "w": 28, "o": 64, "r": 3, "s": 3, "padding": 1,
                "sparsity": 0.8}, "xeon-phi-7250"),
    ("qgemm", {"m": 64, "n": 256, "k": 512, "bits": 8}, "nvidia-a100"),
    ("qgemm", {"m": 64, "n": 256, "k": 512, "bits": 4}, "host"),
])
def test_other_ops(op, shape, target):
    r = best_config(op, target=target, **shape)
    assert r.seconds > 0 and r.dense_seconds > 0 and r.speedup >= 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"op": "fft", "m": 1}, "unknown op 'fft'; valid: .*spmm"),
    ({"op": "spmm", "target": "cray-1", **SHAPE}, "unknown target 'cray-1'; valid"),
    ({"op": "spmm", "m": 4, "n": 4, "k": 4, "sparsity": 1.0}, r"\[0, 1\)"),
    ({"op": "spmm", "m": 4, "n": 4, "k": 4, "sparsity": -0.1}, r"\[0, 1\)"),
    ({"op": "spmm", "m": 4, "n": 4}, "missing \\['k', 'sparsity'\\]"),
    ({"op": "spmm", "m": 4, "n": 4, "k": 4, "sparsity": 0.5, "q": 1}, "unknown \\['q'\\]"),
    ({"op": "spmm", "m": 0, "n": 4, "k": 4, "sparsity": 0.5}, "1 <= m <="),
    ({"op": "spmm", "m": 1 << 30, "n": 4, "k": 4, "sparsity": 0.5}, "out of range"),
    ({"op": "qgemm", "m": 4, "n": 4, "k": 4, "bits": 2}, "bits must be one of"),
    ({"op": "spmm", "dtype": "float16", **SHAPE}, "dtype 'float16' not supported"),
    ({"op": "spmm", "threads": 0, **SHAPE}, "threads must be"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        best_config(**kwargs)


def test_non_integer_shape():
    with pytest.raises(TypeError, match="integer"):
        best_config("spmm", m=3.5, n=4, k=4, sparsity=0.5)


def test_warm_query_is_cached():
    a = best_config("spmm", target="atom-c2750", **SHAPE)
    assert best_config("spmm", target="atom-c2750", **SHAPE) is a


def test_measured_then_model_then_roofline(store_path, tmp_path):
    # exact problem in the store -> measured
    r = best_config("spmm", threads=1, store=store_path, m=512, n=128, k=512, sparsity=0.9)
    assert r.source == "measured" and not r.extrapolation
    assert r.kernel == "spmm_csr_f32" and r.params["reg_vectors"] in (1, 2, 4, 8)
    # a shape not in the store, no model file -> calibrated roofline
    r = best_config("spmm", threads=1, store=store_path, m=600, n=128, k=512, sparsity=0.9)
    assert r.source == "roofline" and not r.extrapolation
    assert any("calibrated" in n for n in r.notes)
    # with a model file -> model
    from perfmodel._paths import model_path
    from perfmodel.store import load_results
    fit_and_save(load_results(store_path), model_path(), cv_folds=0, max_iter=30,
                 learning_rate=0.05)
    r = best_config("spmm", threads=1, store=store_path, m=600, n=128, k=512, sparsity=0.9)
    assert r.source == "model" and r.kernel == "spmm_csr_f32"
    assert r.params.get("reg_vectors") == 4      # the synthetic machine's best


def test_the_measured_index_files_rows_as_from_row_reads_them():
    """The index of the store's rows is built a column at a time; every row's key must be
    the one from_row and the shape key give it, missing values included."""
    import numpy as np
    import pandas as pd

    from perfmodel.models._problem import from_row
    from perfmodel.query import _index_keys, _is_dense, _shape_key

    nan = np.nan
    rows = pd.DataFrame([
        {"op": "spmm", "kernel": "spmm_csr_f32", "m": 64, "n": 8, "k": 32, "sparsity": 0.9,
         "density": 0.1, "threads": 1},
        {"op": "gemm", "kernel": "gemm_blas_f32", "m": 64, "n": 8, "k": 32, "sparsity": nan,
         "density": nan, "threads": 2},
        {"op": "spmm", "kernel": "scipy_csr", "m": 64, "n": 8, "k": 32, "sparsity": nan,
         "density": 0.25, "threads": 1},
        {"op": "qgemm", "kernel": "gemm_s4s8_acc32", "m": 16, "n": 16, "k": 64, "bits": 4,
         "threads": 1},
        {"op": "qgemm", "kernel": "gemm_u8s8_acc32", "m": 16, "n": 16, "k": 64, "bits": nan,
         "threads": 1},
        {"op": "conv2d", "kernel": "conv_direct_sparse_f32", "c": 8, "h": 9, "w": 7, "o": 4,
         "r": 3, "s": 3, "stride": 2, "padding": 1, "batch": 2, "sparsity": 0.123456,
         "threads": 1},
        {"op": "conv2d", "kernel": "conv_im2col_blas_f32", "c": 8, "h": 9, "w": 7, "o": 4,
         "r": nan, "s": nan, "stride": nan, "padding": nan, "batch": nan, "threads": 2},
    ])
    expected = []
    for rec in rows.to_dict("records"):
        p = from_row(rec)
        slot = ("dense" if _is_dense(rec["kernel"], p["op"]) else
                ("bits", p["bits"]) if p["op"] == "qgemm" else round(p["sparsity"], 4))
        expected.append((p["op"], _shape_key(p), slot, int(rec["threads"])))
    assert _index_keys(rows) == expected


def test_a_query_ranks_the_kernels_defaults_for_the_layer(store_path, monkeypatch):
    """The direct kernel's defaults for the layer (the pointwise path on a 1 x 1 layer, the
    direct one otherwise), not the sets the model file lists as measured on other layers."""
    import json

    from kernels_c.conv import ConvGeometry, default_params
    from perfmodel._paths import model_path
    from perfmodel.models.learned import LearnedModel
    from perfmodel.store import load_results

    fit_and_save(load_results(store_path), model_path(), cv_folds=0, max_iter=5)
    doc = json.loads(model_path().read_text())
    doc["configs"]["conv_direct_sparse_f32"] = [{"pointwise": 1, "o_block": 16},
                                                {"pointwise": 0, "tile_vectors": 4}]
    model_path().write_text(json.dumps(doc))
    ranked = []
    predict = LearnedModel.predict_configs

    def spy(self, problems):
        ranked.extend({**row, "params": params} for row, configs in problems
                      for params in configs)
        return predict(self, problems)

    monkeypatch.setattr(LearnedModel, "predict_configs", spy)
    layer = {"c": 16, "h": 8, "w": 8, "o": 16, "sparsity": 0.8}
    for r, pad in ((3, 1), (1, 0)):
        ranked.clear()
        answer = best_config("conv2d", threads=1, store=store_path, r=r, s=r, padding=pad,
                             **layer)
        assert answer.source == "model"
        defaults = default_params(ConvGeometry(16, 8, 8, 16, r, r, 1, pad, 1), None, 0.2)
        assert defaults["pointwise"] == (r == 1)
        assert [q["params"] for q in ranked if q["kernel"] == "conv_direct_sparse_f32"] == [
            defaults]
        assert answer.kernel != "conv_direct_sparse_f32" or answer.params == defaults


def test_the_model_is_corrected_by_the_shapes_measurements_at_other_sparsities(store_path):
    from perfmodel._paths import model_path
    from perfmodel.store import load_results

    rows = load_results(store_path)
    fit_and_save(rows, model_path(), cv_folds=3, max_iter=30, learning_rate=0.05)
    # 512 x 128 x 512 is in the store at 0.8 and 0.9, not at 0.85: the model answers,
    # its times for the shape scaled by measured / predicted there (dense: its one row)
    r = best_config("spmm", threads=1, store=store_path, m=512, n=128, k=512,
                    sparsity=0.85)
    assert r.source == "model"
    assert any(n.startswith("corrected by") and "gemm_blas_f32 x" in n for n in r.notes)
    shape = rows[(rows["m"] == 512) & (rows["n"] == 128) & (rows["k"] == 512)]
    dense = shape[shape["kernel"] == "gemm_blas_f32"]["median_s"]
    assert r.dense_seconds == pytest.approx(float(dense.iloc[0]), rel=1e-9)
    from perfmodel.query import _load_learned
    probed_unc = _load_learned()[0].metadata_["log_uncertainty_probed"]
    assert r.uncertainty == pytest.approx(math.expm1(probed_unc))
    # a shape the store has not seen is not corrected
    r = best_config("spmm", threads=1, store=store_path, m=600, n=128, k=512, sparsity=0.85)
    assert r.source == "model" and not any("corrected" in n for n in r.notes)


def test_without_a_model_file_the_roofline_is_corrected_by_the_shapes_measurements(
        store_path):
    from perfmodel.query import ROOFLINE_UNCERTAINTY
    from perfmodel.store import load_results

    # no model file: the roofline answers, scaled per kernel by measured / predicted on
    # the shape's rows (dense: its one row, so dense_seconds is the measured time)
    r = best_config("spmm", threads=1, store=store_path, m=512, n=128, k=512, sparsity=0.85)
    assert r.source == "roofline"
    assert any(n.startswith("corrected by") and "gemm_blas_f32 x" in n for n in r.notes)
    rows = load_results(store_path)
    shape = rows[(rows["m"] == 512) & (rows["n"] == 128) & (rows["k"] == 512)]
    dense = shape[shape["kernel"] == "gemm_blas_f32"]["median_s"]
    assert r.dense_seconds == pytest.approx(float(dense.iloc[0]), rel=1e-9)
    assert r.uncertainty == ROOFLINE_UNCERTAINTY["probed"]
    # a shape the store has not seen is not corrected; nor is another target
    r = best_config("spmm", threads=1, store=store_path, m=600, n=128, k=512, sparsity=0.85)
    assert r.source == "roofline" and not any("corrected" in n for n in r.notes)
    assert r.uncertainty == ROOFLINE_UNCERTAINTY["measured"]
    r = best_config("spmm", target="xeon-8470", store=store_path, m=512, n=128, k=512,
                    sparsity=0.85)
    assert not any("corrected" in n for n in r.notes)


def test_a_probe_measures_the_shape_once_and_corrects_every_sparsity(store_path, capsys):
    from perfmodel._paths import model_path
    from perfmodel.probe import probe, probe_spec
    from perfmodel.store import load_results

    fit_and_save(load_results(store_path), model_path(), cv_folds=0, max_iter=20)
    shape = {"m": 600, "n": 64, "k": 256}
    before = best_config("spmm", threads=1, store=store_path, sparsity=0.8, **shape)
    assert before.source == "model" and not any("corrected" in n for n in before.notes)
    summary = probe("spmm", threads=1, store=store_path, progress=False, **shape)
    assert (summary.measured, summary.status["ok"]) == (2, 2)
    rows = load_results(store_path)
    probed = rows[(rows["m"] == 600) & (rows["k"] == 256)]
    assert sorted(probed["kernel"]) == ["gemm_blas_f32", "spmm_csr_f32"]
    assert set(probed["sparsity"].round(4)) == {0.0, 0.5}
    after = best_config("spmm", threads=1, store=store_path, sparsity=0.8, **shape)
    assert any(n.startswith("corrected by 2 measurement(s)") for n in after.notes)
    dense = float(probed[probed["kernel"] == "gemm_blas_f32"]["median_s"].iloc[0])
    assert after.dense_seconds == pytest.approx(dense, rel=1e-9)
    # nothing is measured twice; the CLI probes, then answers
    assert probe("spmm", threads=1, store=store_path, progress=False, **shape).measured == 0
    assert main(["best", "gemm", "m=600", "n=64", "k=256", "sparsity=0.7", "--threads", "1",
                 "--db", str(store_path), "--probe"]) == 0
    out = capsys.readouterr().out
    assert "probe at sparsity 0.5: sweep 'probe': 0 measured" in out and "corrected by" in out
    # what a probe cannot do is refused before anything runs
    with pytest.raises(ValueError, match="qgemm"):
        probe_spec([("qgemm", {"m": 64, "n": 64, "k": 64})])
    with pytest.raises(ValueError, match="sparsity"):
        probe_spec([("spmm", shape)], sparsity=1.0)
    with pytest.raises(ValueError, match="threads"):
        probe_spec([("spmm", shape)], threads=0)
    assert main(["best", "spmm", "m=600", "n=64", "k=256", "sparsity=0.7", "--probe",
                 "--target", "atom-c2750"]) == 2
    assert "measures this machine" in capsys.readouterr().err


def test_a_refused_model_file_is_named_in_the_answer():
    from perfmodel._paths import model_path

    path = model_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"format": "something else"}')
    r = best_config("spmm", m=256, n=64, k=256, sparsity=0.9, threads=1)
    assert r.source == "roofline"
    assert any("model file not used" in n and "perfmodel model file" in n for n in r.notes)


def test_tuned_config(store_path):
    from perfmodel.store import open_store
    with open_store(store_path) as st:
        st.record_tuned({"op": "spmm", "m": 640, "n": 128, "k": 512, "sparsity": 0.9,
                         "threads": 1}, "spmm_csr_f32", {"reg_vectors": 2}, 1e-6, "study-x")
    r = best_config("spmm", threads=1, store=store_path, m=640, n=128, k=512, sparsity=0.9)
    assert r.source == "tuned" and r.params == {"reg_vectors": 2} and r.seconds == 1e-6


@pytest.mark.parametrize("network", ["alexnet", "resnet50", "bert-base"])
def test_advise(network):
    from perfmodel.advise import format_advice
    from perfmodel.query import break_even

    rows = advise(network, target="xeon-e5-2697v4", sparsity=0.9)
    assert len(rows) == len(network_layers(network)) > 0
    for r in rows:
        assert 0 <= r.upper <= 1 and r.speedup > 0 and r.model_speedup >= 1.0
        assert r.break_even == break_even(r.op, target="xeon-e5-2697v4", **r.shape)
    assert any(r.break_even is not None for r in rows)
    table = format_advice(rows, 0.9)
    assert "wins from" in table.splitlines()[0]
    assert all(f" {r.break_even:.2f}  " in line for r, line in zip(
        rows, table.splitlines()[2:], strict=True) if r.break_even is not None)


def test_advise_probes_every_layer_once(store_path):
    from perfmodel._paths import model_path
    from perfmodel.store import load_results

    fit_and_save(load_results(store_path), model_path(), cv_folds=0, max_iter=20)
    before = len(load_results(store_path))
    rows = advise("bert-base", sparsity=0.9, store=store_path, threads=1, probe=0.5,
                  progress=False)
    layers = network_layers("bert-base")
    shapes = {(s["m"], s["n"], s["k"]) for _, _, s in layers}
    added = load_results(store_path).iloc[before:]
    assert len(added) == 2 * len(shapes)      # dense baseline + sparse kernel per shape
    assert set(zip(added["m"], added["n"], added["k"], strict=True)) == shapes
    assert len(rows) == len(layers)
    assert {r.model_source for r in rows} <= {"model", "measured"}   # the store's own rows
    with pytest.raises(ValueError, match="does not apply to target"):
        advise("bert-base", target="xeon-8470", probe=0.5)


def test_advise_unknown_network():
    with pytest.raises(ValueError, match="alexnet"):
        advise("lenet", target="xeon-8470")


def test_cli(store_path, capsys, tmp_path):
    assert main(["best", "spmm", "m=512", "n=128", "k=512", "sparsity=0.9", "--target",
                 "atom-c2750"]) == 0
    assert "speedup" in capsys.readouterr().out
    assert main(["best", "spmm", "m=512", "--target", "atom-c2750"]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["best", "spmm", "m=512", "n=128", "k=512", "sparsity=0.5", "threads=1"]) == 2
    assert "threads is not part of the shape: use --threads N" in capsys.readouterr().err
    assert main(["best", "conv2d", "c=64", "h=14", "w=14", "o=64", "r=3", "s=3",
                 "padding=1", "sparsity=0.5", "--target", "xeon-8470"]) == 0
    assert "sparse beats dense from sparsity" in capsys.readouterr().out
    assert main(["advise", "--network", "bert-base", "--target", "nvidia-v100"]) == 0
    assert "sweet spot" in capsys.readouterr().out
    out = tmp_path / "m.json"
    assert main(["fit", "--db", str(store_path), "-o", str(out), "--max-iter", "20",
                 "--cv-folds", "0"]) == 0
    assert out.exists()
    assert main(["evaluate", "--db", str(store_path), "--model", "roofline", "--split",
                 "leave-shape-out", "--folds", "3", "--json", str(tmp_path / "e.json"),
                 "--predictions", str(tmp_path / "p.csv")]) == 0
    assert "leave-shape-out" in capsys.readouterr().out
    # the kept held-out predictions rescore to the reported metrics
    import json

    import pandas as pd

    from perfmodel.models._evaluate import metrics
    kept = pd.read_csv(tmp_path / "p.csv")
    assert set(kept["split"]) == {"leave-shape-out"} and set(kept["model"]) == {"roofline"}
    reported = json.loads((tmp_path / "e.json").read_text())["roofline"]["leave-shape-out"]
    rescored = metrics(kept, kept["predicted_s"].to_numpy())
    assert rescored["mape"] == pytest.approx(reported["mape"])
    assert rescored["crossover_mae"] == pytest.approx(reported["crossover_mae"], nan_ok=True)
    # --probe adds the probed split; a sparsity outside [0, 1) is refused by the parser
    assert main(["evaluate", "--db", str(store_path), "--model", "roofline", "--split",
                 "leave-shape-out", "--folds", "3", "--probe", "0.5"]) == 0
    assert "leave-shape-out/probe 0.5" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--db", str(store_path), "--probe", "1.5"])
    assert exc.value.code == 2 and "a sparsity in [0, 1)" in capsys.readouterr().err


def test_sweet_spot_calibrated_on_host_measurements(store_path):
    from perfmodel import sweet_spot
    spot = sweet_spot("spmm", target="host", store=store_path, threads=1, m=512, n=128,
                      k=512)
    # the synthetic machine's sparse kernel costs 2.5x dense per useful FLOP
    assert spot.source == "measured"
    assert spot.alpha == pytest.approx(2.5, rel=0.2)
    assert spot.lower == pytest.approx(1 - 1 / spot.alpha, abs=0.05)
