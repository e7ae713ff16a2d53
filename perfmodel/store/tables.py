"""The results store schema: every table, and nothing else (SQLAlchemy Core).

Units travel in the column names (``_s`` seconds, ``flops`` floating-point operations).
Text columns named ``params``, ``versions``, ``info``, ``spec`` and ``problem`` hold JSON
with sorted keys, so equal values compare equal as text.

Version history (``SCHEMA_VERSION``; :mod:`perfmodel.store.store` holds the migrations):

1. machines, runs, measurements, samples, tuned_configs, schema_version.
2. measurements.passes: how many passes of a sweep (``passes``) measured the point; the
   row keeps the fastest of their medians.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: the version this code writes; older stores are migrated, newer ones refused
SCHEMA_VERSION = 2

metadata = MetaData()

#: one row; the schema version of the store
schema_version = Table(
    "schema_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("app", String(64), nullable=False),  # marks the file as ours
)

#: one row per distinct machine (CPU, caches, cores), keyed by its fingerprint
machines = Table(
    "machines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("info", Text, nullable=False, default="{}"),
    Column("created", String(32), nullable=False),
)

#: one row per sweep invocation
runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uuid", String(36), nullable=False, unique=True),  # stable across imports
    Column("machine_id", Integer, ForeignKey("machines.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("sweep", String(255), nullable=False),
    Column("spec", Text, nullable=False, default="{}"),
    Column("versions", Text, nullable=False, default="{}"),
    Column("started", String(32), nullable=False),
    Column("finished", String(32)),
    Column("status", String(32), nullable=False, default="running"),
    sqlite_autoincrement=True,
)

_SHAPE = ("m", "n", "k", "c", "h", "w", "o", "r", "s", "stride", "padding", "batch",
          "groups", "bits", "group_size")

#: one row per measured point; ``point_key`` identifies the point on one machine
measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("machine_id", Integer, ForeignKey("machines.id", ondelete="CASCADE"),
           nullable=False),
    Column("point_key", String(64), nullable=False),
    Column("sweep", String(255), nullable=False, default=""),
    Column("op", String(32), nullable=False),
    Column("kernel", String(64), nullable=False),
    Column("isa", String(32), nullable=False, default=""),
    Column("threads", Integer, nullable=False, default=1),
    Column("params", Text, nullable=False, default="{}"),
    *(Column(name, Integer) for name in _SHAPE),
    Column("layer", String(255), nullable=False, default=""),
    Column("matrix", String(1024), nullable=False, default=""),
    Column("sparsity", Double),
    Column("density", Double),
    Column("nnz", Integer),
    Column("pattern", String(32), nullable=False, default="dense"),
    Column("cache", String(8), nullable=False, default="warm"),
    Column("status", String(32), nullable=False),
    Column("error", Text, nullable=False, default=""),
    Column("median_s", Double),
    Column("min_s", Double),
    Column("mean_s", Double),
    Column("iqr_s", Double),
    Column("ci_low_s", Double),
    Column("ci_high_s", Double),
    Column("rel_ci", Double),
    Column("n_samples", Integer, nullable=False, default=0),
    Column("converged", Boolean, nullable=False, default=False),
    Column("noisy", Boolean, nullable=False, default=False),
    Column("flops", Double),
    Column("gflops", Double),
    Column("loadavg", Double),
    Column("versions", Text, nullable=False, default="{}"),
    Column("timestamp", String(32), nullable=False),
    Column("passes", Integer, nullable=False, default=1),
    UniqueConstraint("machine_id", "point_key", name="uq_measurement_point"),
    sqlite_autoincrement=True,  # ids never reused after a --remeasure replaces a point
)
Index("ix_measurements_op_kernel", measurements.c.op, measurements.c.kernel)

#: raw timing samples of each measurement, in the order taken
samples = Table(
    "samples",
    metadata,
    Column("measurement_id", Integer, ForeignKey("measurements.id", ondelete="CASCADE"),
           primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("seconds", Double, nullable=False),
)

#: best configuration found by the tuner per machine and problem
tuned_configs = Table(
    "tuned_configs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("machine_id", Integer, ForeignKey("machines.id", ondelete="CASCADE"),
           nullable=False),
    Column("problem_key", String(64), nullable=False),
    Column("problem", Text, nullable=False),
    Column("kernel", String(64), nullable=False),
    Column("params", Text, nullable=False, default="{}"),
    Column("seconds", Double, nullable=False),
    Column("study_name", String(255), nullable=False, default=""),
    Column("timestamp", String(32), nullable=False),
    UniqueConstraint("machine_id", "problem_key", name="uq_tuned_problem"),
)

SHAPE_COLUMNS: tuple[str, ...] = _SHAPE

__all__ = ["SCHEMA_VERSION", "SHAPE_COLUMNS", "machines", "measurements", "metadata", "runs",
           "samples", "schema_version", "tuned_configs"]
