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
    #ifdef Py_GIL_DISABLED
        /* Without the GIL another thread may take a reference at any time
           (and the scheduler's free list is not guarded): never. */
        (void)o;
        return 0;
    #else
        Py_ssize_t offset;
        if (Py_REFCNT(o) != 1)
            return 0;
        offset = Py_TYPE(o)->tp_weaklistoffset;
        if (offset < 0)
            return 0;
        return offset == 0 || *(PyObject **)((char *)o + offset) == NULL;
    #endif
    }
    """
    bint slipstream_unshared(object obj) noexcept


cdef extern from *:
    """
    /* An allocator for a Python class over a compiled base (the event loop)
       that gives its instances the inline attribute values an instance made
       by object.__new__ has.  CPython 3.11 and 3.12 set those up in
       object.__new__ (object_new) after the allocation, not in the
       allocation itself; a compiled base allocates through tp_alloc and
       never calls object_new, so the first attribute stored on the instance
       made it a real __dict__.  On such an instance the interpreter cannot
       specialise an attribute or method lookup (loop.create_future() from
       asyncio's streams, loop.call_soon() from a protocol): each one goes
       the generic way, a type lookup and a dict lookup, ~250 instructions
       instead of ~15.

       So tp_alloc becomes object_new itself, which allocates by calling
       tp_alloc again: that nested call (flagged, as the interpreter holds
       the GIL throughout) is the plain allocation, and object_new then adds
       the inline values.  Only public slots are used.  Not on 3.13: there
       the allocation itself sets inline values up, but only for classes
       whose bases add no C fields (Py_TPFLAGS_INLINE_VALUES), so a loop
       keeps its real __dict__ whatever allocates it; nor before 3.11, which
       had no inline values. */
    static int slipstream_allocating = 0;
    static PyObject *slipstream_alloc_with_inline_values(PyTypeObject *type, Py_ssize_t nitems) {
        PyObject *empty, *obj;
        if (slipstream_allocating || nitems != 0)
            return PyType_GenericAlloc(type, nitems);
        empty = PyTuple_New(0);
        if (empty == NULL)
            return NULL;
        slipstream_allocating = 1;
        obj = PyBaseObject_Type.tp_new(type, empty, NULL);
        slipstream_allocating = 0;
        Py_DECREF(empty);
        return obj;
    }
    /* Install it on cls if cls is a Python class with a managed __dict__
       that allocates the plain way; 1 if installed. */
    static int slipstream_inline_instance_values(PyObject *cls) {
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
        PyTypeObject *type;
        if (!PyType_Check(cls))
            return 0;
        type = (PyTypeObject *)cls;
        if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || !(type->tp_flags & Py_TPFLAGS_MANAGED_DICT))
            return 0;
        if (type->tp_alloc != PyType_GenericAlloc)
            return type->tp_alloc == slipstream_alloc_with_inline_values;
        type->tp_alloc = slipstream_alloc_with_inline_values;
        return 1;
    #else
        return 0;
    #endif
    }
    """
    bint slipstream_inline_instance_values(object cls) noexcept


cdef extern from *:
    """
    /* Give cls its own copy of each method descriptor it inherits from a
       compiled base, for the names given: the copy calls the same C function
       but belongs to cls.  A method descriptor checks that self is an
       instance of the class it belongs to: for the base's own descriptor
       and a loop (an EventLoop), that is a walk of EventLoop's MRO to the
       14th of its 17 classes, and the interpreter's specialised calls of a
       method descriptor (loop.create_future() from Python code) give up at
       once unless self's type is exactly that class.  Owned by cls, the
       check is one comparison and the call stays specialised.  A name that
       cls overrides (a Python function) or does not inherit as a method
       descriptor is left alone.  The number of copies made, or -1 with an
       exception set. */
    static int slipstream_own_methods(PyObject *cls, PyObject *names) {
        Py_ssize_t i;
        int made = 0;
        PyTypeObject *type;
        if (!PyType_Check(cls) || !PyTuple_Check(names)) {
            PyErr_SetString(PyExc_TypeError, "own_methods(cls, names): a class and a tuple of names");
            return -1;
        }
        type = (PyTypeObject *)cls;
        for (i = 0; i < PyTuple_GET_SIZE(names); i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            PyObject *found, *copy;
            PyMethodDescrObject *descriptor;
            if (!PyUnicode_Check(name)) {
                PyErr_SetString(PyExc_TypeError, "own_methods(cls, names): names must be strings");
                return -1;
            }
            found = _PyType_Lookup(type, name);  /* borrowed */
            if (found == NULL || !Py_IS_TYPE(found, &PyMethodDescr_Type))
                continue;
            descriptor = (PyMethodDescrObject *)found;
            if (descriptor->d_common.d_type == type || !PyType_IsSubtype(type, descriptor->d_common.d_type))
                continue;
            copy = PyDescr_NewMethod(type, descriptor->d_method);
            if (copy == NULL)
                return -1;
            if (PyObject_SetAttr(cls, name, copy) < 0) {
                Py_DECREF(copy);
                return -1;
            }
            Py_DECREF(copy);
            made++;
        }
        return made;
    }
    /* Whether a and b are the same method: the same object, or two method
       descriptors of one C function (a copy made above and its original). */
    static int slipstream_same_method(PyObject *a, PyObject *b) {
        if (a == b)
            return 1;
        return Py_IS_TYPE(a, &PyMethodDescr_Type) && Py_IS_TYPE(b, &PyMethodDescr_Type)
            && ((PyMethodDescrObject *)a)->d_method == ((PyMethodDescrObject *)b)->d_method;
    }
    """
    int slipstream_own_methods(object cls, object names) except -1
    bint slipstream_same_method(object a, object b) noexcept


cdef inline bint inline_instance_values(object cls) noexcept:
    return slipstream_inline_instance_values(cls)


cdef inline int own_methods(object cls, tuple names) except -1:
    return slipstream_own_methods(cls, names)


cdef inline bint same_method(object a, object b) noexcept:
    return slipstream_same_method(a, b)


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
