"""Optuna search over kernel choices and parameters, guided by the performance models.

``tune(op, n_trials=..., **shape)`` measures (or, in simulation mode, replays a recorded
exhaustive sweep), re-times the best candidates interleaved and records the winner in the
results store. See docs/tuner.md.
"""

from .space import SearchSpace, search_space
from .study import TuneOptions, TuneResult, tune

__all__ = ["SearchSpace", "TuneOptions", "TuneResult", "search_space", "tune"]
