# Cython declarations for stream_engine.py (pure-Python mode: that file stays
# the one implementation; this one gives it C fields and C calls).  The socket
# calls resolve to syscalls.pxd's inline C, straight to the kernel.

cimport cython

from slipstream.backends cimport syscalls

cdef Py_ssize_t _LOG_THRESHOLD_FOR_CONNLOST_WRITES
cdef Py_ssize_t _COALESCE_PATIENCE
cdef Py_ssize_t _IOV_MAX
cdef object _NO_BUFFER
cdef object _deque
cdef object _WRITELINES


@cython.final
cdef class StreamEngine:
    cdef public object loop
    cdef public object sock
    cdef public int fd
    cdef public object transport
    cdef public object on_closed
    cdef public Py_ssize_t min_read_size
    cdef public Py_ssize_t max_read_size
    cdef public Py_ssize_t read_size
    cdef public object protocol
    cdef public object read_ready
    cdef public object empty_waiter
    cdef public bint wrote_since_read
    cdef public Py_ssize_t coalesce
    cdef public bint corked
    cdef public object buffer
    cdef public Py_ssize_t buffer_size
    cdef public Py_ssize_t high_water
    cdef public Py_ssize_t low_water
    cdef public bint protocol_paused
    cdef public bint closing
    cdef public Py_ssize_t conn_lost
    cdef public bint paused
    cdef public bint reading
    cdef public bint eof_received
    cdef public bint eof
    cdef public bint sock_closed

    cpdef stop_reading(self)

    @cython.locals(size=Py_ssize_t, length=Py_ssize_t, data=bytes)
    cpdef read_data(self)

    cpdef read_eof(self)

    @cython.locals(sent=Py_ssize_t)
    cpdef write(self, data)

    cpdef flush_corked(self)

    @cython.locals(sent=Py_ssize_t, size=Py_ssize_t)
    cpdef send_buffered(self, bint watched)

    cpdef maybe_pause_protocol(self)
    cpdef maybe_resume_protocol(self)
    cpdef wake_empty_waiter(self, exc)
    cpdef close(self)
    cpdef fatal_error(self, exc, message)
    cpdef force_close(self, exc)
    cpdef call_connection_lost(self, exc)
