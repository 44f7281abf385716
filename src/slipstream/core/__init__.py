"""The loop core: scheduling, timers, readiness, lifecycle, errors, executors.

:mod:`.handles` and :mod:`.scheduler` are the hot path.  ``pip install`` compiles
them (Cython, from these very ``.py`` files plus the ``.pxd`` files beside them)
where a C compiler is available; the compiled modules then sit beside the
sources and Python's import system prefers them.  This module decides which
ones are used, once, before anything else imports them:

* ``SLIPSTREAM_PURE=1`` (any value but ``""`` and ``"0"``) loads the ``.py``
  sources even when compiled modules are installed;
* otherwise the compiled modules are used if *all* of them import (a compiled
  scheduler needs the compiled handles' C layout); if any is missing or fails
  to load, every one of them falls back to its source.

:data:`COMPILED` (re-exported as ``slipstream.compiled``) says which happened.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

_HOT_MODULES = ("handles", "scheduler")


def _load_source(name: str) -> ModuleType:
    """Import ``slipstream.core.NAME`` from its ``.py`` file, whatever else sits beside it."""
    qualified = f"{__name__}.{name}"
    path = os.path.join(os.path.dirname(__file__), f"{name}.py")
    spec = importlib.util.spec_from_file_location(qualified, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualified]
        raise
    globals()[name] = module  # as an ordinary import binds the submodule on its package
    return module


def _select_hot_modules() -> bool:
    """Import the hot modules, compiled if possible and allowed; True if compiled."""
    if os.environ.get("SLIPSTREAM_PURE", "") not in ("", "0"):
        modules = None
    else:
        try:
            modules = [importlib.import_module(f"{__name__}.{name}") for name in _HOT_MODULES]
        except ImportError:
            modules = None
    if modules is not None and not any(m.__file__ and m.__file__.endswith(".py") for m in modules):
        return True
    # In order: the scheduler imports the handles, and must find the ones loaded here.
    for name in _HOT_MODULES:
        sys.modules.pop(f"{__name__}.{name}", None)
    for name in _HOT_MODULES:
        _load_source(name)
    return False


COMPILED: bool = _select_hot_modules()
"""Whether the compiled (C) handles and scheduler are in use."""

from .handles import Handle, TimerHandle  # noqa: E402  (after the selection above)
from .loop import CoreLoop, fileobj_to_fd  # noqa: E402

__all__ = ["COMPILED", "CoreLoop", "Handle", "TimerHandle", "fileobj_to_fd"]
