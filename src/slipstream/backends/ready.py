"""The base class of the backends the loop runs on: the calls of the hot path, as C.

Every turn the loop core calls its backend's ``poll_ready`` (``base.py`` says
what it does), and ``set_interest`` whenever a watch starts or stops (twice a
message for a ``sock_recv`` that waits).  Made as ordinary method calls from
the compiled core, each cost ~300 instructions before the backend did
anything: the method looked up by name on the backend's type, its arguments
parsed by the wrapper, its count boxed as an ``int`` and unboxed again.  A
lockstep round trip (one request, one answer, the loop asleep in between)
polls twice, so that was ~600 of the ~30,000 instructions of a streams echo
round trip, and ~1,200 of a sock_* one.

Compiled (``ready.pxd`` beside this file), :class:`ReadyBackend` is a C type
and both are ``cpdef`` methods, so the core, which holds its backend as a
``ReadyBackend``, calls them through the type's table of C functions: a
compiled backend (epoll) answers the call directly.  A backend written in
Python derives from this class and overrides them as usual; Cython sees the
override and makes the ordinary method call.  A backend that does not derive
from it (any object with the :class:`~.base.IOBackend` or
:class:`~.base.PollingBackend` methods) is wrapped by
:func:`~.base.complete_backend` in one that does.

Interpreted, this is a plain base class and nothing changes.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

__all__ = ["ReadyBackend"]


class ReadyBackend:
    """Base class of the backends the core calls directly; subclasses override ``poll_ready``.

    ``set_interest`` is the other call of the hot path (a ``sock_recv``
    that waits watches its socket, then stops: two calls a message), so it
    is a C call too.  The other methods of :class:`~.base.IOBackend`
    (``poll``, ``fileno``, ``close``, ``name``) are looked up as usual.
    """

    __slots__ = ()

    def set_interest(self, fd: int, events: int) -> None:
        """Make ``events`` the interest for ``fd`` (:meth:`~.base.PollingBackend.set_interest`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement set_interest()")

    def watch_edges(self, fd: int, events: int, owner: object) -> None:
        """:meth:`set_interest`, for watchers that need only readiness the kernel reports anew.

        The loop calls this for the watches of
        :meth:`~slipstream.core.scheduler.Scheduler.watch_readable_edge`: their
        callbacks retry until the kernel says EAGAIN, so readiness reported once
        per change is enough, and the backend may keep the registration between
        watches of the same ``owner`` (the socket ``fd`` belongs to).  A
        backend without such registrations treats it as :meth:`set_interest`,
        which this default does.
        """
        self.set_interest(fd, events)

    def poll_ready(
        self,
        timeout: float | None,
        readers: dict[int, T],
        writers: dict[int, T],
        ready: list[T],
    ) -> int:
        """Wait up to ``timeout`` seconds and append the handles of the ready descriptors.

        See :meth:`~.base.IOBackend.poll_ready`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement poll_ready()")
