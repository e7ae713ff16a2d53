"""The report in a real browser: headless Chromium opens the file built from the fixture
store; no script or console errors, every image decoded, every section present, tables
sort. A screenshot is kept in test-artifacts/ (gitignored).

Chromium is driven through its command line (``--dump-dom`` after the load event,
``--screenshot``); the report's own self-check script writes what it saw into
``#report-selfcheck``. Skips outside CI when chromium is absent; fails under CI=true.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import ROOT, require_tool
from .test_render import SECTION_IDS

ARTIFACTS = ROOT / "test-artifacts"
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run",
          "--disable-extensions", "--hide-scrollbars", "--mute-audio",
          "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
          "--virtual-time-budget=10000")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    return require_tool("chromium", "the report browser test opens the HTML in it")


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([_chromium(), *_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def dom(fixture_report, tmp_path_factory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("browser")
    proc = _run(["--enable-logging=stderr", "--v=0", "--dump-dom",
                 fixture_report.as_uri()], tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def _selfcheck(dom_text: str) -> dict[str, str]:
    m = re.search(r'<div id="report-selfcheck"([^>]*)>', dom_text)
    assert m, "the report's self-check element is missing from the DOM"
    return {k: v.replace("&quot;", '"') for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"',
                                                               m.group(1))}


def test_loads_without_errors(dom):
    text, stderr = dom
    check = _selfcheck(text)
    assert check.get("done") == "1", "the load handler did not run"
    assert json.loads(check["errors"]) == []
    # console messages Chromium logs for the page (uncaught errors, CSP violations)
    console = [line for line in stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line or "Content Security Policy" in line
               or "Refused to" in line]
    assert console == []


def test_every_image_decoded(dom):
    check = _selfcheck(dom[0])
    assert int(check["images"]) >= 9
    assert check["images-decoded"] == check["images"]


def test_every_section_present(dom):
    check = _selfcheck(dom[0])
    assert check["sections"].split(",") == SECTION_IDS
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom[0]


def test_tables_sort(dom):
    check = _selfcheck(dom[0])
    assert int(check["tables"]) >= 8
    assert check["tables-sorted"] == check["tables"]


def test_hostile_strings_inert_in_the_browser(dom):
    # the DOM after scripts ran: the hostile markup is text, not elements
    text = dom[0]
    assert "<script>alert(" not in text
    assert "&lt;script&gt;alert(" in text
    assert not re.search(r"<img[^>]*onerror", text)


def test_screenshot(fixture_report, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    proc = _run(["--window-size=1280,3000", f"--screenshot={shot}",
                 fixture_report.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    shutil.copy(fixture_report, ARTIFACTS / "report.html")


def test_checks_catch_a_broken_page(fixture_report, tmp_path):
    # guards the checks above: a script error and a blocked external image must show up
    broken = tmp_path / "broken.html"
    broken.write_text(fixture_report.read_text().replace(
        "<footer>", '<script>undefinedFunction();</script>'
                    '<img src="https://example.invalid/x.png"><footer>', 1))
    proc = _run(["--enable-logging=stderr", "--v=0", "--dump-dom", broken.as_uri()],
                tmp_path)
    check = _selfcheck(proc.stdout)
    assert "undefinedFunction" in check["errors"]
    assert int(check["images-decoded"]) == int(check["images"]) - 1
    assert "Content Security Policy" in proc.stderr
