"""Fixtures of the report tests: a data folder with the synthetic store and host profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fixture_store import FINGERPRINT, make_fixture_store, write_host_profile


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty PERFMODEL_HOME (nothing measured)."""
    d = tmp_path / "home"
    d.mkdir()
    monkeypatch.setenv("PERFMODEL_HOME", str(d))
    return d


@pytest.fixture(scope="session")
def _fixture_db(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fixture-store")
    return make_fixture_store(d / "results.db")


@pytest.fixture
def filled_home(home, _fixture_db, monkeypatch) -> Path:
    """PERFMODEL_HOME with the fixture host profile and store (this machine = fixture)."""
    import shutil

    write_host_profile(home, FINGERPRINT)
    shutil.copy(_fixture_db, home / "results.db")
    return home


@pytest.fixture(scope="session")
def fixture_report(tmp_path_factory) -> Path:
    """The report of the fixture store, built once (few targets, to stay quick)."""
    import os

    d = tmp_path_factory.mktemp("fixture-report")
    old = os.environ.get("PERFMODEL_HOME")
    os.environ["PERFMODEL_HOME"] = str(d)
    try:
        write_host_profile(d, FINGERPRINT)
        make_fixture_store(d / "results.db")
        from reports import write_report

        return write_report(d / "report.html", d / "results.db",
                            targets=["host", "xeon-phi-7250", "nvidia-a100"])
    finally:
        if old is None:
            os.environ.pop("PERFMODEL_HOME", None)
        else:
            os.environ["PERFMODEL_HOME"] = old
