# Cython declarations for handles.py (pure-Python mode: this file augments that
# source, which stays the one implementation).  See docs/benchmarks.md,
# "Compiled core", for what is compiled and why.

cimport cython


@cython.freelist(256)
cdef class Handle:
    cdef public object _callback
    cdef public tuple _args
    cdef public object _context
    cdef public object _loop
    cdef public bint _cancelled
    cdef public object _repr
    cdef public object _source_traceback
    cdef object __weakref__


cdef class TimerHandle(Handle):
    cdef public object _when
    cdef public bint _scheduled
