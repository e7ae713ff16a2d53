"""Load kernels_c extension modules: the default build, or a cached compile-time variant.

A *variant* is one module rebuilt with other ``-D`` parameters (register tile, unroll...).
Variants are cached on disk under ``$KERNELS_C_CACHE`` (default
``$XDG_CACHE_HOME/kernels_c`` or ``~/.cache/kernels_c``), keyed by a hash of the sources,
the cdef, the defines, the compiler flags and the compiler's version string. A build happens
in a private temporary folder and the finished shared object is moved into place with
``os.replace`` (atomic on POSIX): two processes asking for one variant at once both succeed,
and a crash mid-build never leaves a broken entry behind.

Setting ``KERNELS_C_SANITIZE=1`` makes every module, the default one included, load from a
variant built with AddressSanitizer and UBSan (run Python with libasan in ``LD_PRELOAD``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

from . import _build


def cache_dir() -> Path:
    """Folder that holds compiled variants."""
    env = os.environ.get("KERNELS_C_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kernels_c"


@functools.lru_cache(maxsize=1)
def _compiler_version() -> str:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    try:
        out = subprocess.run(
            [*cc.split(), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        return out.stdout.strip() or cc
    except (OSError, subprocess.SubprocessError) as exc:  # no compiler: report on build
        return f"{cc} unavailable: {exc}"


def _sanitize() -> bool:
    return os.environ.get("KERNELS_C_SANITIZE", "") not in ("", "0")


def variant_key(name: str, defines: dict[str, int], extra_cflags: tuple[str, ...]) -> str:
    """Hex digest identifying one compiled variant of module ``name``."""
    h = hashlib.sha256()
    for path in _code_paths(name):
        h.update(path.read_bytes())
    h.update(repr(sorted(defines.items())).encode())
    h.update(repr((_build.BASE_CFLAGS, extra_cflags)).encode())
    h.update(_compiler_version().encode())
    return h.hexdigest()[:20]


def _code_paths(name: str) -> list[Path]:
    """The C sources, declarations and common header module ``name`` is compiled from."""
    return [*_build.source_paths(name), _build.HERE / "cdef" / f"{name}.h",
            _build.HERE / "include" / "kc_common.h"]


#: the Python module that prepares each extension module's calls (its default parameters)
_WRAPPERS = {"spmm": "spmm.py", "conv": "conv.py", "dense": "gemm.py", "qgemm": "quant.py"}


@functools.cache
def source_digest(*names: str) -> str:
    """Hex digest (16 chars) of what decides how the kernels of modules ``names`` run: their
    C sources and declarations, the common header, and the Python module that prepares
    their calls and picks their default parameters. A sweep stores it with every
    measurement of these kernels and measures a stored point again once it differs."""
    h = hashlib.sha256()
    for name in names:
        wrapper = [_build.HERE / _WRAPPERS[name]] if name in _WRAPPERS else []
        for path in [*_code_paths(name), *wrapper]:
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _import_from(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_variant(name: str, defines: dict[str, int] | None = None) -> ModuleType:
    """Compile (or fetch from the cache) module ``name`` with ``defines``; return it."""
    defines = {k: int(v) for k, v in (defines or {}).items()}
    extra = _build.SANITIZE_CFLAGS if _sanitize() else ()
    key = variant_key(name, defines, extra)
    module_name = f"_{name}_v{key}"
    folder = cache_dir()
    target = folder / (module_name + sysconfig.get_config_var("EXT_SUFFIX"))
    if target.exists():
        try:
            return _import_from(target, module_name)
        except ImportError:
            pass  # unreadable entry (e.g. another Python ABI): rebuild over it
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"build-{module_name}-", dir=folder))
    try:
        ffi = _build.make_ffi(name, module_name=module_name, defines=defines,
                              extra_cflags=extra, extra_ldflags=extra)
        try:
            built = Path(ffi.compile(tmpdir=str(tmp), verbose=False))
        except Exception as exc:  # cffi raises VerificationError and distutils errors
            raise RuntimeError(
                f"compiling kernels_c variant {name} {defines} failed (is a C compiler "
                f"installed? {_compiler_version()!r}): {exc}"
            ) from exc
        os.replace(built, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _import_from(target, module_name)


@functools.cache
def load(name: str, defines: tuple[tuple[str, int], ...] = ()) -> ModuleType:
    """Return the cffi module for ``name`` (``.ffi`` and ``.lib``).

    With no ``defines`` this is the module compiled at install time, unless sanitizers are
    requested; otherwise a cached variant.
    """
    if not defines and not _sanitize():
        return importlib.import_module(f"kernels_c._{name}_ext")
    return build_variant(name, dict(defines))


def load_for(name: str, params: dict[str, int], compiled: dict[str, int],
             macros: dict[str, str]) -> ModuleType:
    """The module of ``name`` for kernel ``params``: the installed build where every
    compile-time parameter (``macros``: parameter -> C macro) has its ``compiled`` value,
    otherwise the variant with the differing ones defined."""
    return load(name, tuple((macros[p], int(params[p])) for p in sorted(macros)
                            if params[p] != compiled[p]))
