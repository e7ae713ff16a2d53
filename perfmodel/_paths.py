"""Default locations of the files the suite keeps between runs.

Everything lives in one data folder: ``$PERFMODEL_HOME`` when set, otherwise
``$XDG_DATA_HOME/perfmodel`` (``~/.local/share/perfmodel``). Every API and command that uses
one of these files also takes an explicit path or URL (``store=``, ``--db``...).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path


def data_dir() -> Path:
    """The data folder (created on first use by whoever writes into it)."""
    home = os.environ.get("PERFMODEL_HOME")
    if home:    # the others are not read (an environment lookup costs ~1 us)
        return _data_dir(home, None, None)
    return _data_dir(home, os.environ.get("XDG_DATA_HOME"), os.environ.get("HOME"))


# memoized on the environment it reads: best_config asks for three of these paths per
# query, and building them cost ~10 % of a query's time
@functools.lru_cache(maxsize=16)
def _data_dir(home: str | None, xdg: str | None, _user_home: str | None) -> Path:
    if home:
        return Path(home).expanduser()
    base = xdg or str(Path.home() / ".local" / "share")
    return Path(base) / "perfmodel"


@functools.lru_cache(maxsize=64)
def _in(folder: Path, name: str) -> Path:
    return folder / name


def default_store_path() -> Path:
    """The embedded SQLite results store."""
    return _in(data_dir(), "results.db")


def host_profile_path() -> Path:
    """The host profile written by ``perfmodel characterize``."""
    return _in(data_dir(), "host.json")


def model_path() -> Path:
    """The learned model written by ``perfmodel fit``."""
    return _in(data_dir(), "model.json")


def file_stamp(path: str | os.PathLike) -> tuple:
    """(modification time ns, size) of a file, () when it does not exist: the cache-key
    part that changes when the file does."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_size)


def report_path() -> Path:
    """The HTML report written by ``perfmodel report`` / ``perfmodel run``."""
    return data_dir() / "report.html"
