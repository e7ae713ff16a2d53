"""Self-contained HTML performance reports.

``build_report(store)`` returns the report as an HTML string, ``write_report(path, store)``
writes it; ``perfmodel report`` and ``perfmodel run`` are the commands (``reports._cli``).
"""

from __future__ import annotations

from .render import build_report, write_report

__all__ = ["build_report", "write_report"]
