"""The clock and context calls of the hot path, which the compiled build inlines as C.

Interpreted, these names are the standard library's own functions.  When
:mod:`.scheduler` is compiled, ``primitives.pxd`` (beside this file) defines
them as inline C functions that give the same results without a Python call:

* ``monotonic()`` reads ``clock_gettime(CLOCK_MONOTONIC)`` and converts it the
  way :func:`time.monotonic` does (whole nanoseconds, then one division), so
  compiled and interpreted loops read identical times;
* ``copy_context()`` is :func:`contextvars.copy_context`;
* ``run_in_context(context, callback)`` and ``run_in_context_with(context,
  callback, arg)`` are ``context.run(callback)`` and ``context.run(callback,
  arg)``: enter the context, call, leave it even if the call raised;
* ``lag_bucket(seconds)`` is the bit length of the whole microseconds in
  ``seconds``: 0 under 1 µs, 1 under 2 µs, 2 under 4 µs, ... (the index of
  a power-of-two histogram bucket);
* ``empty_list(items)`` is ``items.clear()``, but compiled it keeps the list's
  array for the next appends (the ready queue is emptied once per turn);
* ``inline_instance_values(cls)``, compiled, makes instances of ``cls`` (a
  Python class over the compiled scheduler) keep their attributes inline, as
  instances made by ``object.__new__`` do, so the interpreter specialises
  lookups on them (``primitives.pxd`` says how); it returns whether it did.
  Interpreted, the scheduler is a Python class and there is nothing to do;
* ``own_methods(cls, names)``, compiled, gives ``cls`` its own copies of the
  method descriptors it inherits from a compiled base under those names, so
  calling them on an instance of ``cls`` needs no walk of its MRO and stays
  specialised (``primitives.pxd`` says why); it returns how many it copied.
  Interpreted, methods are functions and there is nothing to copy;
* ``same_method(a, b)`` is ``a is b``, or, compiled, whether two method
  descriptors are copies of one C method (the copies above);
* ``compiled()`` is false here and true in the compiled build, for the few
  steps only C can take (below);
* ``unshared(obj)``, compiled, says whether the caller's reference is the only
  one to ``obj`` and nothing refers to it weakly: then nothing can ever see
  the object again but the caller, which may reuse it (the scheduler recycles
  the handles it has run).  Interpreted, a reference count includes the
  interpreter's own references, which differ between versions, so it is never
  called: the interpreted loop does not recycle.

The event loop reads the clock once per turn, runs every callback in a
context and empties its ready list once per turn, so these calls are a
measurable share of a callback's cost.
"""

from __future__ import annotations

import contextvars
import time

__all__ = [
    "compiled",
    "copy_context",
    "empty_list",
    "inline_instance_values",
    "lag_bucket",
    "monotonic",
    "own_methods",
    "run_in_context",
    "run_in_context_with",
    "same_method",
    "unshared",
]

monotonic = time.monotonic
copy_context = contextvars.copy_context
run_in_context = contextvars.Context.run
run_in_context_with = contextvars.Context.run
empty_list = list.clear


def lag_bucket(seconds: float) -> int:
    """The bit length of ``seconds`` in whole microseconds (see the module docstring)."""
    return int(seconds * 1e6).bit_length()


def inline_instance_values(cls: type) -> bool:
    """Nothing to do interpreted (see above): False."""
    return False


def own_methods(cls: type, names: tuple[str, ...]) -> int:
    """Nothing to copy interpreted (see above): 0, after the compiled build's checks."""
    if not isinstance(cls, type) or not isinstance(names, tuple):
        raise TypeError("own_methods(cls, names): a class and a tuple of names")
    if not all(isinstance(name, str) for name in names):
        raise TypeError("own_methods(cls, names): names must be strings")
    return 0


def same_method(a: object, b: object) -> bool:
    """``a is b`` interpreted (see above)."""
    return a is b


def compiled() -> bool:
    """False: this is the interpreted build (the compiled one inlines True)."""
    return False


def unshared(obj: object) -> bool:
    """Whether the caller holds the only reference to ``obj`` (compiled only; see above)."""
    return False
