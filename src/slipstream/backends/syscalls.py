"""The system calls of the I/O path, which the compiled build makes directly.

Interpreted, each name here is a thin function over the standard library's
own method (``sock.recv(size)``, ``epoll.poll(timeout, maxevents)``...), with
exactly its results and exceptions.  A module compiled with Cython that
cimports this one gets ``syscalls.pxd`` instead, where each is an inline C
function that calls the kernel itself.  What that saves, per call, is what
CPython's socket and epoll methods do around the system call (callgrind,
CPython 3.12, one 1 KiB echo round trip of ~10,000 user-space instructions):

* parsing the arguments with ``PyArg_ParseTuple`` (~350 instructions per
  call; ``do_mkvalue`` builds each epoll event tuple the same slow way);
* releasing and re-taking the GIL around a call that cannot block, because
  the socket is non-blocking or the poll's timeout is zero (~400 per call:
  ``take_gil``, ``drop_gil``, two mutexes, a condition signal, thread-state
  swaps through ``__tls_get_addr``).  A poll that has to *wait* still
  releases the GIL, but only after a first zero-timeout ``epoll_wait`` found
  nothing, which on a busy server is rare;
* the method lookup and the bound method.

The compiled versions keep the contract of the methods they replace: the same
return values, the same ``OSError`` subclasses from the same ``errno`` values
(``BlockingIOError`` included), ``EINTR`` retried after running the signal
handlers (PEP 475), a closed socket failing with ``EBADF``.  They take the
direct path only where that is provably the same call -- an object whose
type is exactly :class:`socket.socket` and which is non-blocking -- and call
the Python method otherwise (a subclass may override ``recv``; a blocking
socket must release the GIL while it waits).  The socket's descriptor and
timeout are read from the C struct of CPython's socket object, whose layout
(descriptor, family, type, protocol, error handler, timeout) has been the
same since Python 3.5; the compiled module checks it at import against a
real socket and uses the methods if it ever differs.
"""

from __future__ import annotations

import itertools
import select
import socket
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "DIRECT",
    "EDGE_TAGS",
    "EPOLL_CTL_ADD",
    "EPOLL_CTL_DEL",
    "EPOLL_CTL_MOD",
    "RECYCLES",
    "epoll_buffer",
    "epoll_ctl",
    "epoll_wait",
    "epoll_wait_ready",
    "recv",
    "recv_into",
    "recv_or_none",
    "recv_sized",
    "recvfrom",
    "recycle",
    "send",
    "send_count",
    "sendmsg_count",
    "sendto",
    "socket_fileno",
    "wait_after_short_read",
]


def recv(sock: socket.socket, size: int) -> bytes:
    """``sock.recv(size)``."""
    return sock.recv(size)


def recv_or_none(sock: socket.socket, size: int) -> bytes | None:
    """``sock.recv(size)``, or None where it would raise ``BlockingIOError``.

    For a caller that tries before it waits (``sock_recv``): compiled, a call
    that would block then builds no exception, which cost ~3,500 instructions
    (the message decoded from the locale, the exception, a traceback entry).
    """
    try:
        return sock.recv(size)
    except BlockingIOError:
        return None


def recv_sized(sock: socket.socket, size: int) -> bytes:
    """``sock.recv(size)``, for a caller that holds ``size`` as a C integer when compiled."""
    return sock.recv(size)


RECYCLES = False
"""Whether :func:`recycle` does anything: interpreted it does not, so callers skip the call."""

DIRECT = False
"""Whether these functions make the system calls themselves (compiled) or call the methods.

Interpreted, :func:`recv_sized` is ``sock.recv(size)`` and :func:`send_count` is
``sock.send(data)``, one Python frame more (~700 instructions): the hottest
callers (a stream transport's read and write) call the method themselves then.
"""


def recycle(data: bytes) -> None:
    """Give back what :func:`recv_sized` returned, once its reader is done with it.

    Interpreted, nothing.  Compiled, a short read's bytes object that nobody
    else holds any more becomes the one the next short read is copied into,
    which saves its allocation (see ``slipstream_recv_recycle`` in the ``.pxd``).
    """


def socket_fileno(sock: Any) -> int:
    """``sock.fileno()``, or -1 if that fails (compiled: read from the socket, for a plain one)."""
    try:
        return int(sock.fileno())
    except Exception:
        return -1


def wait_after_short_read(sock: socket.socket) -> bool:
    """Whether, after a read of ``sock`` shorter than asked, the next receive may wait at once.

    Such a wait relies on being woken by what arrives after the read.
    Interpreted, yes, always: every wait re-arms its registration, and the
    kernel then reports what is already queued.  Compiled, the ``sock_*``
    waits keep edge-triggered registrations (:data:`EDGE_TAGS`), woken only by
    news, so only where a short read means nothing more was queued: an open,
    non-blocking ``socket.socket`` on TCP, whose receive copies until the
    queue is empty or the size is reached.  Not datagram sockets (one datagram
    a call, however many are queued), not Unix stream sockets (a read stops
    at a message from another sender when credentials are passed).
    """
    return True


def recvfrom(sock: socket.socket, size: int) -> tuple[bytes, Any]:
    """``sock.recvfrom(size)`` (compiled: direct for an AF_INET socket)."""
    return sock.recvfrom(size)


def sendto(sock: socket.socket, data: Any, address: Any) -> int:
    """``sock.sendto(data, address)`` (compiled: direct to a numeric IPv4 address)."""
    return sock.sendto(data, address)


def recv_into(sock: socket.socket, buffer: Any) -> int:
    """``sock.recv_into(buffer)``."""
    return sock.recv_into(buffer)


def send(sock: socket.socket, data: Any) -> int:
    """``sock.send(data)``."""
    return sock.send(data)


def send_count(sock: socket.socket, data: Any) -> int:
    """``sock.send(data)``, for a caller that keeps the count as a C integer when compiled."""
    return sock.send(data)


def sendmsg_count(sock: socket.socket, buffers: Sequence[Any], count: int) -> int:
    """``sock.sendmsg()`` of the first ``count`` of ``buffers`` (``count`` at most IOV_MAX).

    For a caller that keeps the count as a C integer when compiled; compiled,
    the system call itself for a socket :func:`send` would call directly.
    """
    return sock.sendmsg(buffers if count == len(buffers) else itertools.islice(buffers, count))


def epoll_buffer(maxevents: int) -> Any:
    """Room for ``maxevents`` kernel events, for :func:`epoll_wait` (None: not needed here)."""
    return None


_ENDED = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR

EPOLL_CTL_ADD = 1
EPOLL_CTL_DEL = 2
EPOLL_CTL_MOD = 3

EDGE_TAGS = False
"""Whether epoll registrations carry a tag that the dispatch checks.

Compiled, :func:`epoll_ctl` gives the kernel ``data`` whole (the event's 64
bits: the descriptor below, a tag above), and :func:`epoll_wait` and
:func:`epoll_wait_ready` drop an event whose tag is not ``edge_tags[fd]``.
Interpreted, ``select.epoll`` keeps only the descriptor, so there are no tags,
and the epoll backend makes none of the edge-triggered registrations that
need them (see ``backends/epoll.py``).
"""


def epoll_ctl(epoll: select.epoll, epfd: int, op: int, fd: int, events: int, data: int) -> None:
    """``epoll.register``, ``modify`` or ``unregister`` (``op``): the same errors.

    Compiled, the system call, with ``data`` as the event's data; interpreted,
    ``data`` is ignored (the descriptor is the data).
    """
    if op == EPOLL_CTL_ADD:
        epoll.register(fd, events)
    elif op == EPOLL_CTL_MOD:
        epoll.modify(fd, events)
    else:
        epoll.unregister(fd)


def epoll_wait(
    epoll: select.epoll,
    epfd: int,
    buffer: Any,
    timeout: float,
    maxevents: int,
    edge_tags: dict[int, int],
) -> list[tuple[int, int]]:
    """``epoll.poll(timeout, maxevents)``: ``timeout`` in seconds, negative to wait forever.

    ``epfd`` is ``epoll.fileno()`` while it is open, -1 once closed; ``buffer`` is
    what :func:`epoll_buffer` returned for at least ``maxevents``.  Compiled,
    an event whose tag is not its descriptor's in ``edge_tags`` is left out
    (see :data:`EDGE_TAGS`).
    """
    return epoll.poll(timeout, maxevents)


def epoll_wait_ready(
    epoll: select.epoll,
    epfd: int,
    buffer: Any,
    timeout: float,
    maxevents: int,
    read_events: int,
    write_events: int,
    readers: dict[int, T],
    writers: dict[int, T],
    ready: list[T],
    armed: set[int],
    fired: set[int],
    edge_tags: dict[int, int],
    missed: set[int],
) -> int:
    """:func:`epoll_wait`, its events dispatched at once; the number of events.

    For each event, in the kernel's order: a descriptor in ``armed`` moves to
    ``fired``; if the mask has a bit of ``read_events``, ``readers[fd]`` (if
    there is one) is appended to ``ready``, then likewise ``writers[fd]`` for
    ``write_events``.  Compiled, no (fd, events) pair is ever built.

    A descriptor in ``edge_tags`` (an edge-triggered registration) that is
    reported readable with no reader, or reported with the end of the stream
    or an error (``EPOLLRDHUP``, ``EPOLLHUP``, ``EPOLLERR``), goes into
    ``missed``: the kernel will not report that readiness again.  Compiled,
    an event whose tag is not the descriptor's current one in ``edge_tags``
    (a registration of a file closed since) is dropped first.
    """
    events = epoll.poll(timeout, maxevents)
    for fd, mask in events:
        if edge_tags and mask & _ENDED and fd in edge_tags:
            missed.add(fd)
        if armed and fd in armed:
            armed.discard(fd)
            fired.add(fd)
        if mask & read_events:
            handle = readers.get(fd)
            if handle is not None:
                ready.append(handle)
            elif edge_tags and fd in edge_tags:
                missed.add(fd)
        if mask & write_events:
            handle = writers.get(fd)
            if handle is not None:
                ready.append(handle)
    return len(events)
