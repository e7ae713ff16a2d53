"""Self-contained HTML performance reports."""

__all__: list[str] = []
