"""Optuna search over kernel choices and parameters, guided by the performance models."""

__all__: list[str] = []
