"""``slipstream.EventLoop``: the loop core plus the layers built on it."""

from __future__ import annotations

from .core import CoreLoop
from .net.datagram import DatagramEndpoints
from .net.dns import NameResolution
from .net.sendfile import SendfileSupport
from .net.sockets import SocketOperations
from .net.streams import StreamEndpoints
from .observe.metrics import MetricsSupport
from .tls.endpoints import TLSSupport
from .unix.pipes import PipeEndpoints
from .unix.signals import SignalHandling
from .unix.subprocesses import SubprocessSupport


# (MetricsSupport wraps create_server and create_unix_server with *args,
# **kwargs to count the servers they make; mypy cannot see that as the same
# signature.)
class EventLoop(  # type: ignore[misc]
    MetricsSupport,
    StreamEndpoints,
    SendfileSupport,
    TLSSupport,
    DatagramEndpoints,
    SocketOperations,
    NameResolution,
    PipeEndpoints,
    SubprocessSupport,
    SignalHandling,
    CoreLoop,
):
    """A complete :class:`asyncio.AbstractEventLoop`, written in Python.

    The scheduling core lives in :mod:`slipstream.core`.  Each layer above it
    is a class in its own package (networking in :mod:`slipstream.net`, TLS in
    :mod:`slipstream.tls`, pipes, subprocesses and signals in
    :mod:`slipstream.unix`, ``metrics()`` in :mod:`slipstream.observe`), built
    only on the core's public methods; this class just puts them together.
    """
