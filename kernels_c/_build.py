"""cffi API-mode builders for the kernels_c extension modules.

Each entry of ``MODULES`` is one extension module ``kernels_c._<name>_ext`` built from
``cdef/<name>.h`` (the declarations, parsed by cffi and included verbatim by the C code) and
the listed C sources. ``pip install .`` builds every module once with the default
compile-time parameters (``setup.py`` lists ``ffi_<name>`` for each entry); the variant cache
in :mod:`kernels_c._loader` rebuilds one module with other ``-D`` parameters on demand.

Run ``python kernels_c/_build.py [name ...]`` to build modules in place while developing.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:    # cffi's parser costs ~60 ms to import: only builds need it
    from cffi import FFI

HERE = Path(__file__).resolve().parent

#: module name -> C sources (relative to ``src/``); every module also gets ``runtime.c``'s
#: header but not its code, so modules stay independent of each other.
MODULES: dict[str, tuple[str, ...]] = {
    "runtime": ("runtime.c",),
    "spmm": ("spmm.c",),
    "bench": ("bench.c",),
    "conv": ("conv.c",),
    "dense": ("dense.c",),
    "qgemm": ("qgemm.c",),
    "forest": ("forest.c",),
}

#: Baseline flags. No -march: the translation units stay at the x86-64 baseline and the SIMD
#: paths are enabled per function (see include/kc_common.h), so one build runs on any x86-64.
BASE_CFLAGS = ("-O3", "-std=gnu11", "-fopenmp", "-fno-math-errno", "-fPIC")
BASE_LDFLAGS = ("-fopenmp",)
SANITIZE_CFLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                   "-fno-omit-frame-pointer", "-g")


def read_cdef(name: str) -> str:
    return (HERE / "cdef" / f"{name}.h").read_text()


def source_paths(name: str) -> list[Path]:
    return [HERE / "src" / s for s in MODULES[name]]


def make_ffi(
    name: str,
    *,
    module_name: str | None = None,
    defines: dict[str, int] | None = None,
    extra_cflags: tuple[str, ...] = (),
    extra_ldflags: tuple[str, ...] = (),
) -> FFI:
    """Return an FFI builder for module ``name`` with compile-time ``defines``."""
    if name not in MODULES:
        raise ValueError(f"unknown kernels_c module {name!r}; known: {sorted(MODULES)}")
    from cffi import FFI

    cdef = read_cdef(name)
    ffi = FFI()
    ffi.cdef(cdef)
    macros = [(k, str(int(v))) for k, v in sorted((defines or {}).items())]
    # Sources are given relative to the project root when built by setup.py (setuptools
    # wants relative paths) and absolute otherwise.
    srcs = [str(p) for p in source_paths(name)]
    if os.environ.get("KERNELS_C_RELATIVE_SOURCES"):
        root = HERE.parent
        srcs = [os.path.relpath(s, root) for s in srcs]
    ffi.set_source(
        module_name or f"kernels_c._{name}_ext",
        '#include "kc_common.h"\n' + cdef,
        sources=srcs,
        include_dirs=[str(HERE / "include"), str(HERE / "cdef")],
        define_macros=macros,
        extra_compile_args=list(BASE_CFLAGS + extra_cflags),
        extra_link_args=list(BASE_LDFLAGS + extra_ldflags),
    )
    return ffi


# what setup.py's cffi_modules name: functions, which cffi calls, so that importing this
# module (every kernels_c import does) parses no declarations (~0.1 s)
for _name in MODULES:
    globals()[f"ffi_{_name}"] = functools.partial(make_ffi, _name)


if __name__ == "__main__":
    names = sys.argv[1:] or list(MODULES)
    for n in names:
        out = make_ffi(n).compile(tmpdir=str(HERE.parent), verbose=False)
        print(out)
