"""Park et al.'s "guided pruning" table: per layer of a network, the sparsity range where
pruning pays on a target, and the expected speedup at a chosen sparsity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .sweetspot import sweet_spot

__all__ = ["LayerAdvice", "advise", "network_layers"]

NETWORKS = ("alexnet", "resnet50", "bert-base")

# Used only when perfmodel.shapes (the sweeps' layer sets) is unavailable.
_FALLBACK: dict[str, tuple[tuple[str, str, dict[str, int]], ...]] = {
    "alexnet": (
        ("conv2", "conv2d", dict(c=64, h=27, w=27, o=192, r=5, s=5, padding=2)),
        ("conv3", "conv2d", dict(c=192, h=13, w=13, o=384, r=3, s=3, padding=1)),
        ("conv4", "conv2d", dict(c=384, h=13, w=13, o=256, r=3, s=3, padding=1)),
        ("conv5", "conv2d", dict(c=256, h=13, w=13, o=256, r=3, s=3, padding=1)),
        ("fc6", "spmm", dict(m=4096, k=9216, n=32)),
    ),
    "resnet50": (
        ("layer3.conv2", "conv2d", dict(c=256, h=14, w=14, o=256, r=3, s=3, padding=1)),
        ("layer4.conv2", "conv2d", dict(c=512, h=7, w=7, o=512, r=3, s=3, padding=1)),
    ),
    "bert-base": (
        ("attention.qkv", "spmm", dict(m=2304, k=768, n=128)),
        ("intermediate", "spmm", dict(m=3072, k=768, n=128)),
        ("output", "spmm", dict(m=768, k=3072, n=128)),
    ),
}


def network_layers(network: str) -> list[tuple[str, str, dict[str, int]]]:
    """(layer name, op, shape) of every prunable layer of a named network."""
    try:
        from .shapes import layer_set
    except ImportError:
        key = network.lower()
        if key not in _FALLBACK:
            raise ValueError(f"unknown network {network!r}; valid: {list(NETWORKS)}") from None
        return list(_FALLBACK[key])
    out = []
    for layer in layer_set(network):
        d = dict(layer.dims)
        if layer.kind == "conv":
            if d.get("groups", 1) != 1:
                continue
            out.append((layer.name, "conv2d", {k: d[k] for k in (
                "c", "h", "w", "o", "r", "s", "stride", "padding", "batch")}))
        else:
            out.append((layer.name, "spmm", {"m": d["out"], "k": d["in"], "n": d["tokens"]}))
    return out


@dataclass(frozen=True)
class LayerAdvice:
    """One row of the guided-pruning table (sparsities are fractions of zeros)."""

    layer: str
    op: str
    shape: dict[str, int]
    lower: float | None
    upper: float
    speedup: float          # Park et al.'s model at the chosen sparsity
    model_speedup: float    # best_config's prediction (measured / model / roofline)
    model_source: str
    break_even: float | None = None   # perfmodel.query.break_even: sparse wins from here

    @property
    def useful(self) -> bool:
        return self.lower is not None and self.lower < self.upper


def advise(network: str, *, target: str = "host", sparsity: float = 0.9, store: Any = None,
           threads: int | None = None, probe: float | None = None, passes: int = 1,
           progress: bool | None = None) -> list[LayerAdvice]:
    """Guided-pruning table of ``network`` on ``target`` (see the module docstring).

    ``probe``: first measure every layer once at this sparsity on the host
    (:mod:`perfmodel.probe`, ``passes`` times, one sweep into ``store``), so that the model
    speedups are corrected by the layers' own measurements.
    """
    from .query import best_config, break_even

    if probe is not None:
        if target != "host":
            raise ValueError(f"probing measures this machine; it does not apply to target "
                             f"{target!r}")
        from ._sweep import sweep
        from .probe import probe_spec

        spec = probe_spec([(op, shape) for _, op, shape in network_layers(network)],
                          threads=threads, sparsity=probe)
        sweep(spec, store, passes=passes, progress=progress)
    rows = []
    for name, op, shape in network_layers(network):
        spot = sweet_spot(op, target=target, store=store, threads=threads, **shape)
        best = best_config(op, target=target, store=store, threads=threads,
                           sparsity=sparsity, **shape)
        rows.append(LayerAdvice(name, op, shape, spot.lower, spot.upper,
                                spot.speedup(sparsity), best.speedup, best.source,
                                break_even(op, target=target, store=store, threads=threads,
                                           **shape)))
    return rows


def format_advice(rows: list[LayerAdvice], sparsity: float) -> str:
    lines = [f"{'layer':22s} {'op':6s} {'shape':34s} {'sweet spot (sparsity)':>22s} "
             f"{'Park x':>7s} {'model x':>8s} {'wins from':>9s}  source",
             f"{'':22s} {'':6s} {'':34s} {'':>22s} {'@' + format(sparsity, '.2f'):>7s} "
             f"{'@' + format(sparsity, '.2f'):>8s}"]
    for r in rows:
        if r.op == "conv2d":
            s = r.shape
            shape = (f"{s['c']}x{s['h']}x{s['w']} -> {s['o']}, {s['r']}x{s['s']}"
                     f"/{s.get('stride', 1)}")
        else:
            shape = f"{r.shape['m']}x{r.shape['k']} @ n={r.shape['n']}"
        if r.useful:
            spot = f"{r.lower:.2f} .. {r.upper:.2f}"
        elif r.lower is None:
            spot = "never faster"
        else:
            spot = f"none ({r.lower:.2f} > {r.upper:.2f})"
        wins = "never" if r.break_even is None else f"{r.break_even:.2f}"
        lines.append(f"{r.layer:22s} {r.op:6s} {shape:34s} {spot:>22s} {r.speedup:7.2f} "
                     f"{r.model_speedup:8.2f} {wins:>9s}  {r.model_source}")
    return "\n".join(lines)
