"""The loop core: scheduling, timers, readiness, lifecycle, errors, executors.

:mod:`.handles` and :mod:`.scheduler` are the hot path.  ``pip install`` compiles
them (Cython, from these very ``.py`` files plus the ``.pxd`` files beside them)
where a C compiler is available; the compiled modules then sit beside the
sources and Python's import system prefers them.  This module decides which
ones are used, once, before anything else imports them:

* ``SLIPSTREAM_PURE=1`` (any value but ``""`` and ``"0"``) loads the ``.py``
  sources even when compiled modules are installed;
* otherwise the compiled modules are used if *both* import (a compiled
  scheduler needs the compiled handles' C layout); if either is missing or
  fails to load, both fall back to their sources.

The rule is :func:`slipstream.accelerate.load_modules`, which the other
packages with compiled modules use too.

:data:`COMPILED` (re-exported as ``slipstream.compiled``) says which happened.
"""

from __future__ import annotations

from ..accelerate import load_modules

COMPILED: bool = load_modules(__name__, ("handles", "scheduler"))
"""Whether the compiled (C) handles and scheduler are in use."""

from .handles import Handle, TimerHandle  # noqa: E402  (after the selection above)
from .loop import CoreLoop, fileobj_to_fd  # noqa: E402

__all__ = ["COMPILED", "CoreLoop", "Handle", "TimerHandle", "fileobj_to_fd"]
