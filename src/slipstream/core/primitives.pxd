# The compiled definitions of primitives.py (see its docstring): inline C that
# modules cimporting this file use instead of the Python functions.  The
# module itself is never compiled; only its cimporters are.

from cpython.contextvars cimport PyContext_CopyCurrent, PyContext_Enter, PyContext_Exit
from cpython.object cimport Py_SIZE
from cpython.ref cimport PyObject, Py_XDECREF
from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject **ob_item
    void Py_SET_SIZE(object o, Py_ssize_t size)


cdef extern from *:
    """
    /* The caller's reference is the only strong one (a reference count of 1)
       and no weak reference exists: a weakref would otherwise go on seeing
       the object after the caller reuses it, where a freed object would have
       cleared it.  A type that keeps its weak references at a fixed offset
       (tp_weaklistoffset > 0, as a Cython class declaring __weakref__) is
       read there; one without them (0) has none to check; one whose list the
       interpreter manages (< 0) is never called unshared. */
    static inline int slipstream_unshared(PyObject *o) {
        Py_ssize_t offset;
        if (Py_REFCNT(o) != 1)
            return 0;
        offset = Py_TYPE(o)->tp_weaklistoffset;
        if (offset < 0)
            return 0;
        return offset == 0 || *(PyObject **)((char *)o + offset) == NULL;
    }
    """
    bint slipstream_unshared(object obj) noexcept


cdef inline bint compiled() noexcept:
    return True


cdef inline double monotonic() noexcept:
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    # As CPython's time.monotonic(): integer nanoseconds, then seconds as a
    # double, so both builds read exactly the same values.
    cdef int64_t ns = <int64_t>now.tv_sec * 1000000000 + now.tv_nsec
    if ns % 1000000000 == 0:
        return <double>(ns // 1000000000)
    return <double>ns / 1e9


cdef inline object copy_context():
    return PyContext_CopyCurrent()


cdef inline object run_in_context(object context, object callback):
    PyContext_Enter(context)
    try:
        return callback()
    finally:
        PyContext_Exit(context)


cdef inline object run_in_context_with(object context, object callback, object arg):
    PyContext_Enter(context)
    try:
        return callback(arg)
    finally:
        PyContext_Exit(context)


cdef inline Py_ssize_t lag_bucket(double seconds) noexcept:
    # int(seconds * 1e6).bit_length(), without making an int: the bucket i
    # holds [2**(i-1), 2**i) microseconds.  At most 63 doublings.
    cdef double micros = seconds * 1e6
    cdef double bound = 1.0
    cdef Py_ssize_t bucket = 0
    if micros < 0.0:
        micros = -micros
    while micros >= bound and bucket < 63:
        bound *= 2.0
        bucket += 1
    return bucket


cdef inline void empty_list(list items) noexcept:
    # list.clear() frees the list's array, and the next append allocates one
    # again: once per turn of the loop for the ready queue.  Keep the array.
    # The size drops to 0 first, so nothing a release triggers sees old items.
    cdef Py_ssize_t count = Py_SIZE(items)
    cdef PyObject **slots = (<PyListObject *>items).ob_item
    cdef PyObject *item
    cdef Py_ssize_t index
    Py_SET_SIZE(items, 0)
    for index in range(count):
        item = slots[index]
        slots[index] = NULL
        Py_XDECREF(item)


cdef inline bint unshared(object obj) noexcept:
    return slipstream_unshared(obj)
