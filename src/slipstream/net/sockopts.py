"""Socket set-up shared by stream servers and datagram endpoints."""

from __future__ import annotations

import os
import socket
import stat

from ..core.errors import logger


def set_reuse_port(sock: socket.socket) -> None:
    """SO_REUSEPORT, or asyncio's ValueError where it is unavailable."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        ) from None


def remove_stale_unix_socket(path: str | bytes) -> None:
    """Remove a socket file left at ``path`` by a process that died, as asyncio does.

    Only a socket is removed, never a regular file someone pointed us at by
    mistake; abstract addresses (a leading NUL) have no file.  Without this,
    bind() fails with EADDRINUSE after a crash.
    """
    if not path or path[0] in (0, "\x00"):
        return
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        # E.g. a directory where we may create the socket but not stat it.
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)
