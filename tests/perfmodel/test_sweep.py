"""Sweeps: spec validation, points, verification, resume (including after SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import perfmodel
from perfmodel import cli, ops
from perfmodel._sweep import PRESET_DIR, PRESETS, SpecError, load_spec
from perfmodel.shapes import LAYER_SETS, load_matrix, matrix_sources
from perfmodel.store import load_results, load_samples, open_store
from tests.conftest import require_dlmc

FAST = {"budget_s": 0.01, "min_samples": 6, "target_rel_ci": 0.05}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path / "home"))


def tiny_spec(**block) -> dict:
    base = {"op": "spmm", "kernels": ["spmm_csr_f32", "gemm_blas_f32", "scipy_csr"],
            "shapes": [{"m": 7, "k": 13, "n": 3}, {"m": 1, "k": 17, "n": 16}],
            "sparsities": [0.5, 0.9], "patterns": ["random"]}
    base.update(block)
    return {"name": "tiny", **FAST, "block": [base]}


def test_tiny_sweep_stores_verified_points_and_resumes(store_url):
    spec = tiny_spec()
    first = perfmodel.sweep(spec, store=store_url, progress=False)
    # 2 shapes x 2 sparsities x (ours, scipy) + 2 dense baselines (once per shape)
    assert first.measured == 10 and first.status == {"ok": 10} and first.skipped == 0
    df = perfmodel.load_results(store_url)
    assert len(df) == 10 and df.point_key.is_unique
    assert set(df.kernel) == {"spmm_csr_f32", "gemm_blas_f32", "scipy_csr"}
    dense = df[df.kernel == "gemm_blas_f32"]
    assert (dense.pattern == "dense").all() and (dense.sparsity == 0).all()
    assert (dense.density == 1).all() and (dense.flops == 2 * dense.m * dense.n * dense.k).all()
    ours = df[df.kernel == "spmm_csr_f32"]
    assert (ours.flops == 2 * ours.nnz * ours.n).all()
    assert ours.isa.isin(__import__("kernels_c")._isa.supported_levels()).all()
    assert (df.n_samples >= 6).all() and (df.median_s > 0).all() and (df.gflops > 0).all()
    assert (df.sweep == "tiny").all() and (df.fingerprint.str.len() == 16).all()
    assert df.versions.str.contains('"numpy"').all() and df.timestamp.str.endswith("Z").all()
    s = load_samples(store_url, df.measurement_id)
    assert (s.groupby("measurement_id").size().loc[df.measurement_id].values
            == df.n_samples.values).all()
    again = perfmodel.sweep(spec, store=store_url, progress=False)
    assert again.measured == 0 and again.skipped == 10
    redo = perfmodel.sweep(spec, store_url, remeasure=True, progress=False, limit=3)
    assert redo.measured == 3
    df2 = load_results(store_url)
    assert len(df2) == 10 and df2.point_key.is_unique


def test_points_of_changed_kernel_code_are_measured_again(store_url, monkeypatch):
    """Our kernels' measurements carry the digest of the kernels_c code they ran; once it
    changes, a resumed sweep measures those points again and replaces them, and leaves
    the peers' points (no digest) alone."""
    spec = tiny_spec()
    perfmodel.sweep(spec, store=store_url, progress=False)
    df = load_results(store_url)
    spmm = ops.get_op("spmm")
    ours = df.kernel.isin(["spmm_csr_f32", "gemm_blas_f32"])
    assert df[ours].versions.str.contains(spmm.source_digest("spmm_csr_f32")).sum() == 4
    assert not df[~ours].versions.str.contains("kernel_source").any()
    changed = {"spmm_csr_f32": "0123456789abcdef"}
    digest = ops.Op.source_digest
    monkeypatch.setattr(ops.Op, "source_digest",
                        lambda self, kernel: changed.get(kernel) or digest(self, kernel))
    again = perfmodel.sweep(spec, store=store_url, progress=False)
    assert again.measured == again.stale == 4 and again.skipped == 6
    assert "4 stored points measured again" in str(again)
    df2 = load_results(store_url)
    assert len(df2) == 10 and df2.point_key.is_unique
    redone = df2[df2.kernel == "spmm_csr_f32"]
    assert redone.versions.str.contains("0123456789abcdef").all()
    assert set(redone.measurement_id).isdisjoint(df.measurement_id)
    kept = df2[df2.kernel != "spmm_csr_f32"]
    assert set(kept.measurement_id) <= set(df.measurement_id)
    assert perfmodel.sweep(spec, store=store_url, progress=False).measured == 0


def test_recheck_measures_a_point_slower_than_at_lower_sparsity_again(tmp_path,
                                                                     monkeypatch):
    """A point disturbed while measured (5x its time) is measured again and the faster
    median kept."""
    from perfmodel import _sweep

    measure, disturbed = _sweep._measure_point, []

    def first_call_slow(point, *args, **kwargs):
        row, samples = measure(point, *args, **kwargs)
        if (point.kernel == "spmm_csr_f32" and point.problem.sparsity == 0.9
                and point.problem.dims["m"] == 7 and not disturbed):
            row = {**row, "median_s": 5 * row["median_s"]}
            disturbed.append(row["median_s"])
        return row, samples

    monkeypatch.setattr(_sweep, "_measure_point", first_call_slow)
    spec = tiny_spec(kernels=["spmm_csr_f32"])
    summary = perfmodel.sweep(spec, tmp_path / "r.db", progress=False, recheck=True)
    assert disturbed and summary.rechecked >= 1 and summary.recheck_kept >= 1
    assert "faster the second time (kept)" in str(summary)
    df = load_results(tmp_path / "r.db")
    assert len(df) == summary.measured == 4 and df.point_key.is_unique
    # the stored time is the second measurement's (undisturbed: about a fifth)
    assert df[(df.m == 7) & (df.sparsity == 0.9)]["median_s"].item() < disturbed[0] / 2
    # suspects are only the slower of two neighbouring sparsities of one configuration
    keyed = [(p, p.key("x")) for p in load_spec(spec).points]
    medians = {k: (2.0 if p.problem.sparsity == 0.9 else 1.0) for p, k in keyed}
    slow = _sweep._slower_than_sparser_neighbour(keyed, medians)
    assert {p.problem.sparsity for p, _ in slow} == {0.9} and len(slow) == 2
    medians = {k: (1.05 if p.problem.sparsity == 0.9 else 1.0) for p, k in keyed}
    assert _sweep._slower_than_sparser_neighbour(keyed, medians) == []


def test_passes_keep_the_fastest_median_and_resume(store_url, monkeypatch):
    """Every point measured ``passes`` times, in passes over the whole spec; the store
    keeps the fastest median; a pass cut short (``limit``) is finished by the rerun."""
    from perfmodel import _sweep

    measure, medians = _sweep._measure_point, {}
    median_s = {1: 3e-3, 2: 1e-3, 3: 2e-3}  # the n-th measurement of any point

    def scaled(point, *args, **kwargs):
        row, samples = measure(point, *args, **kwargs)
        calls = medians.setdefault(point, [])
        calls.append(median_s[len(calls) + 1])
        return {**row, "median_s": calls[-1]}, samples

    monkeypatch.setattr(_sweep, "_measure_point", scaled)
    spec = {**tiny_spec(), "passes": 2}
    first = perfmodel.sweep(spec, store_url, progress=False, limit=13)
    assert first.measured == 10 and first.pass_measured == 3 and first.pass_kept == 3
    df = load_results(store_url)
    assert sorted(df.passes.tolist()) == [1] * 7 + [2] * 3
    rest = perfmodel.sweep(spec, store_url, progress=False, passes=3)
    # pass 2 for the 7 behind, then pass 3 for all 10 (slower: nothing replaced)
    assert rest.measured == 0 and rest.pass_measured == 17 and rest.pass_kept == 7
    assert "17 measured again in later passes, 7 faster than before (kept)" in str(rest)
    df = load_results(store_url)
    assert len(df) == 10 and df.point_key.is_unique and (df.passes == 3).all()
    assert set(len(v) for v in medians.values()) == {3}
    assert (df.median_s == 1e-3).all()  # each point's second measurement, the fastest
    again = perfmodel.sweep(spec, store_url, progress=False, passes=3)
    assert again.measured == again.pass_measured == 0
    with pytest.raises(ValueError, match="passes must be an int"):
        perfmodel.sweep(spec, store_url, progress=False, passes=0)


def test_block_patterns_params_threads_and_cold_cache(tmp_path):
    spec = tiny_spec(kernels=["spmm_csr_f32"], patterns=["block2x4", "dense"],
                     sparsities=[0.75], threads=[1, 2], cache=["warm", "cold"],
                     params={"spmm_csr_f32": {"reg_vectors": [1, 2]}})
    summary = perfmodel.sweep(spec, tmp_path / "r.db", progress=False)
    df = load_results(tmp_path / "r.db")
    # 2 shapes x 2 patterns x 2 params x 2 threads x 2 caches
    assert summary.measured == len(df) == 32 and (df.status == "ok").all()
    assert set(df.pattern) == {"block2x4", "dense"} and set(df.cache) == {"warm", "cold"}
    assert set(df.threads) == {1, 2}
    assert {int(p.split('"reg_vectors":')[1][0]) for p in df.params} == {1, 2}
    assert (df[df.pattern == "dense"].density == 1).all()


def test_make_sparse_patterns():
    rng = np.random.default_rng(0)
    a = ops.make_sparse((13, 7), 0.5, "random", rng)
    assert a.nnz == round(0.5 * 13 * 7) and a.dtype == np.float32
    assert a.indices.dtype == np.int32 and a.has_sorted_indices
    b = ops.make_sparse((13, 7), 0.5, "block4x2", rng)
    mask = b.toarray() != 0
    blocks = mask[:12, :6].reshape(3, 4, 3, 2).any(axis=(1, 3))
    full = mask[:12, :6].reshape(3, 4, 3, 2).all(axis=(1, 3))
    assert (blocks == full).all()  # every 4x2 block is all-nonzero or all-zero
    assert ops.make_sparse((3, 3), 0.0, "dense", rng).nnz == 9
    with pytest.raises(ValueError, match="block<R>x<C>"):
        ops.parse_pattern("blocky")


class _BrokenSpmm(ops.SpmmOp):
    """spmm whose 'ours' kernel is off by one on every output (must fail verification)."""

    name = "broken_spmm"

    def prepare(self, kernel, inputs, params, threads, isa):
        prepared = super().prepare(kernel, inputs, params, threads, isa)
        if kernel == "spmm_csr_f32":
            good = prepared.output
            prepared.output = lambda: good() + 1.0
        return prepared


def test_failed_verification_is_recorded_and_the_sweep_continues(tmp_path, monkeypatch):
    monkeypatch.setitem(ops.OPS, "broken_spmm", _BrokenSpmm())
    spec = tiny_spec(op="broken_spmm")
    summary = perfmodel.sweep(spec, tmp_path / "r.db", progress=False)
    df = load_results(tmp_path / "r.db")
    bad = df[df.kernel == "spmm_csr_f32"]
    assert len(bad) == 4 and (bad.status == "invalid").all()
    assert bad.error.str.startswith("verification failed").all()
    assert bad.median_s.isna().all() and (bad.n_samples == 0).all()
    assert (df[df.kernel != "spmm_csr_f32"].status == "ok").all()
    assert summary.status == {"invalid": 4, "ok": 6}


class _FailingSpmm(ops.SpmmOp):
    """spmm whose kernels fail in the ways real kernels can: a parameter combination the
    plan refuses, and an error while running."""

    name = "failing_spmm"

    def prepare(self, kernel, inputs, params, threads, isa):
        if kernel == "scipy_csr":
            raise ValueError("n_tile must be a multiple of the vector width")
        if params.get("acc_sets") == 1:  # what kernels_c._loader raises
            raise RuntimeError("compiling kernels_c variant spmm {'SPMM_ACC_SETS': 1} "
                               "failed (is a C compiler installed? 'cc'): no cc")
        prepared = super().prepare(kernel, inputs, params, threads, isa)
        if kernel == "gemm_blas_f32":
            def boom():
                raise RuntimeError("kernel returned error code 2")
            prepared.run = boom
        return prepared


def test_plan_and_run_failures_become_failed_points(tmp_path, monkeypatch):
    monkeypatch.setitem(ops.OPS, "failing_spmm", _FailingSpmm())
    spec = tiny_spec(op="failing_spmm", params={"spmm_csr_f32": {"acc_sets": [1, 2]}})
    summary = perfmodel.sweep(spec, tmp_path / "r.db", progress=False)
    df = load_results(tmp_path / "r.db").set_index("kernel")
    assert summary.status == {"ok": 4, "compile_failed": 4, "invalid": 4,
                              "runtime_failed": 2}
    assert df.loc["scipy_csr"].error.str.contains("vector width").all()
    assert df.loc["gemm_blas_f32"].error.str.contains("error code 2").all()
    ours = df.loc["spmm_csr_f32"]
    assert (ours[ours.status == "compile_failed"].error.str.contains("no cc")).all()


@pytest.mark.parametrize("mutate,match", [
    (lambda s: s["block"][0].update(op="fft"), r"block\[0\]\.op: unknown op 'fft'; allowed:"),
    (lambda s: s["block"][0].update(kernels=["cublas"]),
     r"block\[0\]\.kernels: unknown kernel\(s\) \['cublas'\].*allowed: spmm_csr_f32"),
    (lambda s: s["block"][0].update(layers="vgg16"),
     r"block\[0\]\.layers: unknown layer set 'vgg16'; known: alexnet"),
    (lambda s: s["block"][0].update(matrices="no/such/folder"),
     r"block\[0\]\.matrices: matrix file or folder 'no/such/folder' not found"),
    (lambda s: s["block"][0].update(sparsities=[1.5]), r"block\[0\]\.sparsities: expected a"),
    (lambda s: s["block"][0].update(patterns=["stripes"]), r"block\[0\]\.patterns: pattern"),
    (lambda s: s["block"][0].update(shapes=[{"m": 3, "k": 3}]),
     r"block\[0\]\.shapes\[0\]: missing dimension\(s\) \['n'\]"),
    (lambda s: s["block"][0].update(shapes=[{"m": 3, "k": 3, "n": 0}]),
     r"block\[0\]\.shapes\[0\]\.n: expected an integer"),
    (lambda s: s["block"][0].update(params={"spmm_csr_f32": {"reg_vectors": [3]}}),
     r"params\.spmm_csr_f32: .*reg_vectors: values \[3\] not allowed; allowed: \[1, 2, 4, 8\]"),
    (lambda s: s["block"][0].update(params={"spmm_csr_f32": {"unroll": [3]}}),
     r"has no parameter 'unroll'"),
    (lambda s: s["block"][0].update(cache=["lukewarm"]), r"block\[0\]\.cache: .*allowed: warm"),
    (lambda s: s["block"][0].update(colour="red"), r"block\[0\]\.colour: unknown field"),
    (lambda s: s.update(threads=[0]), r"field threads: expected an integer in \[1, 1024\]"),
    (lambda s: s.update(budget="1s"), r"field budget: unknown field; allowed: block, budget_s"),
    (lambda s: s.update(block=[]), r"field block: needs at least one"),
    (lambda s: s.update(passes=0), r"field passes: expected an integer in \[1, 100\]"),
    (lambda s: s.update(passes="3"), r"field passes: expected an integer"),
    (lambda s: s["block"][0].pop("shapes"), r"needs at least one of shapes, layers, matrices"),
])
def test_bad_spec_fields_are_named(mutate, match):
    spec = tiny_spec()
    mutate(spec)
    with pytest.raises(SpecError, match=match):
        load_spec(spec)


def test_spec_files_and_presets(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a file and not a preset"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(SpecError, match="does not parse"):
        load_spec(bad)
    yml = tmp_path / "s.yaml"
    yml.write_text("block:\n  - op: spmm\n    shapes: [{m: 3, k: 3, n: 3}]\n")
    spec = load_spec(yml)
    assert spec.name == "s" and len(spec.points) == len(ops.get_op("spmm").kernels)
    sizes = {name: len(load_spec(name).points) for name in PRESETS}
    assert 50 <= sizes["quick"] < sizes["standard"] < sizes["full"]
    quick = load_spec("quick")
    assert {p.op for p in quick.points} >= {"spmm", "conv2d"}
    keys = [p.key("x") for p in quick.points]
    assert len(set(keys)) == len(keys)


def test_standard_preset_ends_with_the_generated_grid_blocks(tmp_path):
    """The standard preset's shape grids are what benchmarks/make_preset_grids.py prints
    (so they can be regenerated and reviewed): dense BLAS alone on the GEMM shapes (once
    per thread count), every convolution kernel on the convolution shapes, our spmm kernel
    at 7 sparsities and BLAS on the sparse x dense GEMM shapes."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "make_preset_grids.py"
    printed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             check=True).stdout
    assert (PRESET_DIR / "standard.toml").read_text().endswith(printed)
    (tmp_path / "grid.toml").write_text(printed)
    grid = load_spec(tmp_path / "grid.toml")
    sparse = [p for p in grid.points if p.kernel == "spmm_csr_f32"]
    assert len(sparse) == 48 * 7 and {p.threads for p in sparse} == {1}
    gemms = [p for p in grid.points if p.op != "conv2d" and p not in sparse]
    assert {p.kernel for p in gemms} == {"gemm_blas_f32"}
    assert len(gemms) == 48 * 2 + 48 + 48 + 48
    convs = [p for p in grid.points if p.op == "conv2d"]
    assert len(convs) == 48 * (1 + 7) * 2  # im2col once, direct at 7 sparsities; 2 threads
    assert set(grid.points) <= set(load_spec("standard").points)


def test_layer_sets_expand_per_op():
    spec = load_spec({"block": [{"op": "spmm", "layers": ["bert-base", "fbgemm"],
                                 "kernels": ["spmm_csr_f32"], "sparsities": [0.9]},
                                {"op": "conv2d", "layers": "resnet50",
                                 "kernels": ["conv_direct_sparse_f32"], "sparsities": [0.9]}]})
    by_op = {op: [p for p in spec.points if p.op == op] for op in ("spmm", "conv2d")}
    assert len(by_op["spmm"]) == len(LAYER_SETS["bert-base"]) + len(LAYER_SETS["fbgemm"])
    convs = [lay for lay in LAYER_SETS["resnet50"] if lay.kind == "conv"]
    assert len(by_op["conv2d"]) == len(convs)
    qkv = next(p for p in by_op["spmm"] if p.problem.layer == "bert-base:attention.qkv")
    assert qkv.problem.dims == {"m": 2304, "k": 768, "n": 128}
    assert all(p.problem.layer for p in spec.points)


def _write_matrices(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    a = ops.make_sparse((5, 9), 0.6, "random", rng)
    (folder / "layer_a.smtx").write_text(
        f"5, 9, {a.nnz}\n{' '.join(map(str, a.indptr))}\n{' '.join(map(str, a.indices))}\n")
    import scipy.io

    scipy.io.mmwrite(folder / "layer_b.mtx", sp.coo_matrix(a.toarray()))
    sp.save_npz(folder / "layer_c.npz", sp.csr_matrix(a))


def test_real_matrix_folder_sweep(tmp_path):
    folder = tmp_path / "mats"
    _write_matrices(folder)
    found = matrix_sources(folder)
    assert [s.path.name for s in found] == ["layer_a.smtx", "layer_b.mtx", "layer_c.npz"]
    m = load_matrix(folder / "layer_a.smtx", seed=3)
    assert m.shape == (5, 9) and m.dtype == np.float32
    np.testing.assert_array_equal(m.data, load_matrix(folder / "layer_a.smtx", seed=3).data)
    spec = {"name": "real", **FAST, "block": [{"op": "spmm", "matrices": str(folder),
                                               "n": [4], "kernels": ["spmm_csr_f32"]}]}
    perfmodel.sweep(spec, tmp_path / "r.db", progress=False)
    df = load_results(tmp_path / "r.db")
    assert len(df) == 3 and (df.status == "ok").all() and (df.pattern == "real").all()
    assert sorted(df.layer) == ["layer_a", "layer_b", "layer_c"]
    assert df.matrix.str.endswith(("smtx", "mtx", "npz")).all()
    assert np.allclose(df.sparsity, 1 - df.density)


def test_dlmc_folder_gives_real_points():
    folder = require_dlmc() / "0.8"
    spec = load_spec({"block": [{"op": "spmm", "matrices": str(folder), "max_matrices": 3,
                                 "kernels": ["spmm_csr_f32"]}]})
    assert len(spec.points) == 3
    p = spec.points[0].problem
    assert p.pattern == "real" and p.sparsity == pytest.approx(0.8)
    assert p.dims["n"] == 3136  # from rn50_batchsizes.txt


def test_cli_sweep_import_export(tmp_path, capsys, store_url):
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(textwrap.dedent("""
        name = "cli"
        budget_s = 0.01
        min_samples = 6
        [[block]]
        op = "spmm"
        kernels = ["spmm_csr_f32"]
        shapes = [{m = 3, k = 7, n = 13}]
        sparsities = [0.5]
    """))
    a, b = tmp_path / "a.db", store_url  # merge a file into every backend
    assert cli.main(["sweep", str(spec_file), "--db", str(a), "--no-progress"]) == 0
    assert "1 measured" in capsys.readouterr().out
    assert cli.main(["sweep", str(spec_file), "--db", str(a), "--no-progress"]) == 0
    assert "0 measured, 1 already in the store" in capsys.readouterr().out
    assert cli.main(["sweep", str(spec_file), "--db", str(a), "--no-progress",
                     "--passes", "2"]) == 0
    assert "1 measured again in later passes" in capsys.readouterr().out
    assert cli.main(["import", str(a), "--db", str(b)]) == 0
    assert cli.main(["import", str(a), "--db", str(b)]) == 0
    out = capsys.readouterr().out
    assert "1 measurements added" in out and "0 measurements added, 1 already" in out
    assert cli.main(["export", str(tmp_path / "r.csv"), "--db", str(b)]) == 0
    assert (tmp_path / "r.csv").read_text().count("\n") == 2
    assert cli.main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert cli.main(["import", str(tmp_path / "nope.db"), "--db", str(b)]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[block]]\nop = "fft"\nshapes = []\n')
    assert cli.main(["sweep", str(bad), "--db", str(a)]) == 2
    assert "block[0].op: unknown op 'fft'" in capsys.readouterr().err


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    import perfmodel
    spec = {"name": "victim", "budget_s": 0.1, "min_samples": 50, "target_rel_ci": 0.001,
            "block": [{"op": "spmm", "kernels": ["spmm_csr_f32", "scipy_csr"],
                       "shapes": [{"m": 64, "k": 64, "n": 16}, {"m": 31, "k": 64, "n": 8}],
                       "sparsities": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]}]}
    perfmodel.sweep(spec, store=sys.argv[1], progress=False)
""")


def test_sweep_killed_with_sigkill_resumes_without_loss_or_duplicates(store_url, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, store_url], env=env)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # kill it mid-sweep, after a few points
            time.sleep(0.05)
            if proc.poll() is not None:
                break
            try:
                n = len(load_results(store_url))
            except Exception:  # store not created yet
                continue
            if n >= 5:
                break
        assert proc.poll() is None, "the sweep finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with open_store(store_url) as st:
        before = st.results()
        assert 5 <= len(before) < 40
        samples = st.samples()
        # every stored point is complete: all its samples, none orphaned
        counts = samples.groupby("measurement_id").size()
        assert (counts.loc[before.measurement_id].values == before.n_samples.values).all()
        assert set(samples.measurement_id) == set(before.measurement_id)
    spec = load_spec(_KILL_SCRIPT.split("spec = ")[1].split("\nperfmodel")[0]
                     and eval(_KILL_SCRIPT.split("spec = ")[1].split("\nperfmodel")[0]))
    spec.timing = type(spec.timing)(budget_s=0.005, min_samples=6)
    summary = perfmodel.sweep(spec, store_url, progress=False)
    assert summary.skipped == len(before) and summary.measured == 40 - len(before)
    after = load_results(store_url)
    assert len(after) == 40 and after.point_key.is_unique
    kept = after.set_index("measurement_id").loc[before.measurement_id]
    assert (kept.median_s.values == before.median_s.values).all()  # untouched on resume


def test_conv2d_and_qgemm_points_verify_and_record_their_columns(tmp_path):
    spec = {"name": "ops", **FAST, "block": [
        {"op": "conv2d", "shapes": [{"c": 3, "h": 7, "w": 7, "o": 5, "r": 3, "s": 3,
                                     "padding": 1},
                                    {"c": 4, "h": 13, "w": 13, "o": 8, "r": 1, "s": 1,
                                     "stride": 2, "groups": 2, "batch": 2}],
         "sparsities": [0.5]},
        {"op": "qgemm", "kernels": ["gemm_u8s8_acc32", "gemm_s4s8_acc32", "gemm_blas_f32"],
         "shapes": [{"m": 3, "n": 7, "k": 13}, {"m": 1, "n": 17, "k": 64}]},
        {"op": "qgemm", "kernels": ["gemm_s4s8_acc32"], "shapes": [{"m": 7, "n": 16, "k": 40}],
         "params": {"gemm_s4s8_acc32": {"group_size": [16, 32]}}},
    ]}
    summary = perfmodel.sweep(spec, tmp_path / "r.db", progress=False)
    df = load_results(tmp_path / "r.db")
    assert summary.status == {"ok": len(df)} and len(df) == 4 + 6 + 2, df.error.tolist()
    conv = df[df.op == "conv2d"]
    assert set(conv.kernel) == {"conv_direct_sparse_f32", "conv_im2col_blas_f32"}
    assert conv.m.isna().all() and (conv.c > 0).all() and set(conv.groups) == {1, 2}
    q = df[df.op == "qgemm"]
    assert (q[q.kernel == "gemm_u8s8_acc32"].bits == 8).all()
    s4 = q[q.kernel == "gemm_s4s8_acc32"]
    assert (s4.bits == 4).all() and set(s4.group_size.dropna()) == {16, 32, 64}
    assert q[q.kernel == "gemm_blas_f32"].bits.isna().all()
    assert (q.flops == 2 * q.m * q.n * q.k).all() and (q.pattern == "dense").all()


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(textwrap.dedent("""
        name = "interrupted"
        budget_s = 0.2
        min_samples = 50
        target_rel_ci = 0.001
        [[block]]
        op = "spmm"
        kernels = ["spmm_csr_f32", "scipy_csr"]
        shapes = [{m = 64, k = 64, n = 16}]
        sparsities = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    """))
    db = tmp_path / "r.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "PERFMODEL_HOME": str(tmp_path / "home"),
           # a hang after Ctrl-C is diagnosed below: SIGABRT then dumps every thread's stack
           "PYTHONFAULTHANDLER": "1"}
    # a shell that starts the test run in the background leaves SIGINT ignored, and an
    # ignored disposition is inherited: restore the default so Python installs its handler
    proc = subprocess.Popen([sys.executable, "-m", "perfmodel", "sweep", str(spec_file),
                             "--db", str(db), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            if len(load_results(db)) >= 3:
                break
        except Exception:
            continue
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the sweep did not stop within 60 s of Ctrl-C; its stacks:\n{err[-6000:]}")
    assert proc.returncode == 130 and "rerun the same command to resume" in err
    done = len(load_results(db))
    with open_store(db) as st, st.engine.connect() as conn:
        statuses = [r[0] for r in conn.exec_driver_sql("SELECT status FROM runs")]
    assert statuses == ["interrupted"]
    assert cli.main(["sweep", str(spec_file), "--db", str(db), "--no-progress"]) == 0
    df = load_results(db)
    assert len(df) == 20 and df.point_key.is_unique and done < 20


def test_optional_peers_run_or_are_counted_unavailable(tmp_path):
    op = ops.get_op("spmm")
    peers = ["torch_csr", "mkl_csr"]
    missing = {k for k in peers if op.available(k) is not None}
    summary = perfmodel.sweep(tiny_spec(kernels=peers), tmp_path / "r.db", progress=False)
    df = load_results(tmp_path / "r.db")
    assert summary.unavailable == 4 * len(missing)
    assert set(df.kernel) == set(peers) - missing
    assert (df.status == "ok").all(), df.error.tolist()
    q = {"name": "q", **FAST, "block": [{"op": "qgemm", "kernels": ["torch_fbgemm_u8s8"],
                                          "shapes": [{"m": 3, "n": 7, "k": 13},
                                                     {"m": 16, "n": 64, "k": 100}]}]}
    summary = perfmodel.sweep(q, tmp_path / "q.db", progress=False)
    if ops.get_op("qgemm").available("torch_fbgemm_u8s8") is None:
        assert summary.status == {"ok": 2}
        assert (load_results(tmp_path / "q.db").bits == 8).all()
    else:
        assert summary.unavailable == 2
