# Cython declarations for ready.py (pure-Python mode: this file augments that
# source).  The loop core holds its backend as this C type and calls
# poll_ready through the type's C function table (ready.py says why).

cdef class ReadyBackend:
    cpdef set_interest(self, object fd, int events)
    cpdef watch_edges(self, object fd, int events, object owner)
    cpdef int poll_ready(self, object timeout, dict readers, dict writers, list ready) except -1
