"""Transports: the objects that move bytes between a descriptor and a protocol.

The stream socket transport's engine (:mod:`.stream_engine`, reading and
writing) is compiled where ``pip install`` had a C compiler; :data:`COMPILED`
says whether it is in use (``SLIPSTREAM_PURE=1`` loads its source, as for the
core and the backends).
"""

from __future__ import annotations

from ..accelerate import load_modules

COMPILED: bool = load_modules(__name__, ("stream_engine",))
"""Whether the compiled stream engine is in use."""

__all__ = ["COMPILED"]
