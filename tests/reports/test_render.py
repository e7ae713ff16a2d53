"""The rendered report: nine sections, self-contained, escaped, no-data sections explained."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest

from reports import build_report
from reports.render import format_cell, sort_key
from reports.sections import SECTIONS

from .fixture_store import HOSTILE_LAYER, HOSTILE_MACHINE

SECTION_IDS = [sid for sid, _, _ in SECTIONS]


class _Collect(HTMLParser):
    """Every tag with its attributes, and text of <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


def external_references(html: str) -> list[str]:
    """Every reference a browser could fetch: src/href/action/srcset/poster/data attributes
    that are not ``data:`` URIs or in-page anchors, CSS url()/@import, and the same inside
    embedded SVG images."""
    found = []
    p = parse(html)
    for tag, attrs in p.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data", "xlink:href"):
            v = (attrs.get(name) or "").strip()
            if v and not v.startswith(("data:", "#")):
                found.append(f"<{tag} {name}={v[:80]}>")
        if tag == "link":
            found.append(f"<link {attrs}>")
    for m in re.finditer(r"url\(\s*['\"]?(?!data:|#)([^'\")]+)", html):
        found.append(f"url({m.group(1)[:80]})")
    if "@import" in html:
        found.append("@import")
    for m in re.finditer(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", html):
        svg = base64.b64decode(m.group(1)).decode("utf-8")
        for ref in re.finditer(r"(?:href|src)=\"(?!data:|#)([^\"]+)\"", svg):
            found.append(f"svg ref {ref.group(1)[:80]}")
        if "<script" in svg:
            found.append("script inside an SVG figure")
    return found


@pytest.fixture(scope="module")
def html(fixture_report) -> str:
    return fixture_report.read_text(encoding="utf-8")


def test_every_section_present_in_order(html):
    ids = re.findall(r'<section id="([^"]+)" class="report-section"', html)
    assert ids == SECTION_IDS


def test_no_external_references(html):
    assert external_references(html) == []
    assert "Content-Security-Policy" in html


def test_external_reference_check_catches_urls():
    # guards the test above: each of these must be reported
    bad = ['<img src="https://cdn.example.com/x.png">', '<link rel="stylesheet" href="a.css">',
           '<script src="//cdn.example.com/x.js"></script>',
           '<style>body{background:url(http://x/y.png)}</style>']
    for snippet in bad:
        assert external_references(snippet), snippet


def test_hostile_strings_escaped(html):
    p = parse(html)
    # the only scripts are the report's own two inline scripts
    assert [t for t, _ in p.tags].count("script") == 2
    assert not any("alert(" in s for s in p.scripts)
    assert HOSTILE_MACHINE not in html and HOSTILE_LAYER not in html
    assert "&lt;script&gt;alert(&#34;machine&#34;)&lt;/script&gt;box&amp;co" in html
    assert "&lt;img src=x onerror=alert(1)&gt;conv1" in html      # the layer name, as text
    assert not any(tag == "img" and "onerror" in attrs for tag, attrs in p.tags)
    assert "<b>spec</b>" not in html and "<i>x</i>" not in html


def test_every_figure_has_a_caption(html):
    figs = re.findall(r"<figure>(.*?)</figure>", html, re.S)
    assert len(figs) >= 9
    for f in figs:
        cap = re.search(r"<figcaption>(.*?)</figcaption>", f, re.S)
        assert cap and len(cap.group(1).split()) >= 12, f[:200]
        assert 'src="data:image/svg+xml;base64,' in f


def test_tables_sortable_with_numeric_keys(html):
    assert html.count('<table class="sortable">') >= 8
    assert "data-sort=\"0.0005" in html or re.search(r'data-sort="[0-9.e-]+"', html)


def test_empty_data_folder_every_section_says_why(home):
    out = build_report(targets=["host", "atom-c2750"])
    ids = re.findall(r'<section id="([^"]+)" class="report-section" data-status="([^"]+)"',
                     out)
    assert [i for i, _ in ids] == SECTION_IDS
    statuses = dict(ids)
    assert "failed" not in statuses.values(), statuses
    for sid in ("machine", "choice", "quantized", "accuracy", "tuning"):
        body = out.split(f'<section id="{sid}"')[1].split("</section>")[0]
        assert 'class="missing"' in body and "No data:" in body, sid
    assert "run `perfmodel characterize`" in out
    assert external_references(out) == []


def test_failing_section_is_reported_not_raised(filled_home, monkeypatch):
    import reports.sections as S

    def boom(inputs):
        raise RuntimeError("<b>kaputt</b>")

    monkeypatch.setattr(S, "SECTIONS", (*S.SECTIONS[:4], ("quantized", "5. Quantized kernels",
                                                          boom), *S.SECTIONS[5:]))
    out = build_report(targets=["host"])
    body = out.split('<section id="quantized"')[1].split("</section>")[0]
    assert 'data-status="failed"' in body
    assert "RuntimeError: &lt;b&gt;kaputt&lt;/b&gt;" in body


@pytest.mark.parametrize(("value", "text", "key"), [
    (None, "", ""), (float("nan"), "", ""), (True, "yes", "1"), (3, "3", "3.0"),
    (1234567, "1,234,567", "1234567.0"), (0.000123, "1.230e-04", "0.000123"),
    (2.5, "2.5", "2.5"), (32768.0, "32,768", "32768.0"), (1234.5678, "1,235", "1234.5678"),
    ("<x>", "<x>", "<x>")])
def test_cell_format_and_sort_key(value, text, key):
    assert format_cell(value) == text
    assert sort_key(value) == key
