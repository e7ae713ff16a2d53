"""Matplotlib figures for the report, returned as self-contained ``data:`` URIs.

Every figure is drawn on its own :class:`matplotlib.figure.Figure` (no pyplot state, safe to
call from any thread) and saved as SVG with text kept as text, then base64-encoded into a
``data:image/svg+xml`` URI: the report embeds it in an ``<img>``, so it needs no network,
its text is searchable in the figure, and nothing inside an image can run script.
Scatter layers with thousands of points are rasterized inside the SVG to keep the file small.

Labels coming from the store (machine, kernel, layer names) go through :func:`label`, which
disables matplotlib's mathtext (a ``$`` in a name would otherwise be parsed as TeX).
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

__all__ = ["bandwidth_plot", "bar_plot", "choice_map_plot", "label", "roofline_plot",
           "scatter_pred_meas", "sweet_spot_plot", "to_data_uri", "trials_plot"]

#: points in one scatter layer above which the layer is rasterized inside the SVG
RASTER_ABOVE = 1500
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
            "#17becf", "#7f7f7f", "#bcbd22")
_LEVEL_MARKERS = ("o", "s", "^", "D", "v", "P")
_RC = {"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
       "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
       "svg.hashsalt": "perfmodel-report"}


def label(text: Any, limit: int = 60) -> str:
    """A store string made safe for a matplotlib label (no mathtext), shortened."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def new_figure(width: float = 6.4, height: float = 3.8, *, right: float = 0.97) -> Figure:
    # fixed margins: constrained layout measures every tick label and costs ~0.5 s a figure
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.1, right=right, bottom=0.13, top=0.91)
    FigureCanvasSVG(fig)
    return fig


def _plain(v: float, _pos: Any = None) -> str:
    if v <= 0:
        return ""
    if 1e-3 <= v < 1e5:
        return f"{v:g}"
    return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")


def _log(ax: Any, x: bool = True, y: bool = True) -> None:
    """Log axes with at most ~8 labelled decades and unlabelled minor ticks only."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    for on, axis, setter in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
        if not on:
            continue
        setter("log")
        axis.set_major_locator(LogLocator(base=10, numticks=9))
        # plain text labels: mathtext ($10^{3}$) parsing costs most of a figure's time
        axis.set_major_formatter(FuncFormatter(_plain))
        # no minor ticks: each tick is an artist and they dominate the drawing time
        axis.set_minor_locator(NullLocator())
        axis.set_minor_formatter(NullFormatter())


_DOCTYPE = re.compile(rb"<!DOCTYPE[^>]*>\s*", re.S)
_COMMENT = re.compile(rb"<!--.*?-->\s*", re.S)


def to_data_uri(fig: Figure) -> str:
    """The figure as a ``data:image/svg+xml;base64,...`` URI (deterministic output)."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = _COMMENT.sub(b"", _DOCTYPE.sub(b"", buf.getvalue()))
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _styled(fn):  # type: ignore[no-untyped-def]
    """Draw under the report's rc settings (fonts, sizes)."""
    def wrapper(*args: Any, **kwargs: Any) -> str:
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def _human_bytes(x: float, _pos: Any = None) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if x >= scale:
            return f"{x / scale:g} {unit}"
    return f"{x:g} B"


@_styled
def bandwidth_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                   caches: Mapping[str, float], plateaus: Mapping[str, float],
                   title: str) -> str:
    """Bandwidth (GB/s) vs working-set bytes, one line per (kernel, threads) series.

    Parameters
    ----------
    series : name -> (bytes, bytes_per_s), both 1-D, same length.
    caches : cache level -> size in bytes (vertical dotted lines).
    plateaus : memory level -> bandwidth in bytes/s (horizontal dashed lines).
    """
    from matplotlib.ticker import FuncFormatter

    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, [y / 1e9 for y in ys], marker="o", ms=3, lw=1.3, color=color(i),
                label=label(name))
    for name, size in caches.items():
        if size and size > 0:
            ax.axvline(size, color="#888", ls=":", lw=1)
            ax.text(size, 1.0, f" {label(name)}", transform=ax.get_xaxis_transform(),
                    va="top", ha="left", fontsize=7, color="#555")
    for i, (name, bw) in enumerate(plateaus.items()):
        if bw and bw > 0:
            ax.axhline(bw / 1e9, color=color(i + 5), ls="--", lw=0.8, alpha=0.7)
            ax.text(0.995, bw / 1e9, f"{label(name)} {bw / 1e9:.0f} GB/s ",
                    transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    fontsize=7, color=color(i + 5))
    ax.set_xscale("log", base=2)
    _log(ax, x=False)
    ax.xaxis.set_major_formatter(FuncFormatter(_human_bytes))
    ax.set_xlabel("working set")
    ax.set_ylabel("bandwidth [GB/s]")
    ax.set_title(label(title, 90))
    ax.grid(True, which="major", alpha=0.3)
    if series:
        ax.legend(loc="lower left")
    return to_data_uri(fig)


@_styled
def roofline_plot(ceilings_mem: Sequence[Mapping[str, Any]],
                  ceilings_comp: Sequence[Mapping[str, Any]],
                  dots: Sequence[Mapping[str, Any]], title: str,
                  dot_kind: str = "measured") -> str:
    """Log-log roofline: sloped memory ceilings, flat compute ceilings, kernel dots.

    Parameters
    ----------
    ceilings_mem : dicts ``{name, bytes_per_s, empirical (bool)}``; slope up to the ridge of
        the highest compute ceiling.
    ceilings_comp : dicts ``{name, ops_per_s, empirical}``.
    dots : dicts ``{intensity (ops/byte), ops_per_s, group, level}``: one marker shape per
        memory level (hierarchical roofline: a kernel's dots share one y), one colour per
        group (kernel family).
    """
    fig = new_figure(7.2, 4.2, right=0.76)
    ax = fig.add_subplot()
    xs = [d["intensity"] for d in dots if d["intensity"] > 0]
    peak = max((c["ops_per_s"] for c in ceilings_comp), default=1e12)
    bw_min = min((c["bytes_per_s"] for c in ceilings_mem), default=1e10)
    bw_max = max((c["bytes_per_s"] for c in ceilings_mem), default=1e10)
    x_lo = min([*xs, peak / bw_max / 20, 0.01]) / 2
    x_hi = max([*xs, peak / bw_min * 8, 100.0]) * 2
    for i, c in enumerate(ceilings_mem):
        bw = c["bytes_per_s"]
        ridge = peak / bw
        xr = [x_lo, min(ridge, x_hi)]
        ax.plot(xr, [bw * x / 1e9 for x in xr], color=color(i + 5), lw=1.4,
                ls="-" if c.get("empirical") else "--")
        ax.text(x_lo * 1.15, bw * x_lo * 1.15 / 1e9,
                f"{label(c['name'])} {bw / 1e9:,.0f} GB/s", rotation=0, fontsize=7,
                color=color(i + 5), va="bottom")
    # equal ceilings (within 1 %) share one line and one label; labels of close ceilings
    # are stacked upwards so they never overlap
    merged: list[dict[str, Any]] = []
    for c in sorted(ceilings_comp, key=lambda c: c["ops_per_s"]):
        if merged and c["ops_per_s"] <= merged[-1]["ops_per_s"] * 1.01:
            merged[-1]["name"] += f" / {c['name']}"
            merged[-1]["empirical"] = bool(merged[-1].get("empirical") or c.get("empirical"))
        else:
            merged.append(dict(c))
    y_min = min([d["ops_per_s"] for d in dots if d["ops_per_s"] > 0]
                + [bw_min * x_lo]) / 1e9 / 2
    y_max = peak / 1e9 * 2.5
    step = 10 ** (math.log10(y_max / y_min) / 20)    # one label height, as a factor
    last = 0.0
    for c in merged:
        y = c["ops_per_s"] / 1e9
        ax.plot([min(c["ops_per_s"] / bw_max, x_hi), x_hi], [y, y], color="#333", lw=1.4,
                ls="-" if c.get("empirical") else "--")
        ly = max(y * 1.03, last * step)
        ax.text(x_hi / 1.1, ly, f"{label(c['name'])} {y:,.0f} G/s", ha="right",
                va="bottom", fontsize=7, color="#333")
        last = ly
    y_max = max(y_max, last * step * 1.2)
    groups = sorted({str(d["group"]) for d in dots})
    levels = list(dict.fromkeys(str(d["level"]) for d in dots))
    for gi, g in enumerate(groups):
        for li, lv in enumerate(levels):
            pts = [d for d in dots if str(d["group"]) == g and str(d["level"]) == lv
                   and d["intensity"] > 0 and d["ops_per_s"] > 0]
            if not pts:
                continue
            ax.scatter([d["intensity"] for d in pts], [d["ops_per_s"] / 1e9 for d in pts],
                       s=14, marker=_LEVEL_MARKERS[li % len(_LEVEL_MARKERS)],
                       color=color(gi), alpha=0.7, linewidths=0,
                       rasterized=len(pts) > RASTER_ABOVE)
    _log(ax)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_min, y_max)
    ax.set_xlabel("arithmetic intensity [FLOP/byte; ops/byte for int]")
    ax.set_ylabel("performance [GFLOP/s; GOP/s for int]")
    ax.set_title(f"{label(title, 70)} ({dot_kind})")
    ax.grid(True, which="major", alpha=0.3)
    if dots:
        # two legends: colour = kernel family, marker = memory level of the dot
        from matplotlib.lines import Line2D

        fam = [Line2D([], [], ls="", marker="o", color=color(i), label=label(g, 18))
               for i, g in enumerate(groups)]
        lev = [Line2D([], [], ls="", marker=_LEVEL_MARKERS[i % len(_LEVEL_MARKERS)],
                      color="#555", label=label(lv, 10)) for i, lv in enumerate(levels)]
        first = ax.legend(handles=fam, title="kernel family", loc="upper left",
                          bbox_to_anchor=(1.01, 1.0), fontsize=7, title_fontsize=7)
        ax.add_artist(first)
        ax.legend(handles=lev, title="memory level", loc="lower left",
                  bbox_to_anchor=(1.01, 0.0), fontsize=7, title_fontsize=7)
    return to_data_uri(fig)


@_styled
def sweet_spot_plot(curves: Sequence[Mapping[str, Any]], title: str) -> str:
    """Speedup over dense vs sparsity, one colour per shape.

    Parameters
    ----------
    curves : dicts ``{name, model_x, model_y, meas_x, meas_y, lower, upper}``: model curve
        (sparsity, speedup), measured points, and the sweet-spot range (sparsities; None
        where the model finds none) shaded.
    """
    fig = new_figure(6.4, 3.8)
    ax = fig.add_subplot()
    for i, c in enumerate(curves):
        col = color(i)
        if len(c.get("model_x", ())):
            ax.plot(c["model_x"], c["model_y"], color=col, lw=1.4, label=label(c["name"]))
        if len(c.get("meas_x", ())):
            ax.scatter(c["meas_x"], c["meas_y"], color=col, s=18, zorder=3,
                       edgecolors="white", linewidths=0.5,
                       label=None if len(c.get("model_x", ())) else label(c["name"]))
        lo, hi = c.get("lower"), c.get("upper")
        if lo is not None and math.isfinite(lo):
            hi_v = hi if hi is not None and math.isfinite(hi) and hi > lo else 1.0
            if len(curves) == 1:
                ax.axvspan(lo, hi_v, color=col, alpha=0.12, lw=0)
            # one strip per curve along the bottom: the sweet-spot range of that shape
            ax.axvspan(lo, hi_v, ymin=0.01 + 0.03 * i, ymax=0.035 + 0.03 * i, color=col,
                       alpha=0.55, lw=0)
            ax.axvline(lo, color=col, lw=0.8, ls=":")
    ax.axhline(1.0, color="#333", lw=0.9)
    _log(ax, x=False)
    ax.set_xlim(0, 1)
    ax.set_xlabel("sparsity (fraction of zero weights)")
    ax.set_ylabel("speedup over dense (×)")
    ax.set_title(label(title, 90))
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(loc="upper left", fontsize=7)
    return to_data_uri(fig)


@_styled
def choice_map_plot(shapes: Sequence[str], sparsities: Sequence[float],
                    measured: Sequence[Sequence[str | None]],
                    predicted: Sequence[Sequence[str | None]], title: str) -> str:
    """Grid shape × sparsity coloured by the measured best kernel; ✕ where the model's
    choice differs, ○ where it agrees."""
    from matplotlib.patches import Patch

    kernels = sorted({k for row in measured for k in row if k} |
                     {k for row in predicted for k in row if k})
    index = {k: i for i, k in enumerate(kernels)}
    height = max(2.6, 0.32 * len(shapes) + 1.6)
    fig = new_figure(7.2, height)
    fig.subplots_adjust(left=0.3, right=0.74, bottom=0.8 / height + 0.1, top=1 - 0.35 / height)
    ax = fig.add_subplot()
    for yi, row in enumerate(measured):
        for xi, kern in enumerate(row):
            if kern is None:
                continue
            ax.add_patch(matplotlib.patches.Rectangle(
                (xi - 0.5, yi - 0.5), 1, 1, color=color(index[kern]), alpha=0.75, lw=0))
            pred = predicted[yi][xi]
            if pred is not None:
                ax.text(xi, yi, "✕" if pred != kern else "○", ha="center", va="center",
                        fontsize=9 if pred != kern else 7,
                        color="black" if pred != kern else "white",
                        fontweight="bold" if pred != kern else "normal")
    ax.set_xlim(-0.5, len(sparsities) - 0.5)
    ax.set_ylim(-0.5, len(shapes) - 0.5)
    ax.set_xticks(range(len(sparsities)), [f"{s:.2f}" for s in sparsities], rotation=45)
    ax.set_yticks(range(len(shapes)), [label(s, 34) for s in shapes], fontsize=7)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("shape (by size)")
    ax.set_title(label(title, 90))
    handles = [Patch(color=color(index[k]), alpha=0.75, label=label(k, 28)) for k in kernels]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7,
                  title="measured best", title_fontsize=7)
    return to_data_uri(fig)


@_styled
def bar_plot(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str,
             ylabel: str, ref_line: float | None = 1.0) -> str:
    """Grouped bars: one group per problem, one bar per series (NaN = not measured)."""
    fig = new_figure(6.4, 3.8)
    fig.subplots_adjust(bottom=0.3)
    ax = fig.add_subplot()
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [v if v == v else 0.0 for v in values], width=width, color=color(i),
               label=label(name, 30))
    if ref_line is not None:
        ax.axhline(ref_line, color="#333", lw=0.9)
    ax.set_xticks(range(len(groups)), [label(g, 22) for g in groups], rotation=30,
                  ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(label(title, 90))
    ax.grid(True, axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    return to_data_uri(fig)


@_styled
def scatter_pred_meas(layers: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                      title: str) -> str:
    """Predicted vs measured seconds (log-log) with the y = x line and ±25 % band."""
    fig = new_figure(5.2, 4.4)
    fig.subplots_adjust(left=0.15)
    ax = fig.add_subplot()
    allv = [v for xs, ys in layers.values() for v in (*xs, *ys) if v > 0]
    lo, hi = (min(allv) / 1.5, max(allv) * 1.5) if allv else (1e-6, 1.0)
    ax.plot([lo, hi], [lo, hi], color="#333", lw=1)
    ax.fill_between([lo, hi], [lo / 1.25, hi / 1.25], [lo * 1.25, hi * 1.25],
                    color="#999", alpha=0.15, lw=0, label="±25 %")
    for i, (name, (meas, pred)) in enumerate(layers.items()):
        ax.scatter(meas, pred, s=8, alpha=0.6, color=color(i), linewidths=0,
                   label=label(name, 30), rasterized=len(meas) > RASTER_ABOVE)
    _log(ax)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured time [s]")
    ax.set_ylabel("predicted time [s]")
    ax.set_title(label(title, 80))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    return to_data_uri(fig)


@_styled
def trials_plot(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], title: str,
                ylabel: str = "best time so far [s]") -> str:
    """Best-so-far objective vs trial number, one step line per study / strategy."""
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    for i, (name, (xs, ys)) in enumerate(curves.items()):
        ax.step(xs, ys, where="post", color=color(i), lw=1.3, label=label(name, 40))
    _log(ax, x=False)
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    ax.set_title(label(title, 90))
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(fontsize=7)
    return to_data_uri(fig)


def best_so_far(values: Iterable[float]) -> list[float]:
    """Running minimum (NaN / failed trials keep the previous best)."""
    out, best = [], math.inf
    for v in values:
        if v == v and v < best:
            best = v
        out.append(best)
    return out
