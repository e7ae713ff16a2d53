"""Self-contained HTML performance reports.

``build_report(store)`` returns the report as an HTML string, ``write_report(path, store)``
writes it; ``perfmodel report`` and ``perfmodel run`` are the commands (``reports._cli``).
The names are imported on first use, so the CLI can load ``reports._cli`` at start-up
without pulling in matplotlib, pandas and jinja2.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["build_report", "write_report"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    value = getattr(importlib.import_module("reports.render"), name)
    globals()[name] = value
    return value
