"""Flow control through the TLS layer, in both directions.

Writes: the layer passes ciphertext to the transport at once, unless the
transport paused it (its own buffer is full); then records wait in the
pump, and once what waits there (plus plaintext not yet encrypted) reaches
the application's high-water mark, the application is paused.  It resumes
when the transport drained and the layer's share fell to the low-water mark.
This is asyncio's accounting: ``get_write_buffer_size()`` counts what the TLS
layer holds, not the transport's own buffer, whose pausing is what makes the
TLS layer hold anything.

Reads: the application's ``pause_reading`` stops decryption; ciphertext then
queues up undecrypted, and the transport's reading is paused when that queue
reaches 256 KiB (resumed at the low-water mark, once the application reads
again).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .pump import TLSState

if TYPE_CHECKING:
    from .pump import TLSPump
    from .transport import SSLTransport

READ_HIGH_WATER = 256 * 1024
WRITE_HIGH_WATER = 512 * 1024


def flow_control_limits(high: int | None, low: int | None, default_high: int) -> tuple[int, int]:
    """Resolve ``set_*_buffer_limits(high, low)`` arguments the way asyncio does."""
    if high is None:
        high = default_high if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


class TLSFlowControl:
    """The flow-control half of :class:`~slipstream.tls.layer.TLSLayer`."""

    # Provided by the layer.
    _loop: asyncio.AbstractEventLoop
    _pump: TLSPump
    _transport: asyncio.Transport | None
    _app_protocol: asyncio.BaseProtocol | None
    _app_transport: SSLTransport | None

    def __init__(self) -> None:
        # Who paused whom.
        self._transport_paused_us = False
        self._we_paused_transport = False
        self._app_reading_paused = False
        self._app_writing_paused = False
        self._read_high, self._read_low = flow_control_limits(None, None, READ_HIGH_WATER)
        self._write_high, self._write_low = flow_control_limits(None, None, WRITE_HIGH_WATER)

    if TYPE_CHECKING:

        def _do_read(self) -> None: ...
        def _do_flush(self) -> None: ...
        def _flush_outgoing(self) -> None: ...

    # -- the transport pausing us -------------------------------------------------------

    def pause_writing(self) -> None:
        """The transport's buffer is full: keep ciphertext here for now."""
        self._transport_paused_us = True

    def resume_writing(self) -> None:
        """The transport's buffer drained: pass on what waited here."""
        self._transport_paused_us = False
        self._flush_outgoing()

    # -- the application's writes -----------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        """Bytes written by the application and not yet handed to the transport."""
        return self._pump.pending_ciphertext + self._pump.pending_plaintext

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the application's write flow-control limits (default 512 KiB)."""
        self._write_high, self._write_low = flow_control_limits(high, low, WRITE_HIGH_WATER)
        self._control_app_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, as asyncio returns them."""
        return self._write_low, self._write_high

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set when the transport is paused for undecrypted input (default 256 KiB)."""
        self._read_high, self._read_low = flow_control_limits(high, low, READ_HIGH_WATER)
        self._control_transport_reading()

    def get_read_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, as asyncio returns them."""
        return self._read_low, self._read_high

    @property
    def app_writing_paused(self) -> bool:
        """Whether the application protocol was told to pause writing."""
        return self._app_writing_paused

    def _control_app_writing(self) -> None:
        size = self.get_write_buffer_size()
        if size >= self._write_high and not self._app_writing_paused:
            self._app_writing_paused = True
            self._call_app_flow("pause_writing")
        elif size <= self._write_low and self._app_writing_paused:
            self._app_writing_paused = False
            self._call_app_flow("resume_writing")

    def _call_app_flow(self, method: str) -> None:
        try:
            getattr(self._app_protocol, method)()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"protocol.{method}() failed",
                "exception": exc,
                "transport": self._app_transport,
                "protocol": self,
            })

    # -- the application's reads ------------------------------------------------------------

    def get_read_buffer_size(self) -> int:
        """Bytes received and not yet decrypted."""
        return self._pump.pending_incoming

    @property
    def app_reading_paused(self) -> bool:
        """Whether the application paused reading."""
        return self._app_reading_paused

    def pause_app_reading(self) -> None:
        """Stop decrypting for the application (input queues up, then the transport pauses)."""
        self._app_reading_paused = True

    def resume_app_reading(self) -> None:
        """Deliver again, starting on the next loop iteration."""
        if self._app_reading_paused:
            self._app_reading_paused = False
            self._loop.call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        state = self._pump.state
        if state is TLSState.WRAPPED:
            self._do_read()
        elif state is TLSState.FLUSHING:
            self._do_flush()

    def _control_transport_reading(self) -> None:
        transport = self._transport
        if transport is None:
            return
        size = self._pump.pending_incoming
        if size >= self._read_high and not self._we_paused_transport:
            self._we_paused_transport = True
            transport.pause_reading()
        elif size <= self._read_low and self._we_paused_transport:
            self._we_paused_transport = False
            transport.resume_reading()
