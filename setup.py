"""Build hook: setuptools compiles one cffi extension per kernels_c module.

All metadata lives in pyproject.toml; setup.py only exists because ``cffi_modules`` has no
pyproject.toml equivalent.
"""

import ast
import os
from pathlib import Path

from setuptools import setup

os.environ["KERNELS_C_RELATIVE_SOURCES"] = "1"
_tree = ast.parse(Path("kernels_c/_build.py").read_text())
_modules = next(
    ast.literal_eval(node.value)
    for node in _tree.body
    if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MODULES"
)
setup(cffi_modules=[f"kernels_c/_build.py:ffi_{name}" for name in _modules])
