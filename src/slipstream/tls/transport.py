"""The transport a TLS application protocol sees (asyncio's ``_SSLProtocolTransport``)."""

from __future__ import annotations

import asyncio
import warnings
from asyncio import constants as _asyncio_constants
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layer import TLSLayer

__all__ = ["SSLTransport"]

_BytesLike = bytes | bytearray | memoryview


class SSLTransport(asyncio.Transport):
    """An :class:`asyncio.Transport` whose bytes are carried by a :class:`TLSLayer`.

    Named ``SSL...`` because code in the wild (and CPython's tests) looks for
    "SSL" in a TLS transport's class name.  ``write_eof`` is not supported,
    as in asyncio: TLS has no half-close that every peer understands.
    """

    # Markers read by asyncio-compatible helpers: start_tls may wrap this
    # transport again (TLS in TLS), and sendfile must fall back to copying
    # through write(), since the kernel cannot encrypt.
    _start_tls_compatible = True
    _sendfile_compatible = _asyncio_constants._SendfileMode.FALLBACK

    def __init__(self, layer: TLSLayer) -> None:
        super().__init__()
        self._layer: TLSLayer | None = layer
        self._closed = False

    def __repr__(self) -> str:
        layer = self._layer
        state = "closed" if self._closed or layer is None else layer.state.value
        return f"<SSLTransport {state}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not self._closed:
            self._closed = True
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    # -- state and information --------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``ssl_object``, ``peercert``, ``cipher``, ``compression``, ``sslcontext``,
        then whatever the underlying transport knows (``socket``, ``peername``, ...)."""
        layer = self._layer
        return default if layer is None else layer.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if self._layer is not None:
            self._layer.set_app_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        layer = self._layer
        return None if layer is None else layer.get_app_protocol()  # type: ignore[return-value]

    def is_closing(self) -> bool:
        return self._closed

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Send what is buffered, then close_notify, then close the connection.

        No more data is delivered; ``connection_lost(None)`` follows.
        """
        layer = self._layer
        if not self._closed:
            self._closed = True
            if layer is not None:
                layer.start_shutdown()
        else:
            # Closing twice lets go of the TLS layer, as asyncio's transport
            # does.  A protocol that keeps its transport, with a callback to
            # it still queued when the loop stops, then no longer keeps the
            # whole connection (and its SSLContext) alive; CPython's tests
            # count on this.
            self._layer = None

    def abort(self) -> None:
        """Close at once: buffered data is lost, no close_notify is sent."""
        self._closed = True
        if self._layer is not None:
            self._layer.abort(None)

    # -- reading ----------------------------------------------------------------------

    def is_reading(self) -> bool:
        layer = self._layer
        return layer is not None and not layer.app_reading_paused

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until :meth:`resume_reading`."""
        if self._layer is not None:
            self._layer.pause_app_reading()

    def resume_reading(self) -> None:
        """Deliver received data again."""
        if self._layer is not None:
            self._layer.resume_app_reading()

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """When undecrypted input passes ``high``, the underlying transport pauses."""
        self._live().set_read_buffer_limits(high, low)

    def get_read_buffer_limits(self) -> tuple[int, int]:
        return self._live().get_read_buffer_limits()

    def get_read_buffer_size(self) -> int:
        layer = self._layer
        return 0 if layer is None else layer.get_read_buffer_size()

    # -- writing ----------------------------------------------------------------------

    def write(self, data: _BytesLike) -> None:
        """Encrypt ``data`` and send it (buffering what the transport cannot take)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data: expecting a bytes-like instance, got {type(data).__name__}"
            )
        if data and self._layer is not None:
            self._layer.write_app_data((data,))

    def writelines(self, list_of_data: Iterable[_BytesLike]) -> None:
        """Write each bytes-like of ``list_of_data``, in order."""
        if self._layer is not None:
            self._layer.write_app_data(list_of_data)

    def write_eof(self) -> None:
        """Not supported over TLS (as in asyncio)."""
        raise NotImplementedError

    def can_write_eof(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Pause the protocol when more than ``high`` bytes wait here (default 512 KiB)."""
        self._live().set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._live().get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        layer = self._layer
        return 0 if layer is None else layer.get_write_buffer_size()

    @property
    def _protocol_paused(self) -> bool:
        # Read by asyncio's sendfile fallback.
        layer = self._layer
        return layer is not None and layer.app_writing_paused

    def _live(self) -> TLSLayer:
        layer = self._layer
        if layer is None:
            raise RuntimeError("the transport is closed")
        return layer
