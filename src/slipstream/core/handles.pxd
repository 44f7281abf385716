# Cython declarations for handles.py (pure-Python mode: this file augments that
# source, which stays the one implementation).  See docs/benchmarks.md,
# "Compiled core", for what is compiled and why.

cimport cython


cdef class HandleOwner:
    # The scheduler's debug flag lives here so handles read it as C; public,
    # as the interpreted layers of the loop read and write it.
    cdef public bint _debug

    cdef _timer_cancelled(self)


# (No @cython.freelist: Cython 3.3 generates none for a class compiled from a
# .py source in pure-Python mode, so the decorator here would only mislead.)
cdef class Handle:
    cdef public object _callback
    cdef public tuple _args
    cdef public object _context
    cdef public object _loop
    cdef public bint _cancelled
    cdef public object _repr
    cdef public object _source_traceback
    cdef object __weakref__

    @cython.locals(owner=HandleOwner)
    cpdef cancel(self)

    cdef _cancel(self, bint debug)


cdef class TimerHandle(Handle):
    cdef public object _when
    cdef public bint _scheduled

    @cython.locals(owner=HandleOwner)
    cpdef cancel(self)
