"""Roofline calibration for a target: from the learned-model file, the store, or defaults.

Only ``host`` can be calibrated (the store holds this machine's measurements); every other
target uses its description and says so (``RooflineModel.calibration_source_``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .._paths import default_store_path, file_stamp, host_profile_path, model_path
from .roofline import RooflineModel

__all__ = ["host_results", "roofline_for"]


def _store_key(store: Any) -> tuple:
    if store is None:
        path = default_store_path()
    elif isinstance(store, (str, os.PathLike)) and "://" not in str(store):
        path = Path(store).expanduser()
    else:
        return ("obj", id(store) if not isinstance(store, str) else store)
    try:
        st = path.stat()
    except OSError:
        return ("missing", str(path))
    return ("file", str(path), st.st_mtime_ns, st.st_size)


def host_results(store: Any = None) -> pd.DataFrame | None:
    """This machine's measured rows in ``store`` (None: the default file if it exists)."""
    key = _store_key(store)
    if key[0] == "missing":
        return None
    return _host_results_cached(key, store if key[0] == "obj" else None)


@functools.lru_cache(maxsize=8)
def _host_results_cached(key: tuple, store_obj: Any) -> pd.DataFrame | None:
    from .._context import machine
    from ..store import load_results

    src = store_obj if store_obj is not None else (key[1] if key[0] == "file" else None)
    df = load_results(src, fingerprint=machine()[0])
    return df if len(df) else None


def _model_file_factors() -> dict | None:
    path = model_path()
    if not path.exists():
        return None
    from .learned import load_calibration
    try:
        return load_calibration(path)
    except (ValueError, OSError):
        return None


def roofline_for(target: str, store: Any = None, threads: int | None = None
                 ) -> RooflineModel:
    """A fitted :class:`RooflineModel` for ``target`` (calibrated where possible)."""
    key = (("host", _store_key(store), file_stamp(model_path()),
            file_stamp(host_profile_path())) if target == "host"
           else (target,))
    return _roofline_cached(target, key, store if key[1:2] and key[1][0] == "obj" else None)


@functools.lru_cache(maxsize=32)
def _roofline_cached(target: str, key: tuple, store_obj: Any) -> RooflineModel:
    model = RooflineModel(target=target)
    if target != "host":
        return model.defaults()
    store = store_obj
    if store is None and key[1][0] == "file":
        store = key[1][1]
    if key[1][0] != "missing":
        rows = host_results(store)
        if rows is not None:
            return model.fit(rows)
    factors = _model_file_factors()
    if factors is not None:
        model.defaults()
        model.factors_ = factors["factors"]
        model.calibration_source_ = {f: "model file" for f in factors["factors"]
                                     if not f.startswith("kernel:")}
        return model
    return model.defaults()
