"""How a transport tells of an error: the one shape every transport here shares.

asyncio's transports sort the errors that end a connection in two.  One the
network or the peer caused -- an ``OSError`` such as a reset or a broken pipe
-- is *expected*: the protocol learns of it from ``connection_lost(exc)``, and
the log hears of it only in debug mode.  Anything else means a bug somewhere
(a protocol callback raised, a library misused the transport) and goes to the
loop's exception handler, with the transport and the protocol named, so that
an application's handler can tell which connection it was.  Code in the wild
matches on those context keys, so every transport builds them here.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import logger

__all__ = ["report_error", "report_fatal_error"]


def report_error(
    loop: Any, message: str, exc: BaseException, transport: object, protocol: object
) -> None:
    """Hand ``exc`` to the loop's exception handler, naming the transport and protocol."""
    loop.call_exception_handler({
        "message": message,
        "exception": exc,
        "transport": transport,
        "protocol": protocol,
    })


def report_fatal_error(
    loop: Any,
    message: str,
    exc: BaseException,
    transport: object,
    protocol: object,
    expected: bool,
) -> None:
    """Tell of the error that ends a connection: debug-logged if ``expected``, else reported.

    Called from the ``except`` block that caught ``exc``, so that the debug log
    line carries its traceback.
    """
    if expected:
        if loop.get_debug():
            logger.debug("%r: %s", transport, message, exc_info=True)
    else:
        report_error(loop, message, exc, transport, protocol)
