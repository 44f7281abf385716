"""TLS: a sans-I/O record pump and the transport layered on it.

* :mod:`.pump` — :class:`TLSPump`, TLS over memory buffers: no socket, no loop.
* :mod:`.layer` — :class:`TLSLayer`, the protocol that runs a pump over any
  byte transport and gives the application an :class:`SSLTransport`.
* :mod:`.endpoints` — ``loop.start_tls``.
"""

from .layer import TLSLayer
from .pump import HandshakeInfo, TLSPump, TLSState, TLSStateError
from .transport import SSLTransport

__all__ = [
    "HandshakeInfo",
    "SSLTransport",
    "TLSLayer",
    "TLSPump",
    "TLSState",
    "TLSStateError",
]
