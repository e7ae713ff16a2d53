"""Performance modeling of sparse and quantized kernels: measurement harness, sweeps,
results store, target catalog, roofline and learned models, queries and the CLI."""

from __future__ import annotations

from ._lazy import lazy_attributes

#: public name -> module that defines it (imported on first use, so ``import perfmodel``
#: stays cheap for the CLI and for code that needs only one part)
_LAZY = {
    "open_store": "perfmodel.store",
    "load_results": "perfmodel.store",
    "sweep": "perfmodel._sweep",
    "sweet_spot": "perfmodel.sweetspot",
    "best_config": "perfmodel.query",
    "break_even": "perfmodel.query",
    "probe": "perfmodel.probe",
}

__all__ = ["best_config", "break_even", "load_results", "open_store", "probe", "sweep",
           "sweet_spot"]

__getattr__ = lazy_attributes(__name__, _LAZY)
