"""Write-buffer flow control, shared by every byte-stream transport (socket, pipe, TLS).

A transport buffers what the kernel would not take yet.  So that a fast producer
cannot grow that buffer without bound, asyncio's contract is two water marks:
when the buffer grows *above* the high mark the transport calls the protocol's
``pause_writing()``, and once it has drained *to or below* the low mark it calls
``resume_writing()``.  The calls strictly alternate, starting with a pause.
(``StreamWriter.drain()`` is built on exactly this.)

:class:`WriteFlowControl` holds the marks and the paused flag and makes those
calls; the transport that mixes it in owns the buffer.  It must:

* implement :meth:`~WriteFlowControl.get_write_buffer_size` (cheaply: it is
  consulted after every buffered write),
* call :meth:`~WriteFlowControl._maybe_pause_protocol` after its buffer grows,
  and :meth:`~WriteFlowControl._maybe_resume_protocol` after it shrinks,
* have ``_loop`` (for error reporting) and ``_protocol`` attributes.

Nothing here is socket-specific.  The marks and the paused flag are class
attributes until first changed, so a transport pays nothing to initialise them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import report_error

__all__ = ["DEFAULT_HIGH_WATER", "WriteFlowControl", "compute_water_marks", "tell_protocol"]

# asyncio's defaults: pause above 64 KiB buffered, resume at 16 KiB.
DEFAULT_HIGH_WATER = 64 * 1024


def compute_water_marks(high: int | None = None, low: int | None = None) -> tuple[int, int]:
    """The ``(high, low)`` marks that ``set_write_buffer_limits(high, low)`` means.

    Exactly asyncio's rules: with neither given, 64 KiB and a quarter of it;
    with one given, the other is derived (high = 4 × low, low = high // 4); and
    anything but ``high >= low >= 0`` is a :class:`ValueError`.
    """
    if high is None:
        high = DEFAULT_HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


class WriteFlowControl:
    """Mixin: the water marks of a write buffer and the pause/resume calls they trigger."""

    _loop: asyncio.AbstractEventLoop | None
    _protocol: Any

    # Per-instance once changed; the class values are the defaults.
    _high_water: int = DEFAULT_HIGH_WATER
    _low_water: int = DEFAULT_HIGH_WATER // 4
    # Named as in asyncio's own transports, where some libraries look for it.
    _protocol_paused: bool = False

    def get_write_buffer_size(self) -> int:
        """Bytes buffered and not yet handed to the kernel."""
        raise NotImplementedError

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The ``(low, high)`` water marks (note the order: asyncio's)."""
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks; see :func:`compute_water_marks` for the defaults.

        Lowering the high mark below what is buffered pauses the protocol at
        once, as asyncio does.  (Raising it does not resume a paused protocol:
        resuming only ever happens as the buffer drains.)
        """
        self._high_water, self._low_water = compute_water_marks(high, low)
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        """Call ``protocol.pause_writing()`` if the buffer just grew above the high mark."""
        if self._protocol_paused or self.get_write_buffer_size() <= self._high_water:
            return
        self._protocol_paused = True
        tell_protocol(self._loop, self, self._protocol, resume=False)

    def _maybe_resume_protocol(self) -> None:
        """Call ``protocol.resume_writing()`` if paused and drained to the low mark."""
        if not self._protocol_paused or self.get_write_buffer_size() > self._low_water:
            return
        self._protocol_paused = False
        tell_protocol(self._loop, self, self._protocol, resume=True)


def tell_protocol(loop: Any, transport: object, protocol: Any, *, resume: bool) -> None:
    """Call ``protocol.pause_writing()``, or ``resume_writing()``: the flow-control news.

    For any transport that keeps its own marks (the mixin above, the stream
    socket's engine).  The callback has no caller to raise into: the
    transport keeps going and an error goes to the loop's exception handler
    (none once the transport is fully closed and ``loop`` is None).
    """
    name = "resume_writing" if resume else "pause_writing"
    try:
        getattr(protocol, name)()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        if loop is not None:
            report_error(loop, f"protocol.{name}() failed", exc, transport, protocol)
