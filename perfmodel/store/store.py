"""The results store: one class over SQLAlchemy that serves SQLite and PostgreSQL alike.

Contract (callers may rely on it):

- :func:`open_store` is the one normalizer: ``None`` means the default SQLite file
  (:func:`perfmodel._paths.default_store_path`), a string with ``://`` is an SQLAlchemy URL,
  anything else a path to an SQLite file; an open :class:`Store` is returned as is.
- Every write is its own transaction. :meth:`Store.add_measurement` writes a measurement
  and all its samples at once or not at all, so a process killed at any instant leaves
  either the whole point or nothing. SQLite writes take the lock up front
  (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout`` for it, so concurrent writers queue
  instead of failing.
- A point is unique per machine (``machine_id``, ``point_key``): inserting it twice keeps
  the first (or replaces it when asked), so resumed, concurrent and merged sweeps never
  duplicate a point.
- Files that are not SQLite, SQLite files of another application and stores written by a
  newer version of this code are refused with :class:`StoreError` before anything is
  written; older stores are migrated in place.
- Returned DataFrames are fresh copies; changing them does not change the store.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from .. import _context
from .._paths import default_store_path
from . import tables as T

APP = "perfmodel-suite"
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 60_000


def _add_passes(conn: Connection) -> None:
    """1 -> 2: ``measurements.passes`` (every point stored so far was measured once)."""
    conn.execute(text("ALTER TABLE measurements ADD COLUMN passes INTEGER NOT NULL DEFAULT 1"))


#: migrations: ``MIGRATIONS[v](conn)`` upgrades a store from version v to v + 1
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _add_passes}

#: load_results columns, in order (see notes/CONTRACTS.md)
RESULT_COLUMNS: tuple[str, ...] = (
    "measurement_id", "run_id", "machine_id", "machine", "fingerprint", "sweep", "op",
    "kernel", "isa", "threads", "params", *T.SHAPE_COLUMNS, "layer", "matrix", "sparsity",
    "density", "nnz", "pattern", "cache", "status", "error", "median_s", "min_s", "mean_s",
    "iqr_s", "ci_low_s", "ci_high_s", "rel_ci", "n_samples", "converged", "noisy", "flops",
    "gflops", "loadavg", "versions", "timestamp", "point_key", "passes",
)
STATUSES = ("ok", "invalid", "compile_failed", "runtime_failed")


class StoreError(ValueError):
    """The store cannot be opened or used as asked (the message says why and what to do)."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and numpy scalars as Python numbers (stable text for keys)."""
    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, (set, frozenset, tuple)):
            return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"cannot store {type(obj).__name__} {obj!r} as JSON")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)


def _key(value: Any) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:40]


def problem_key(problem: dict[str, Any]) -> str:
    """The key :meth:`Store.tuned_configs` files a tuned problem dict under."""
    return _key(problem)


def _check_sqlite_file(path: Path) -> None:
    """Refuse non-SQLite, foreign or newer files without writing a byte to them."""
    if not path.exists():
        return
    if path.is_dir():
        raise StoreError(f"store path {path} is a directory; give a file path such as "
                         f"{path / 'results.db'}")
    with open(path, "rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if not header:
        return  # an empty file: becomes a new store
    if header != SQLITE_HEADER:
        raise StoreError(f"{path} is not an SQLite database (corrupt or another kind of "
                         f"file); it was left untouched. Give another path with --db/store=")
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1e3)
        try:
            names = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = app = None
            if "schema_version" in names:
                row = con.execute("SELECT version, app FROM schema_version").fetchone()
                version, app = (row if row else (None, None))
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is a corrupt SQLite database ({exc}); it was left "
                         f"untouched") from exc
    if names and (app != APP or version is None):
        raise StoreError(f"{path} is an SQLite database of another application (tables: "
                         f"{', '.join(sorted(names)[:6])}); it was left untouched")
    _check_version(version, str(path))


def _check_version(version: int | None, where: str) -> None:
    if version is not None and version > T.SCHEMA_VERSION:
        raise StoreError(f"store {where} has schema version {version}, newer than this "
                         f"perfmodel understands ({T.SCHEMA_VERSION}); upgrade perfmodel-suite "
                         f"to read it (nothing was changed)")


def _dialect_insert(dialect: str, table):  # type: ignore[no-untyped-def]
    if dialect == "postgresql":    # imported here: ~0.1 s that SQLite stores never need
        from sqlalchemy.dialects import postgresql as pg_dialect

        return pg_dialect.insert(table)
    if dialect == "sqlite":
        return sqlite_dialect.insert(table)
    raise StoreError(f"unsupported database {dialect!r}; use SQLite or PostgreSQL")


def with_installed_driver(url: str) -> str:
    """``postgresql://`` names no driver and SQLAlchemy 2.1 then picks psycopg 3; use
    psycopg2 (what the ``postgres`` extra installs) when only that one is present."""
    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is None and \
            importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


class Store:
    """An open results store. Create with :func:`open_store`."""

    def __init__(self, url: str, *, create: bool = True, readonly: bool = False) -> None:
        parsed = make_url(with_installed_driver(url))
        self.dialect = parsed.get_backend_name()
        self.readonly = readonly
        if self.dialect == "sqlite":
            db = parsed.database or ""
            if db in ("", ":memory:"):
                raise StoreError("an in-memory SQLite store cannot be shared or resumed; "
                                 "give a file path")
            path = Path(db).expanduser().resolve()
            if not path.exists() and (readonly or not create):
                raise FileNotFoundError(f"no store at {path}")
            _check_sqlite_file(path)
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.path: Path | None = path
            target = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else \
                f"sqlite:///{path}"
            self.engine: Engine = create_engine(
                target, connect_args={"timeout": BUSY_TIMEOUT_MS / 1e3})
            self._install_sqlite_hooks()
        elif self.dialect == "postgresql":
            self.path = None
            self.engine = create_engine(parsed, pool_pre_ping=True)
        else:
            raise StoreError(f"unsupported store URL scheme {parsed.drivername!r}; use a "
                             f"file path, sqlite:///PATH or postgresql://USER@HOST/DB")
        self.url = parsed.render_as_string(hide_password=True)
        self._machine_cache: dict[str, int] = {}
        try:
            self._prepare(create)
        except Exception:
            self.engine.dispose()
            raise

    # ---- connection handling -----------------------------------------------------------
    def _install_sqlite_hooks(self) -> None:
        readonly = self.readonly

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_con, _record):  # type: ignore[no-untyped-def]
            dbapi_con.isolation_level = None  # transactions are begun below
            cur = dbapi_con.cursor()
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            write = conn.get_execution_options().get("perfmodel_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextmanager
    def _write(self):  # type: ignore[no-untyped-def]
        if self.readonly:
            raise StoreError(f"store {self.url} was opened read-only")
        with self._transaction(write=True) as conn:
            yield conn

    @contextmanager
    def _read(self):  # type: ignore[no-untyped-def]
        with self._transaction(write=False) as conn:
            yield conn

    @contextmanager
    def _transaction(self, *, write: bool):  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            if write:
                conn = conn.execution_options(perfmodel_write=True)
            try:
                with conn.begin():
                    yield conn
            except (KeyboardInterrupt, SystemExit) as exc:
                # Ctrl-C inside a statement: SQLAlchemy closes the connection, but a
                # closed SQLite connection lives on, with its locks, while a statement of
                # it is still referenced -- here by the frames of this traceback. The next
                # write of this process (closing the run as interrupted) then waited
                # busy_timeout for a lock it held itself. Drop those frames' locals so the
                # statement is finalized and the connection really closes.
                traceback.clear_frames(exc.__traceback__)
                conn.invalidate()
                raise

    def _prepare(self, create: bool) -> None:
        try:
            names = set(inspect(self.engine).get_table_names())
        except OperationalError as exc:
            reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
            raise StoreError(f"cannot open store {self.url}: "
                             f"{reason[0] if reason else type(exc).__name__}") from exc
        if "schema_version" not in names:
            ours = {t.name for t in T.metadata.sorted_tables}
            if names & ours:
                raise StoreError(f"store {self.url} has tables named like ours "
                                 f"({', '.join(sorted(names & ours))}) but no schema_version; "
                                 f"it belongs to something else and was left untouched")
            if not create or self.readonly:
                raise StoreError(f"store {self.url} is empty (no perfmodel tables)")
            self._create()
            return
        with self._read() as conn:
            row = conn.execute(select(T.schema_version.c.version, T.schema_version.c.app)
                               ).first()
        if row is None or row.app != APP:
            raise StoreError(f"store {self.url} has a schema_version table of another "
                             f"application; it was left untouched")
        _check_version(row.version, self.url)
        if row.version < T.SCHEMA_VERSION:
            if self.readonly:
                raise StoreError(f"store {self.url} has schema version {row.version}; open "
                                 f"it writable once to migrate it to {T.SCHEMA_VERSION}")
            self._migrate()

    def _create(self) -> None:
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(5150001)"))
            T.metadata.create_all(conn, checkfirst=True)
            if conn.execute(select(T.schema_version.c.id)).first() is None:
                conn.execute(insert(T.schema_version).values(
                    id=1, version=T.SCHEMA_VERSION, app=APP))

    def _migrate(self) -> None:
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(5150001)"))
            version = conn.execute(select(T.schema_version.c.version)).scalar_one()
            while version < T.SCHEMA_VERSION:
                step = MIGRATIONS.get(version)
                if step is None:
                    raise StoreError(f"no migration from schema version {version} to "
                                     f"{version + 1}; the store was left unchanged")
                step(conn)
                version += 1
            conn.execute(update(T.schema_version).values(version=version))

    def close(self) -> None:
        """Release the connections (the store stays on disk / on the server)."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(T.schema_version.c.version)).scalar_one())

    # ---- machines and runs -------------------------------------------------------------
    def machine_id(self, fingerprint: str | None = None, name: str | None = None,
                   info: dict | None = None) -> int:
        """Id of a machine (created on first use); default: this machine."""
        if fingerprint is None:
            fingerprint, name, info = _context.machine()
        if fingerprint in self._machine_cache:
            return self._machine_cache[fingerprint]
        with self._write() as conn:
            conn.execute(_dialect_insert(self.dialect, T.machines).values(
                fingerprint=fingerprint, name=name or fingerprint,
                info=canonical_json(info or {}), created=_context.utc_now(),
            ).on_conflict_do_nothing(index_elements=["fingerprint"]))
            mid = conn.execute(select(T.machines.c.id).where(
                T.machines.c.fingerprint == fingerprint)).scalar_one()
        self._machine_cache[fingerprint] = int(mid)
        return int(mid)

    def start_run(self, machine_id: int, sweep: str, spec: Any = None,
                  versions: dict | None = None) -> int:
        """Record the start of a sweep; returns the run id."""
        with self._write() as conn:
            return int(conn.execute(insert(T.runs).values(
                uuid=str(uuid.uuid4()), machine_id=machine_id, sweep=sweep,
                spec=canonical_json(spec or {}), versions=canonical_json(versions or {}),
                started=_context.utc_now(), status="running",
            ).returning(T.runs.c.id)).scalar_one())

    def finish_run(self, run_id: int, status: str = "done") -> None:
        with self._write() as conn:
            conn.execute(update(T.runs).where(T.runs.c.id == run_id).values(
                finished=_context.utc_now(), status=status))

    # ---- measurements ------------------------------------------------------------------
    def measured_keys(self, machine_id: int) -> set[str]:
        """Point keys already stored for a machine (what a resumed sweep skips)."""
        with self._read() as conn:
            return set(conn.execute(select(T.measurements.c.point_key).where(
                T.measurements.c.machine_id == machine_id)).scalars())

    def stored_kernel_sources(self, machine_id: int) -> dict[str, str]:
        """Point key -> the kernel source digest stored with it (``versions``'
        ``kernel_source``), for the points of a machine that have one."""
        m = T.measurements
        with self._read() as conn:
            rows = conn.execute(select(m.c.point_key, m.c.versions).where(
                m.c.machine_id == machine_id, m.c.versions.like('%"kernel_source"%'))).all()
        out = {}
        for key, versions in rows:
            digest = json.loads(versions or "{}").get("kernel_source")
            if digest:
                out[key] = str(digest)
        return out

    def stored_passes(self, machine_id: int) -> dict[str, tuple[int, float]]:
        """Point key -> (passes, median seconds) of the points stored ok for a machine
        (what a sweep's later passes compare against)."""
        m = T.measurements
        with self._read() as conn:
            rows = conn.execute(select(m.c.point_key, m.c.passes, m.c.median_s).where(
                m.c.machine_id == machine_id, m.c.status == "ok")).all()
        return {r.point_key: (int(r.passes), float(r.median_s)) for r in rows}

    def set_passes(self, machine_id: int, point_key: str, passes: int) -> None:
        """Record that ``passes`` passes have measured a stored point (its median kept)."""
        m = T.measurements
        with self._write() as conn:
            conn.execute(update(m).where(m.c.machine_id == machine_id,
                                         m.c.point_key == point_key).values(passes=passes))

    def add_measurement(self, run_id: int, machine_id: int, row: dict[str, Any],
                        samples: Sequence[float] | np.ndarray = (), *,
                        replace: bool = False) -> int | None:
        """Store one measured point with its samples, atomically.

        Parameters
        ----------
        row : dict, measurement columns (see ``tables.measurements``); must hold
            ``point_key``, ``op``, ``kernel`` and ``status``. ``params``/``versions`` may be
            dicts (stored as canonical JSON).
        samples : 1-D sequence of float seconds, in the order taken.
        replace : replace an existing point with the same key (``--remeasure``) instead
            of keeping it.

        Returns
        -------
        The new measurement id, or None when the point existed and was kept.
        """
        values = _measurement_values(row)
        values.update(run_id=run_id, machine_id=machine_id)
        seconds = np.asarray(samples, dtype=np.float64).ravel()
        m = T.measurements
        with self._write() as conn:
            if replace:
                old = select(m.c.id).where(m.c.machine_id == machine_id,
                                           m.c.point_key == values["point_key"])
                conn.execute(delete(T.samples).where(T.samples.c.measurement_id.in_(old)))
                conn.execute(delete(m).where(m.c.machine_id == machine_id,
                                             m.c.point_key == values["point_key"]))
            mid = conn.execute(_dialect_insert(self.dialect, m).values(**values)
                               .on_conflict_do_nothing(index_elements=["machine_id",
                                                                       "point_key"])
                               .returning(m.c.id)).scalar()
            if mid is None:
                return None
            if seconds.size:
                self._insert_samples(conn, int(mid), seconds.tolist())
        return int(mid)

    def _insert_samples(self, conn: Connection, mid: int, seconds: list[float]) -> None:
        if self.dialect == "sqlite":  # the DB-API's executemany: ~10x faster than Core's
            conn.exec_driver_sql(
                "INSERT INTO samples (measurement_id, idx, seconds) VALUES (?, ?, ?)",
                [(mid, i, s) for i, s in enumerate(seconds)])
        else:
            conn.execute(insert(T.samples), [
                {"measurement_id": mid, "idx": i, "seconds": s}
                for i, s in enumerate(seconds)])

    def results(self, *, sweep: str | None = None, op: str | None = None,
                fingerprint: str | None = None) -> pd.DataFrame:
        """Measured points as a DataFrame (columns ``RESULT_COLUMNS``); see load_results."""
        m, mc = T.measurements, T.machines
        cols = []
        for name in RESULT_COLUMNS:
            if name == "measurement_id":
                cols.append(m.c.id.label(name))
            elif name == "machine":
                cols.append(mc.c.name.label(name))
            elif name == "fingerprint":
                cols.append(mc.c.fingerprint)
            else:
                cols.append(m.c[name])
        query = select(*cols).join(mc, mc.c.id == m.c.machine_id).order_by(m.c.id)
        if sweep is not None:
            query = query.where(m.c.sweep == sweep)
        if op is not None:
            query = query.where(m.c.op == op)
        if fingerprint is not None:
            query = query.where(mc.c.fingerprint == fingerprint)
        with self._read() as conn:
            rows = conn.execute(query).all()
        df = pd.DataFrame([tuple(r) for r in rows], columns=list(RESULT_COLUMNS))
        for name in (*T.SHAPE_COLUMNS, "sparsity", "density", "nnz", "median_s", "min_s",
                     "mean_s", "iqr_s", "ci_low_s", "ci_high_s", "rel_ci", "flops",
                     "gflops", "loadavg"):
            df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
        for name in ("measurement_id", "run_id", "machine_id", "threads", "n_samples",
                     "passes"):
            df[name] = df[name].astype("int64")
        for name in ("converged", "noisy"):
            df[name] = df[name].astype(bool)
        return df

    def samples(self, measurement_ids: Iterable[int] | None = None) -> pd.DataFrame:
        """Raw samples: DataFrame(measurement_id, idx, seconds), ordered."""
        s = T.samples
        query = select(s.c.measurement_id, s.c.idx, s.c.seconds).order_by(
            s.c.measurement_id, s.c.idx)
        if measurement_ids is not None:
            ids = [int(i) for i in measurement_ids]
            query = query.where(s.c.measurement_id.in_(ids))
        with self._read() as conn:
            rows = conn.execute(query).all()
        df = pd.DataFrame([tuple(r) for r in rows],
                          columns=["measurement_id", "idx", "seconds"])
        return df.astype({"measurement_id": "int64", "idx": "int64", "seconds": "float64"})

    # ---- tuned configurations ----------------------------------------------------------
    def record_tuned(self, problem: dict[str, Any], kernel: str, params: dict[str, Any],
                     seconds: float, study_name: str = "", *,
                     fingerprint: str | None = None) -> bool:
        """Keep the best (lowest ``seconds``) configuration per machine and problem.

        ``problem`` is any JSON-able dict describing the problem (op, shape, sparsity...);
        equal dicts name the same problem. Returns True when this config became the best.
        """
        if not np.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be a positive finite time, got {seconds!r}")
        mid = self.machine_id(fingerprint) if fingerprint else self.machine_id()
        pkey = _key(problem)
        tc = T.tuned_configs
        values = dict(machine_id=mid, problem_key=pkey, problem=canonical_json(problem),
                      kernel=kernel, params=canonical_json(params), seconds=float(seconds),
                      study_name=study_name, timestamp=_context.utc_now())
        with self._write() as conn:
            inserted = conn.execute(_dialect_insert(self.dialect, tc).values(**values)
                                    .on_conflict_do_nothing(
                                        index_elements=["machine_id", "problem_key"])
                                    .returning(tc.c.id)).scalar()
            if inserted is not None:
                return True
            done = conn.execute(update(tc).where(
                tc.c.machine_id == mid, tc.c.problem_key == pkey,
                tc.c.seconds > float(seconds)).values(**values))
            return bool(done.rowcount)

    def tuned_config(self, problem: dict[str, Any], *,
                     fingerprint: str | None = None) -> dict[str, Any] | None:
        """Best recorded config for ``problem`` on a machine (default: this one), or None.

        Returns ``{"kernel", "params" (dict), "seconds", "study_name", "timestamp"}``.
        """
        return self.tuned_configs(fingerprint=fingerprint, problem=problem).get(
            _key(problem))

    def tuned_configs(self, *, fingerprint: str | None = None,
                      problem: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Every best recorded config of a machine (default: this one), or of one
        ``problem``, by :func:`problem_key`; values as
        :meth:`tuned_config` returns them."""
        if fingerprint is None:
            fingerprint = _context.machine()[0]
        tc, mc = T.tuned_configs, T.machines
        query = select(tc).join(mc, mc.c.id == tc.c.machine_id).where(
            mc.c.fingerprint == fingerprint)
        if problem is not None:
            query = query.where(tc.c.problem_key == _key(problem))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return {row.problem_key: {"kernel": row.kernel, "params": json.loads(row.params),
                                  "seconds": float(row.seconds),
                                  "study_name": row.study_name, "timestamp": row.timestamp}
                for row in rows}

    # ---- merge and export --------------------------------------------------------------
    def merge_from(self, other: Store) -> dict[str, int]:
        """Copy every machine, run, measurement (+ samples) and tuned config of ``other``
        that this store lacks. Idempotent: merging twice adds nothing the second time.

        Returns counts ``{"measurements": added, "skipped": already present, "runs": ...,
        "tuned": ...}``.
        """
        counts = {"machines": 0, "runs": 0, "measurements": 0, "skipped": 0, "tuned": 0}
        with other._read() as oconn:
            machines = oconn.execute(select(T.machines)).all()
            runs = oconn.execute(select(T.runs)).all()
            tuned = oconn.execute(select(T.tuned_configs)).all()
        mmap: dict[int, int] = {}
        for mrow in machines:
            known = mrow.fingerprint in self._machine_cache
            mmap[mrow.id] = self.machine_id(mrow.fingerprint, mrow.name, json.loads(mrow.info))
            counts["machines"] += 0 if known else 1
        for run in runs:
            with self._write() as conn:
                conn.execute(_dialect_insert(self.dialect, T.runs).values(
                    uuid=run.uuid, machine_id=mmap[run.machine_id], sweep=run.sweep,
                    spec=run.spec, versions=run.versions, started=run.started,
                    finished=run.finished, status=run.status,
                ).on_conflict_do_nothing(index_elements=["uuid"]))
                rid = conn.execute(select(T.runs.c.id).where(T.runs.c.uuid == run.uuid)
                                   ).scalar_one()
                mcols = [c for c in T.measurements.c if c.name != "id"]
                with other._read() as oconn:
                    rows = oconn.execute(select(T.measurements).where(
                        T.measurements.c.run_id == run.id)).all()
                    for row in rows:
                        values = {c.name: getattr(row, c.name) for c in mcols}
                        values.update(run_id=rid, machine_id=mmap[row.machine_id])
                        new_id = conn.execute(
                            _dialect_insert(self.dialect, T.measurements).values(**values)
                            .on_conflict_do_nothing(index_elements=["machine_id", "point_key"])
                            .returning(T.measurements.c.id)).scalar()
                        if new_id is None:
                            counts["skipped"] += 1
                            continue
                        counts["measurements"] += 1
                        srows = oconn.execute(select(T.samples.c.idx, T.samples.c.seconds)
                                              .where(T.samples.c.measurement_id == row.id)
                                              ).all()
                        if srows:  # idx runs 0..n-1 in order
                            self._insert_samples(conn, int(new_id),
                                                 [r.seconds for r in srows])
            counts["runs"] += 1
        fps = {m.id: m.fingerprint for m in machines}
        for trow in tuned:
            if self.record_tuned(json.loads(trow.problem), trow.kernel,
                                 json.loads(trow.params), trow.seconds, trow.study_name,
                                 fingerprint=fps[trow.machine_id]):
                counts["tuned"] += 1
        return counts

    def export(self, path: str | Path, **filters: Any) -> Path:
        """Write results to ``.csv`` or ``.parquet`` (Parquet needs pyarrow installed)."""
        path = Path(path)
        df = self.results(**filters)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            df.to_csv(path, index=False)
        elif suffix in (".parquet", ".pq"):
            try:
                import pyarrow  # noqa: F401
            except ImportError as exc:
                raise StoreError("Parquet export needs pyarrow (pip install pyarrow); "
                                 "CSV export (.csv) works without it") from exc
            df.to_parquet(path, index=False)
        else:
            raise StoreError(f"export format {suffix or '(none)'!r} unknown; use a path "
                             f"ending in .csv or .parquet")
        return path


def _measurement_values(row: dict[str, Any]) -> dict[str, Any]:
    known = {c.name for c in T.measurements.c} - {"id", "run_id", "machine_id"}
    unknown = set(row) - known
    if unknown:
        raise ValueError(f"unknown measurement field(s) {sorted(unknown)}; known: "
                         f"{sorted(known)}")
    for need in ("point_key", "op", "kernel", "status"):
        if not row.get(need):
            raise ValueError(f"measurement row needs {need!r}")
    if row["status"] not in STATUSES:
        raise ValueError(f"status {row['status']!r} invalid; allowed: {STATUSES}")
    values: dict[str, Any] = {}
    for name, value in row.items():
        if name in ("params", "versions") and not isinstance(value, str):
            value = canonical_json(value or {})
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            value = None  # NaN/inf are stored as NULL (portable across backends)
        values[name] = value
    values.setdefault("timestamp", _context.utc_now())
    return values


def open_store(store: str | Path | Store | None = None, *, create: bool = True,
               readonly: bool = False) -> Store:
    """Open (creating if needed) a results store.

    Parameters
    ----------
    store : None, path, SQLAlchemy URL or Store
        None: the default SQLite file (``$PERFMODEL_HOME/results.db``); a string holding
        ``://``: an SQLAlchemy URL (``sqlite:///PATH``, ``postgresql://USER:PW@HOST/DB``);
        anything else: a path to an SQLite file. A Store is returned unchanged.
    create : create the file and tables when missing (default); False raises instead.
    readonly : open without writing (SQLite files are opened with ``mode=ro``).

    Raises
    ------
    StoreError (a ValueError) for corrupt/foreign files, newer schema versions and
    unsupported URLs; FileNotFoundError when ``create=False`` and the file is missing.
    """
    if isinstance(store, Store):
        return store
    if store is None:
        url = f"sqlite:///{default_store_path()}"
    elif isinstance(store, Path) or "://" not in str(store):
        url = f"sqlite:///{Path(store).expanduser().resolve()}"
    else:
        url = str(store)
    return Store(url, create=create, readonly=readonly)


def load_results(store: str | Path | Store | None = None, *, sweep: str | None = None,
                 op: str | None = None, fingerprint: str | None = None) -> pd.DataFrame:
    """All measured points of a store as a DataFrame, one row per point.

    Columns (``RESULT_COLUMNS``): ids, machine name and fingerprint, sweep, op, kernel,
    isa, threads, params (JSON), shape columns m n k c h w o r s stride padding batch
    groups bits group_size (float, NaN where not applicable), layer, matrix, sparsity,
    density, nnz, pattern, cache, status, error, median_s min_s mean_s iqr_s ci_low_s
    ci_high_s (seconds), rel_ci, n_samples, converged, noisy, flops, gflops, loadavg,
    versions (JSON), timestamp (ISO UTC), point_key, passes (sweep passes that measured
    the point; the median is the fastest of theirs). Filters are optional.
    """
    opened = open_store(store)
    try:
        return opened.results(sweep=sweep, op=op, fingerprint=fingerprint)
    finally:
        if opened is not store:
            opened.close()


def load_samples(store: str | Path | Store | None = None,
                 measurement_ids: Iterable[int] | None = None) -> pd.DataFrame:
    """Raw samples: DataFrame(measurement_id, idx, seconds)."""
    opened = open_store(store)
    try:
        return opened.samples(measurement_ids)
    finally:
        if opened is not store:
            opened.close()
