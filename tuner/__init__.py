"""Optuna search over kernel choices and parameters, guided by the performance models.

``tune(op, n_trials=..., **shape)`` measures (or, in simulation mode, replays a recorded
exhaustive sweep), re-times the best candidates interleaved and records the winner in the
results store. See docs/tuner.md.
"""

from __future__ import annotations

from perfmodel._lazy import lazy_attributes

#: public name -> module that defines it (imported on first use, so the ``perfmodel`` CLI,
#: which registers the tuner's subcommands, starts without loading optuna, pandas and the
#: store for commands that need none of them)
_LAZY = {
    "SearchSpace": "tuner.space",
    "search_space": "tuner.space",
    "TuneOptions": "tuner.study",
    "TuneResult": "tuner.study",
    "tune": "tuner.study",
}

__all__ = ["SearchSpace", "TuneOptions", "TuneResult", "search_space", "tune"]

__getattr__ = lazy_attributes(__name__, _LAZY)
