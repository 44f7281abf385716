"""Which of slipstream's modules run compiled: one rule for every package that has some.

``pip install`` compiles a few modules with Cython where a C compiler exists,
from their very ``.py`` files plus the ``.pxd`` files beside them (see
``setup.py``); the compiled module then sits beside its source and Python's
import system prefers it.  A package with such modules calls
:func:`load_modules` for them before anything imports them, and this decides,
once per group:

* ``SLIPSTREAM_PURE=1`` (any value but ``""`` and ``"0"``) loads the ``.py``
  sources even when compiled modules are installed;
* otherwise the compiled modules are used if *all* of the group import (a
  group is modules that share C types, such as a compiled scheduler and the
  compiled handles whose layout it uses); if one is missing or fails to load,
  every one of them falls back to its source.

:data:`COMPILED_MODULES` records the outcome for each module, by name.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["COMPILED_MODULES", "load_modules", "pure_requested"]

COMPILED_MODULES: dict[str, bool] = {}
"""For every module loaded through :func:`load_modules`: whether it is the compiled one."""


def pure_requested() -> bool:
    """Whether ``SLIPSTREAM_PURE`` asks for the interpreted sources."""
    return os.environ.get("SLIPSTREAM_PURE", "") not in ("", "0")


def _load_source(package: str, name: str) -> ModuleType:
    """Import ``package.name`` from its ``.py`` file, whatever else sits beside it."""
    qualified = f"{package}.{name}"
    parent = sys.modules[package]
    assert parent.__file__ is not None
    path = os.path.join(os.path.dirname(parent.__file__), f"{name}.py")
    spec = importlib.util.spec_from_file_location(qualified, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualified]
        raise
    setattr(parent, name, module)  # as an ordinary import binds the submodule on its package
    return module


def load_modules(package: str, names: Sequence[str]) -> bool:
    """Import ``package.NAME`` for each name, compiled if possible and allowed; True if compiled.

    Call it from the package's ``__init__`` before anything imports these
    modules.  Sources are loaded in the order given (a module's imports of
    the others must find the ones loaded here).
    """
    modules: list[ModuleType] | None = None
    if not pure_requested():
        try:
            modules = [importlib.import_module(f"{package}.{name}") for name in names]
        except (ImportError, TypeError, ValueError):
            # ImportError: not built.  TypeError, ValueError: built, but a
            # C type it imports from another group is that group's source
            # class (a build that compiled one package and not the other):
            # Cython refuses the type ("size changed"), and these sources
            # run on the others' sources as well as on their C types.
            modules = None
    compiled = modules is not None and not any(
        m.__file__ and m.__file__.endswith(".py") for m in modules
    )
    if not compiled:
        for name in names:
            sys.modules.pop(f"{package}.{name}", None)
        for name in names:
            _load_source(package, name)
    for name in names:
        COMPILED_MODULES[f"{package}.{name}"] = compiled
    return compiled
