"""Performance modeling of sparse and quantized kernels: measurement harness, sweeps,
results store, target catalog, roofline and learned models, queries and the CLI."""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it (imported on first use, so ``import perfmodel``
#: stays cheap for the CLI and for code that needs only one part)
_LAZY = {
    "open_store": "perfmodel.store",
    "load_results": "perfmodel.store",
    "sweep": "perfmodel._sweep",
    "sweet_spot": "perfmodel.sweetspot",
    "best_config": "perfmodel.query",
}

__all__ = ["best_config", "load_results", "open_store", "sweep", "sweet_spot"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
