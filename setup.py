"""Build the optional compiled core of slipstream; everything else is in pyproject.toml.

``pip install .`` and ``pip install -e .`` compile the modules of
``COMPILED_MODULES`` (the scheduling core, the epoll backend and the socket
calls of the I/O path) with Cython in pure-Python mode: the ``.py`` files are
the source, the ``.pxd`` files beside them add C types.  The result is the
same package with those modules as C extensions, which their packages prefer
at import time (``SLIPSTREAM_PURE=1`` overrides; see slipstream/accelerate.py).

Compiling is optional.  Without Cython, a C compiler or Python's headers, the
build prints one warning line and installs the pure-Python package, which is
complete on its own.  ``SLIPSTREAM_NO_COMPILE=1`` skips compiling on purpose.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Modules compiled from their own .py source (+ the .pxd beside it).  Each
# package loads its group through slipstream.accelerate.load_modules, so a
# group is compiled or interpreted as a whole.
COMPILED_MODULES = (
    "core.handles",
    "core.scheduler",
    "backends.socket_calls",
    "backends.ready",
    "backends.epoll",
    "transports.stream_engine",
)

# Cython directives for the compiled core (docs/benchmarks.md, "Compiled core"):
# types come from the .pxd files only, never from annotations, so a compiled
# build accepts exactly the arguments the interpreted one does; methods are
# plain C methods (binding=False), which CPython's call specialisation handles.
DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,
    "binding": False,
    "boundscheck": False,
    "embedsignature": True,
}


def warn(reason: str) -> None:
    print(f"WARNING: slipstream: not compiling the core ({reason}); "
          "installing the pure-Python loop", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to the pure-Python package instead of failing.

    If one module fails after another compiled, slipstream.core notices at
    import time and uses neither (a compiled scheduler needs compiled handles).
    """

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, a compiler error
            warn(f"{type(exc).__name__}: {exc}")


def newest_declaration() -> float:
    """When the newest .pxd of the package was written (0 if there is none).

    Cython regenerates a module's C when its source or the files it finds that
    source cimporting change, but it reads cimports with a pattern that misses
    some (stream_engine.pxd's "from slipstream.backends cimport syscalls"
    came out as a module named after the next declaration), so a changed
    syscalls.pxd left the stream engine's C, and so an editable install's
    receive code, as it was.  The .pxd files are few and small: any of them
    newer than a module's C regenerates it (see extensions()).
    """
    newest = 0.0
    for directory, _, files in os.walk(os.path.join("src", "slipstream")):
        for file in files:
            if file.endswith(".pxd"):
                newest = max(newest, os.path.getmtime(os.path.join(directory, file)))
    return newest


def generated_before(name: str, moment: float) -> bool:
    """Whether the module's generated C exists and was written before ``moment``."""
    generated = os.path.join("build", "cython", "src", "slipstream", *name.split(".")) + ".c"
    return os.path.exists(generated) and os.path.getmtime(generated) < moment


def extensions() -> list[Extension]:
    if os.environ.get("SLIPSTREAM_NO_COMPILE", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn("Cython is not installed")
        return []
    built = []
    declared = newest_declaration()
    # One module at a time: a module Cython cannot compile is left out (its
    # package then loads its group's sources) without losing the others.
    for name in COMPILED_MODULES:
        module = Extension(f"slipstream.{name}", [f"src/slipstream/{name.replace('.', '/')}.py"])
        try:
            built += cythonize(
                [module],
                compiler_directives=DIRECTIVES,
                build_dir="build/cython",
                quiet=True,
                force=generated_before(name, declared),
            )
        except Exception as exc:
            warn(f"Cython failed on slipstream.{name}: {exc}")
    return built


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
