"""Render the report: sections → one self-contained HTML file (jinja2, autoescaped).

The template inlines its CSS and the small sorting script; figures are ``data:`` URIs, so
the file opens anywhere without network. A Content-Security-Policy meta tag makes the
browser refuse any network fetch, so a stray external reference would show up as an error
rather than a silent request.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from .sections import Inputs, Section, build_sections, collect

__all__ = ["build_report", "render_html", "write_report"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,              # every value from the store is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["cell"] = format_cell
    env.filters["sortkey"] = sort_key
    return env


def format_cell(value: Any) -> str:
    """Display text of a table cell: numbers to 4 significant digits, None/NaN empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "")
                                  in "iu"):
        return f"{int(value):,}"
    if isinstance(value, float) or hasattr(value, "dtype"):
        try:
            v = float(value)
        except (TypeError, ValueError):
            return str(value)
        if math.isnan(v):
            return ""
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e15):
            return f"{v:.3e}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:,.4g}"
    return str(value)


def sort_key(value: Any) -> str:
    """``data-sort`` value: numbers as plain decimals (the script sorts them numerically)."""
    if value is None or isinstance(value, bool):
        return "" if value is None else str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "" if math.isnan(v) else repr(v)


def render_html(sections: Sequence[Section], inputs: Inputs, *, title: str | None = None
                ) -> str:
    """The report HTML for already built sections."""
    template = _env().get_template("report.html.j2")
    return template.render(
        title=title or f"Performance report — {inputs.host_name}",
        sections=list(sections), inputs=inputs)


def build_report(store: Any = None, *, targets: Sequence[str] | None = None,
                 host_profile: Any = None, model_file: str | os.PathLike | None = None,
                 network: str = "resnet50", tuning_storage: str | None = None,
                 evaluation_file: str | os.PathLike | None = None,
                 tune_eval_file: str | os.PathLike | None = None,
                 title: str | None = None) -> str:
    """Collect, build every section and render: the report as an HTML string.

    Parameters are those of :func:`reports.sections.collect` (store path/URL/Store or None
    for the default store; targets default to ``host`` and the whole catalog).
    """
    inputs = collect(store, targets=targets, host_profile=host_profile,
                     model_file=model_file, network=network, tuning_storage=tuning_storage,
                     evaluation_file=evaluation_file, tune_eval_file=tune_eval_file)
    try:
        return render_html(build_sections(inputs), inputs, title=title)
    finally:
        if inputs.store is not None:
            inputs.store.close()


def write_report(path: str | os.PathLike | None = None, store: Any = None, **kwargs: Any
                 ) -> Path:
    """Build the report and write it atomically to ``path`` (default ``report_path()``).

    Returns the path written. Keyword arguments go to :func:`build_report`.
    """
    from perfmodel._paths import report_path

    out = Path(path) if path is not None else report_path()
    html = build_report(store, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
