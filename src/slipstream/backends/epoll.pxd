# Cython declarations for epoll.py (pure-Python mode: this file augments that
# source, which stays the one implementation).  The backend becomes a C type
# and its poll() makes the system call itself (syscalls.pxd).

cimport cython

from . cimport syscalls
from .ready cimport ReadyBackend

cdef object _ONESHOT
cdef unsigned int _EDGE
cdef int _ADD
cdef int _MOD
cdef int _DEL
cdef unsigned long long _LAST_TAG
cdef unsigned int _READ_EVENTS
cdef unsigned int _WRITE_EVENTS
cdef double _MAX_TIMEOUT
cdef Py_ssize_t _TRANSIENT_POLLS


cdef class EpollBackend(ReadyBackend):
    cdef object _epoll
    cdef int _epfd
    cdef int _maxevents
    cdef object _buffer
    cdef dict _interest
    cdef set _armed
    cdef set _fired
    cdef set _parked
    cdef dict _transient
    cdef Py_ssize_t _polls
    cdef dict _edge_tags
    cdef dict _edge_owners
    cdef set _missed
    cdef unsigned long long _last_tag

    @cython.locals(old=int, removed=object)
    cpdef set_interest(self, object fd, int events)

    @cython.locals(owned=tuple, registered=int, tag=cython.ulonglong)
    cpdef watch_edges(self, object fd, int events, object owner)

    cdef _register(self, object fd, unsigned int mask, unsigned long long tag=*)
    cdef _rearm(self, object fd, unsigned int mask, unsigned long long tag=*)
    cdef _forget_edges(self, object fd)
    cdef _ctl(self, int op, object fd, unsigned int mask, unsigned long long tag)

    @cython.locals(events=list, armed=set, fired=set, wanted=list)
    cpdef list poll(self, object timeout)

    @cython.locals(count=int, seconds=double)
    cpdef int poll_ready(self, object timeout, dict readers, dict writers, list ready) except -1

    cdef _grow(self)
