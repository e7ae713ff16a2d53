"""``perfmodel report`` / ``perfmodel run`` and the layering of their registration."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from perfmodel.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def test_registered_by_name_only():
    # perfmodel reaches reports only through this string, read by the CLI at start-up
    assert "reports._cli" in COMMANDS
    code = ("import sys, perfmodel, perfmodel.cli, perfmodel.store, perfmodel.targets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'reports'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_cli_start_up_stays_light():
    # building the parser loads reports._cli but none of the report machinery, and no
    # numerical or database library: `perfmodel --help` and `perfmodel characterize`
    # start in ~0.1 s (1.1 s when the tuner's registration loaded its study and the store)
    heavy = ("numpy", "scipy", "pandas", "sqlalchemy", "optuna", "sklearn", "matplotlib")
    code = ("import sys; from perfmodel.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('reports.') "
            f"and m != 'reports._cli' or m.split('.')[0] in {heavy!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_command_module_imports_only_the_standard_library_at_top_level():
    tree = ast.parse((ROOT / "reports" / "_cli.py").read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top.add(node.module.split(".")[0])
    assert top <= {"__future__", "argparse", "sys", "time", "pathlib", "typing"}, top


def test_report_command_writes_the_file(filled_home, capsys):
    out = filled_home / "sub" / "r.html"
    assert main(["report", "-o", str(out), "--targets", "host,atom-c2750"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(out)
    html = out.read_text()
    assert "atom-c2750" in html and "nvidia-h100" not in html


def test_report_command_default_path(filled_home, capsys):
    assert main(["report", "--targets", "host"]) == 0
    assert capsys.readouterr().out.strip() == str(filled_home / "report.html")
    assert (filled_home / "report.html").is_file()


def test_report_command_bad_target(home, capsys):
    assert main(["report", "--targets", "host,no-such-machine"]) == 2
    err = capsys.readouterr().err
    assert "no-such-machine" in err and "valid" in err


def test_report_from_an_explicit_db_url(filled_home, tmp_path, capsys):
    url = f"sqlite:///{filled_home / 'results.db'}"
    out = tmp_path / "r.html"
    assert main(["report", "--db", url, "-o", str(out), "--targets", "host"]) == 0
    assert "box&amp;co" in out.read_text()


@pytest.mark.parametrize("bad", ["/nonexistent/dir/x.db"])
def test_report_with_missing_store_still_written(home, tmp_path, bad, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "--db", bad, "-o", str(out), "--targets", "host"]) == 0
    assert "no results store" in out.read_text()


class _Summary:
    measured, skipped, unavailable, noisy = 0, 151, 0, 0


@pytest.mark.slow
def test_run_main_job_and_rerun_reuse(filled_home, monkeypatch, capsys):
    """``perfmodel run`` with characterize and the sweep replaced (they measure this CPU);
    fit, evaluate and report are real, on the fixture store. The rerun reuses them."""
    import perfmodel
    import perfmodel.characterize as C

    from .fixture_store import FINGERPRINT

    calls: list[str] = []
    monkeypatch.setattr(C, "characterize", lambda **kw: calls.append("characterize"))
    monkeypatch.setattr(perfmodel, "sweep",
                        lambda preset, **kw: calls.append(f"sweep {preset}") or _Summary())
    args = ["run", "--targets", "host"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(filled_home / "report.html")
    assert calls == ["characterize", "sweep quick"]
    assert "model fitted on" in err and "held-out evaluation" in err
    for name in ("model.json", "evaluation.json", "report.html"):
        assert (filled_home / name).is_file(), name
    html = (filled_home / "report.html").read_text()
    body = html.split('<section id="accuracy"')[1].split("</section>")[0]
    assert "leave-shape-out" in body and 'data-status="ok"' in body

    # rerun: the profile describes this CPU now, nothing new was measured
    monkeypatch.setattr(C, "fingerprint", lambda cpu, caches: FINGERPRINT)
    calls.clear()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert calls == ["sweep quick"]
    assert "host profile reused" in err and "model reused" in err
    assert "evaluation reused" in err


def test_run_failing_step_still_writes_the_report(filled_home, monkeypatch, capsys):
    import perfmodel
    import perfmodel.characterize as C

    from .fixture_store import FINGERPRINT

    monkeypatch.setattr(C, "fingerprint", lambda cpu, caches: FINGERPRINT)

    def broken(*a, **k):
        raise RuntimeError("sweep exploded")

    monkeypatch.setattr(perfmodel, "sweep", broken)
    import reports._cli as cli
    monkeypatch.setattr(cli, "_step_fit", lambda db: "skipped in this test")
    monkeypatch.setattr(cli, "_step_evaluate", lambda db: "skipped in this test")
    assert main(["run", "--targets", "host"]) == 1
    out, err = capsys.readouterr()
    assert "[sweep] FAILED: RuntimeError: sweep exploded" in err
    assert "failed steps: sweep" in err
    assert out.strip() == str(filled_home / "report.html")


def test_report_from_every_store_backend(store_url, home, tmp_path, capsys):
    """The same report from SQLite and from PostgreSQL (skips without a server outside
    CI)."""
    from .fixture_store import FINGERPRINT, make_fixture_store, write_host_profile

    write_host_profile(home, FINGERPRINT)
    make_fixture_store(store_url)
    out = tmp_path / "r.html"
    assert main(["report", "--db", store_url, "-o", str(out), "--targets", "host"]) == 0
    html = out.read_text()
    assert "box&amp;co" in html and 'data-status="failed"' not in html
    for sid in ("machine", "roofline", "sweet-spots", "choice", "quantized", "provenance"):
        body = html.split(f'<section id="{sid}"')[1].split("</section>")[0]
        assert 'data-status="ok"' in body, sid
