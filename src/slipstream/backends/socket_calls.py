"""``recv``, ``recv_into``, ``send`` and their kin on a socket, for the interpreted layers above.

Transports and ``sock_*`` are plain Python (they are mostly decisions, which
CPython's specialising interpreter runs well), but the system calls they make
are not: through :class:`socket.socket`'s methods each costs an argument parse
and a GIL release and re-take (see :mod:`.syscalls`).  Compiled, this module's
functions are C functions that make the call themselves; interpreted, they are
the socket methods again, with exactly their results and exceptions either way
(``BlockingIOError`` when the call would block, the ``OSError`` subclass of
the ``errno``, ``EBADF`` for a closed socket).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from . import syscalls

__all__ = [
    "recv",
    "recv_into",
    "recv_or_none",
    "recv_sized",
    "recvfrom",
    "send",
    "send_count",
    "sendmsg_count",
    "sendto",
    "wait_after_short_read",
]


def recv(sock: socket.socket, size: int) -> bytes:
    """``sock.recv(size)``."""
    return syscalls.recv(sock, size)


def recv_or_none(sock: socket.socket, size: int) -> bytes | None:
    """``sock.recv(size)``, or None where it would raise ``BlockingIOError``."""
    return syscalls.recv_or_none(sock, size)


def recv_sized(sock: socket.socket, size: int) -> bytes:
    """``sock.recv(size)``, through the variant that takes a C size (the stream engine's)."""
    return syscalls.recv_sized(sock, size)


def recvfrom(sock: socket.socket, size: int) -> tuple[bytes, Any]:
    """``sock.recvfrom(size)``."""
    return syscalls.recvfrom(sock, size)


def sendto(sock: socket.socket, data: Any, address: Any) -> int:
    """``sock.sendto(data, address)``."""
    return syscalls.sendto(sock, data, address)


def recv_into(sock: socket.socket, buffer: Any) -> int:
    """``sock.recv_into(buffer)``."""
    return syscalls.recv_into(sock, buffer)


def send(sock: socket.socket, data: Any) -> int:
    """``sock.send(data)``."""
    return syscalls.send(sock, data)


def send_count(sock: socket.socket, data: Any) -> int:
    """``sock.send(data)``, through the variant that gives a C count (the stream engine's)."""
    return syscalls.send_count(sock, data)


def sendmsg_count(sock: socket.socket, buffers: Sequence[Any], count: int) -> int:
    """``sock.sendmsg()`` of the first ``count`` buffers (the stream engine's burst send)."""
    return syscalls.sendmsg_count(sock, buffers, count)



def wait_after_short_read(sock: socket.socket) -> bool:
    """Whether the next receive may wait at once after a short read (see :mod:`.syscalls`)."""
    return syscalls.wait_after_short_read(sock)
