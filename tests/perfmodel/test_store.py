"""The results store on every backend (SQLite file, PostgreSQL server)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event

import perfmodel
from perfmodel.store import StoreError, load_results, load_samples, open_store, tables
from perfmodel.store import store as store_mod

CONTRACT_COLUMNS = (
    "measurement_id run_id machine_id machine fingerprint sweep op kernel isa threads params "
    "m n k c h w o r s stride padding batch groups bits group_size layer matrix sparsity "
    "density nnz pattern cache status error median_s min_s mean_s iqr_s ci_low_s ci_high_s "
    "rel_ci n_samples converged noisy flops gflops loadavg versions timestamp").split()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFMODEL_HOME", str(tmp_path / "home"))


def _row(key: str, **extra) -> dict:
    row = dict(point_key=key, op="spmm", kernel="spmm_csr_f32", status="ok", isa="avx512",
               threads=1, params={"reg_vectors": 4, "n_tile": 0}, m=7, n=13, k=3,
               sparsity=0.9, density=0.1, nnz=2, pattern="random", median_s=1e-3,
               min_s=9e-4, converged=True, flops=2 * 7 * 13 * 3 * 0.1)
    row.update(extra)
    return row


def _add(st, key, samples=(1e-3, 2e-3, 3e-3), **extra):
    mid = st.machine_id()
    rid = st.start_run(mid, "test")
    return st.add_measurement(rid, mid, _row(key, **extra), samples)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_roundtrip_columns_and_types(store_url):
    with open_store(store_url) as st:
        assert st.schema_version == tables.SCHEMA_VERSION
        assert load_results(st).empty
        assert list(load_results(st).columns[:len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
        mid = _add(st, "a", samples=[3e-3, 1e-3, 2e-3], median_s=float("nan"))
        _add(st, "b", layer="conv1", matrix="x.smtx", op="conv2d", kernel="conv_direct_sparse_f32")
        df = perfmodel.load_results(st)
    assert len(df) == 2
    assert list(df.columns[:len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    a = df.iloc[0]
    assert a.measurement_id == mid and a.op == "spmm" and a.m == 7 and np.isnan(a.h)
    assert np.isnan(a.median_s)  # NaN stored as NULL, read back as NaN
    assert json.loads(a.params) == {"n_tile": 0, "reg_vectors": 4}
    assert a.params == '{"n_tile":0,"reg_vectors":4}'  # canonical text: sorted keys
    assert df.converged.dtype == bool and df.m.dtype == np.float64
    assert df.iloc[1].layer == "conv1" and df.iloc[1].matrix == "x.smtx"
    s = load_samples(store_url, [mid])
    assert s.seconds.tolist() == [3e-3, 1e-3, 2e-3] and s.idx.tolist() == [0, 1, 2]
    assert list(load_results(store_url, op="conv2d").op) == ["conv2d"]


def test_duplicate_point_is_kept_once_and_replace_swaps_it(store_url):
    with open_store(store_url) as st:
        first = _add(st, "p", samples=[1.0])
        assert _add(st, "p", samples=[2.0, 2.0]) is None
        assert len(st.results()) == 1 and st.samples().seconds.tolist() == [1.0]
        mid = st.machine_id()
        rid = st.start_run(mid, "again")
        new = st.add_measurement(rid, mid, _row("p", kernel="other"), [5.0, 6.0], replace=True)
        assert new is not None and new != first
        df = st.results()
        assert df.kernel.tolist() == ["other"]
        assert st.samples().seconds.tolist() == [5.0, 6.0]
        assert st.measured_keys(mid) == {"p"}


def test_measurement_and_samples_are_one_transaction(store_url):
    with open_store(store_url) as st:
        mid = st.machine_id()
        rid = st.start_run(mid, "t")

        def fail_on_samples(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith("INSERT INTO SAMPLES"):
                raise RuntimeError("simulated crash while writing samples")

        event.listen(st.engine, "before_cursor_execute", fail_on_samples)
        with pytest.raises(RuntimeError, match="simulated"):
            st.add_measurement(rid, mid, _row("x"), [1.0, 2.0])
        event.remove(st.engine, "before_cursor_execute", fail_on_samples)
        assert st.results().empty and st.samples().empty
        assert st.add_measurement(rid, mid, _row("x"), [1.0]) is not None


def test_bad_rows_are_rejected_with_the_field_name(store_url):
    with open_store(store_url) as st:
        mid = st.machine_id()
        rid = st.start_run(mid, "t")
        with pytest.raises(ValueError, match=r"unknown measurement field.*bogus"):
            st.add_measurement(rid, mid, _row("x", bogus=1))
        with pytest.raises(ValueError, match="status 'weird' invalid"):
            st.add_measurement(rid, mid, _row("x", status="weird"))
        with pytest.raises(ValueError, match="point_key"):
            st.add_measurement(rid, mid, _row(""))


def test_two_concurrent_writers_lose_nothing(store_url):
    open_store(store_url).close()
    script = textwrap.dedent("""
        import sys
        from perfmodel.store import open_store
        url, who = sys.argv[1], int(sys.argv[2])
        st = open_store(url)
        mid = st.machine_id("fp-shared", "box")
        rid = st.start_run(mid, f"writer{who}")
        for i in range(40):
            key = f"shared{i}" if i % 2 else f"own{who}_{i}"
            st.add_measurement(rid, mid, dict(point_key=key, op="spmm", kernel="k",
                               status="ok", median_s=float(i)), [float(i)] * 20)
        st.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, store_url, str(w)])
             for w in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with open_store(store_url) as st:
        df = st.results()
        assert len(df) == 20 + 20 + 20  # 20 own per writer + 20 shared points once each
        assert df.point_key.is_unique
        counts = st.samples().groupby("measurement_id").size()
        assert (counts == 20).all() and len(counts) == 60


def test_merge_is_idempotent_and_keeps_samples(store_url, tmp_path):
    other_path = tmp_path / "other.db"
    with open_store(other_path) as other:
        mid = other.machine_id("fp-other", "far-away")
        rid = other.start_run(mid, "remote")
        for key in ("a", "b", "c"):
            other.add_measurement(rid, mid, _row(key), [1.0, 2.0])
        other.record_tuned({"op": "spmm", "m": 7}, "spmm_csr_f32", {"reg_vectors": 2}, 1e-3,
                           "study", fingerprint="fp-other")
    with open_store(store_url) as st:
        _add(st, "a")  # same key, but this machine: a different point
        ro = open_store(other_path, readonly=True)
        first = st.merge_from(ro)
        second = st.merge_from(ro)
        ro.close()
        assert first["measurements"] == 3 and first["tuned"] == 1
        assert second["measurements"] == 0 and second["skipped"] == 3
        df = st.results()
        assert len(df) == 4
        assert sorted(df.machine.unique()) == sorted(["far-away", df.machine.iloc[0]])
        far = df[df.fingerprint == "fp-other"]
        assert (st.samples(far.measurement_id).groupby("measurement_id").size() == 2).all()
        assert st.tuned_config({"m": 7, "op": "spmm"}, fingerprint="fp-other")["params"] == {
            "reg_vectors": 2}


def test_tuned_configs_keep_the_best(store_url):
    with open_store(store_url) as st:
        problem = {"op": "spmm", "m": 64, "k": 64, "n": 32, "sparsity": 0.9}
        assert st.tuned_config(problem) is None
        assert st.record_tuned(problem, "spmm_csr_f32", {"reg_vectors": 1}, 2e-3, "s1")
        assert not st.record_tuned(dict(reversed(problem.items())), "x", {}, 3e-3, "s2")
        assert st.record_tuned(problem, "spmm_csr_f32", {"reg_vectors": 4}, 1e-3, "s3")
        best = st.tuned_config(problem)
        assert best["params"] == {"reg_vectors": 4} and best["study_name"] == "s3"
        assert best["seconds"] == pytest.approx(1e-3)
        with pytest.raises(ValueError, match="positive finite"):
            st.record_tuned(problem, "x", {}, float("nan"))
        other = {**problem, "n": 64}
        st.record_tuned(other, "gemm_blas_f32", {}, 5e-3, "s4")
        st.record_tuned(other, "x", {}, 1e-4, "far", fingerprint="fp-other")
        from perfmodel.store.store import problem_key

        every = st.tuned_configs()  # this machine's only
        assert set(every) == {problem_key(problem), problem_key(other)}
        assert every[problem_key(other)]["kernel"] == "gemm_blas_f32"
        assert every[problem_key(problem)] == best


def test_newer_schema_is_refused_and_left_alone(store_url):
    with open_store(store_url) as st:
        _add(st, "a")
        with st._write() as conn:
            conn.execute(tables.schema_version.update().values(version=99))
    path = Path(store_url) if "://" not in store_url else None
    before = _sha(path) if path else None
    with pytest.raises(StoreError, match="schema version 99, newer"):
        open_store(store_url)
    if path:
        assert _sha(path) == before


def test_older_schema_is_migrated(store_url, monkeypatch):
    from sqlalchemy import text

    with open_store(store_url) as st:
        _add(st, "a")
        with st._write() as conn:  # back to schema version 1: no measurements.passes
            conn.execute(text("ALTER TABLE measurements DROP COLUMN passes"))
            conn.execute(tables.schema_version.update().values(version=1))
    with pytest.raises(StoreError, match="open it writable once"):
        open_store(store_url, create=False, readonly=True)
    with open_store(store_url) as st:
        assert st.schema_version == tables.SCHEMA_VERSION == 2
        df = st.results()
        assert len(df) == 1 and df.passes.tolist() == [1]  # measured once
    calls = []
    monkeypatch.setattr(tables, "SCHEMA_VERSION", 3)  # no migration 2 -> 3 registered
    with pytest.raises(StoreError, match="no migration from schema version 2"):
        open_store(store_url)
    monkeypatch.setitem(store_mod.MIGRATIONS, 2, lambda conn: calls.append(conn))
    with open_store(store_url) as st:
        assert st.schema_version == 3 and len(calls) == 1
        assert len(st.results()) == 1
    with open_store(store_url) as st:
        assert len(calls) == 1  # already migrated


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_file_is_refused_untouched(tmp_path, content):
    path = tmp_path / "results.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=r"not an SQLite database|corrupt"):
        open_store(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "photos.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO photos VALUES (1, 'cat')")
    con.commit()
    con.close()
    before = _sha(path)
    with pytest.raises(StoreError, match="another application"):
        open_store(path)
    assert _sha(path) == before


def test_open_store_normalizes_every_form(tmp_path):
    st = open_store(None)
    assert st.path == tmp_path / "home" / "results.db" and st.path.is_file()
    assert open_store(st) is st
    st.close()
    p = tmp_path / "sub" / "r.db"
    with open_store(p) as a, open_store(str(p)) as b, open_store(f"sqlite:///{p}") as c:
        assert a.path == b.path == c.path == p
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "missing.db", create=False)
    with pytest.raises(StoreError, match="unsupported store URL"):
        open_store("mysql://u@h/db")
    with pytest.raises(StoreError, match="cannot open store postgresql"):
        open_store("postgresql+psycopg2://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(StoreError, match="is a directory"):
        open_store(tmp_path)


def test_export_csv_and_parquet_message(tmp_path):
    with open_store(tmp_path / "r.db") as st:
        _add(st, "a")
        out = st.export(tmp_path / "r.csv")
        df = pd.read_csv(out)
        assert df.point_key.tolist() == ["a"] and "median_s" in df.columns
        with pytest.raises(StoreError, match=r"csv or \.parquet"):
            st.export(tmp_path / "r.xlsx")
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            with pytest.raises(StoreError, match="needs pyarrow"):
                st.export(tmp_path / "r.parquet")
        else:
            assert len(pd.read_parquet(st.export(tmp_path / "r.parquet"))) == 1


def test_readonly_store_refuses_writes(tmp_path):
    path = tmp_path / "r.db"
    with open_store(path) as st:
        _add(st, "a")
    with open_store(path, readonly=True) as ro:
        assert len(ro.results()) == 1
        with pytest.raises(StoreError, match="read-only"):
            ro.start_run(1, "x")
