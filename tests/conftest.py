"""Shared fixtures and the one place where skip conditions live.

Under CI (``CI=true``) a missing external tool (qemu-user, PostgreSQL, Chromium) is a
failure, not a skip: CI installs them, so a skip there would hide a broken install step.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

import kernels_c

# Fewer random examples when the suite reruns under the (slow) sanitizer build.
settings.register_profile("sanitizer", max_examples=15, deadline=None)
settings.register_profile("default", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
DLMC_DIR = SHARED_DATA / "dlmc" / "rn50" / "magnitude_pruning"


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_folder(tmp_path_factory):
    """An empty data folder for the whole session, set before any module-scoped fixture
    runs: those cannot use the per-test ``PERFMODEL_HOME`` fixtures, and would otherwise
    read the developer's own host profile, store or model (a model fitted on the real host
    profile then disagreed with its reloaded copy, which saw the test's empty one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFMODEL_HOME", str(tmp_path_factory.mktemp("perfmodel_home")))
        yield


def require_tool(name: str, why: str) -> str:
    """Path of executable ``name``; skip (fail under CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed ({why})"
        if IN_CI:
            pytest.fail(message + "; .ci/run should have installed it")
        pytest.skip(message)
    return path


def require_dlmc() -> Path:
    if not DLMC_DIR.is_dir():
        pytest.skip(f"DLMC matrices not found at {DLMC_DIR} (../shared/data is optional)")
    return DLMC_DIR


#: SQLAlchemy URL of a PostgreSQL server the store tests may create databases on
#: (``.ci/run`` starts one and sets it); unset outside CI = PostgreSQL tests skip.
PG_URL_ENV = "PERFMODEL_TEST_PG_URL"


def require_postgres() -> str:
    """URL of the test PostgreSQL server; skip (fail under CI) when unset or unreachable."""
    url = os.environ.get(PG_URL_ENV, "")
    problem = None
    if not url:
        problem = f"{PG_URL_ENV} is not set (no PostgreSQL server for the store tests)"
    else:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect():
                pass
        except Exception as exc:
            problem = f"PostgreSQL at {PG_URL_ENV} unreachable: {str(exc).splitlines()[0]}"
        finally:
            engine.dispose()
    if problem:
        if IN_CI:
            pytest.fail(problem + "; .ci/run should have started it")
        pytest.skip(problem)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty store location on every backend: an SQLite file path, or a new
    PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "results.db")
        return
    import uuid

    import sqlalchemy

    base = sqlalchemy.engine.make_url(require_postgres())
    name = f"pm_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def requires_torch():
    """Import and return torch (a peer, in the optional ``peers`` extra) or skip visibly."""
    if os.environ.get("KERNELS_C_SANITIZE"):
        pytest.skip("torch is not run under the ASan/UBSan preload (its own allocator and "
                    "threads abort there)")
    try:
        import torch
    except ImportError as exc:
        pytest.skip(f"torch not installed (peers extra: pip install -e '.[peers]'): {exc}")
    return torch


#: every ISA path this CPU can run; kernel tests are parametrized over it
ISA_PATHS = kernels_c._isa.supported_levels()


@pytest.fixture(params=ISA_PATHS)
def isa_path(request) -> str:
    return request.param
