"""Shared fixtures and the one place where skip conditions live.

Under CI (``CI=true``) a missing external tool (qemu-user, PostgreSQL, Chromium) is a
failure, not a skip: CI installs them, so a skip there would hide a broken install step.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

import kernels_c

# Fewer random examples when the suite reruns under the (slow) sanitizer build.
settings.register_profile("sanitizer", max_examples=15, deadline=None)
settings.register_profile("default", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
DLMC_DIR = SHARED_DATA / "dlmc" / "rn50" / "magnitude_pruning"


def require_tool(name: str, why: str) -> str:
    """Path of executable ``name``; skip (fail under CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed ({why})"
        if IN_CI:
            pytest.fail(message + "; .ci/run should have installed it")
        pytest.skip(message)
    return path


def require_dlmc() -> Path:
    if not DLMC_DIR.is_dir():
        pytest.skip(f"DLMC matrices not found at {DLMC_DIR} (../shared/data is optional)")
    return DLMC_DIR


#: every ISA path this CPU can run; kernel tests are parametrized over it
ISA_PATHS = kernels_c._isa.supported_levels()


@pytest.fixture(params=ISA_PATHS)
def isa_path(request) -> str:
    return request.param
