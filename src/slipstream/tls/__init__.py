"""TLS: a sans-I/O record pump and the transport layered on it.

* :mod:`.pump` — :class:`TLSPump`, TLS over memory buffers: no socket, no loop.
* :mod:`.layer` — :func:`wrap_protocol`, the protocol that runs a pump over any
  byte transport and gives the application an :class:`SSLTransport`.
* :mod:`.endpoints` — ``loop.start_tls``.
"""

from .layer import TLSLayer, wrap_protocol
from .pump import HandshakeInfo, TLSPump, TLSState, TLSStateError
from .transport import SSLTransport

__all__ = [
    "HandshakeInfo",
    "SSLTransport",
    "TLSLayer",
    "TLSPump",
    "TLSState",
    "TLSStateError",
    "wrap_protocol",
]
