# The compiled definitions of syscalls.py (see its docstring): inline code that
# the modules cimporting this file use instead of the Python functions.  The
# module itself is never compiled; only its cimporters are.  Each cimporter is
# its own C file and gets its own copy of the static state below (the checked
# socket layout), so nothing here is shared between modules.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.object cimport Py_TYPE
from cpython.ref cimport PyObject, Py_INCREF


cdef extern from *:
    """
    #include <errno.h>
    #include <math.h>
    #include <sys/epoll.h>
    #include <sys/socket.h>
    #include <sys/uio.h>
    #include <arpa/inet.h>
    #include <netinet/in.h>
    #include <string.h>

    /* The head of CPython's socket object (Modules/socketmodule.h), unchanged
       since Python 3.5: descriptor, family, type, protocol, error handler,
       then the timeout in nanoseconds (-1 blocking, 0 non-blocking).  Only
       trusted once slipstream_check_socket_layout() agreed with a real socket. */
    typedef struct {
        PyObject_HEAD
        int sock_fd;
        int sock_family;
        int sock_type;
        int sock_proto;
        PyObject *(*errorhandler)(void);
        int64_t sock_timeout;
    } slipstream_socket_object;

    /* 1: the layout matches, 0: it does not (use the methods), -1: unchecked. */
    static int slipstream_socket_layout = -1;
    static PyObject *slipstream_socket_class = NULL;

    static int slipstream_socket_fd(PyObject *sock) {
        return ((slipstream_socket_object *)sock)->sock_fd;
    }

    static int slipstream_socket_family(PyObject *sock) {
        return ((slipstream_socket_object *)sock)->sock_family;
    }
    static int slipstream_socket_type(PyObject *sock) {
        return ((slipstream_socket_object *)sock)->sock_type;
    }
    static int64_t slipstream_socket_timeout(PyObject *sock) {
        return ((slipstream_socket_object *)sock)->sock_timeout;
    }

    /* Set the exception for errno (an OSError subclass, as socket methods
       raise), with errno saved across whatever ran since the call failed. */
    static PyObject *slipstream_errno_error(int error) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }

    /* recv() into a new bytes object of at most size bytes.

       socket.recv(size) allocates size bytes, receives, then shrinks the
       object to what came: a malloc() of the whole size and a realloc() per
       read (~600 instructions for 256 KiB), which a 1 KiB message pays in
       full.  Here reads of up to SLIPSTREAM_RECV_CACHE_MAX bytes land in one
       cached bytes object that nobody else holds.  A short read (at most
       SLIPSTREAM_RECV_COPY bytes) is copied out into a bytes object of its
       size and the cache is kept, as uvloop copies out of its read buffer;
       a long one is handed over without a copy (shrunk to size, as recv()
       does) and the next read makes a new cache (or, reading a stream for
       the stream engine, receives into the last long read's object:
       slipstream_recv_stream).  Copying costs per byte and
       the allocation does not, so the two meet at a few KiB.  The cache can
       be static because the GIL is held from the system call to the
       hand-over; a free-threaded build allocates per read instead.

       The cache is as large as the largest read asked of it, and at least
       64 KiB, so its size is whatever the caller chose, and the caller is
       the one who knows what the allocator serves cheaply: the transports
       ask for 256 KiB only once glibc has been taught to keep such blocks
       on its heap (transports/allocator.py), 64 KiB (up to 127 KiB in a
       bulk transfer) before.  A fixed 256 KiB cache was wrong both ways.
       In a process that never made a transport, so never taught glibc, each
       long read handed over an mmap()ed block: an mmap(), a page fault per
       4 KiB received and an munmap() (measured: 4 faults a 10 KiB
       sock_recv(65536), 29 a 100 KiB one).  And a size set from outside
       reaches only one module: each compiled module that cimports this file
       has its own copy of these statics, so a setter called through
       socket_calls left the stream engine's cache at its default, and every
       256 KiB transport read allocated and shrank a block of its own
       (~860 instructions a 1 KiB echo).  Asked-for size needs no setter. */
    #define SLIPSTREAM_RECV_COPY 4096
    #define SLIPSTREAM_RECV_CACHE_MIN (64 * 1024)
    #define SLIPSTREAM_RECV_CACHE_MAX (256 * 1024)
    #ifndef Py_GIL_DISABLED
    static PyObject *slipstream_recv_cache = NULL;
    #endif

    /* Giving a read's bytes object back.  A copied-out short read is a
       malloc() and a free() of its size, and between 513 bytes and 4 KiB
       that is glibc's slow path (above tcache's 1032 bytes, below pymalloc's
       512): ~400 instructions per 1 KiB read, an eighth of a whole echo round
       trip.  So the stream engine, once data_received() has returned, gives
       the object back with slipstream_recv_recycle(), and if nobody else
       holds it (its reference count is the engine's one) it becomes the
       spare that the next short read is copied into.  Nobody can tell: an
       object that no one references cannot be observed changing.  Its size
       is then set to the new read's (the allocation keeps its room, which
       PyObject_Free() does not need to know), its cached hash is reset, and
       it stays NUL-terminated as every bytes object is.  The room of the
       object lent out last is remembered by identity: the object given back
       is either that one (alive, so not another at its address) or one of
       its own size.  A read at most half the spare's room gets a fresh
       object instead, so a chunk a protocol keeps never pins more than twice
       its size.

       A long read's object comes back the same way, as the *long spare*:
       see slipstream_recv_stream() for what is done with it. */
    #define SLIPSTREAM_RECV_SPARE_MIN 2  /* 0 and 1 byte reads may be shared singletons */
    static PyObject *slipstream_recv_lent = NULL;  /* compared, never dereferenced */
    static Py_ssize_t slipstream_recv_lent_room = 0;
    #ifndef Py_GIL_DISABLED
    static PyObject *slipstream_recv_spare = NULL;
    static Py_ssize_t slipstream_recv_spare_room = 0;
    static PyObject *slipstream_recv_long_spare = NULL;
    static Py_ssize_t slipstream_recv_long_spare_room = 0;
    static int slipstream_recv_long_fits = 0;
    #endif

    /* Lend data, a bytes object only we hold with room bytes of room, as a
       read of n bytes: its size, its terminating NUL, no cached hash. */
    static PyObject *slipstream_recv_lend(PyObject *data, Py_ssize_t n, Py_ssize_t room) {
        PyBytes_AS_STRING(data)[n] = 0;
        Py_SET_SIZE(data, n);
    #if defined(__GNUC__)
    #pragma GCC diagnostic push
    #pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    #endif
        ((PyBytesObject *)data)->ob_shash = -1;
    #if defined(__GNUC__)
    #pragma GCC diagnostic pop
    #endif
        slipstream_recv_lent = data;
        slipstream_recv_lent_room = room;
        return data;
    }
    static PyObject *slipstream_recv_copy(const char *start, Py_ssize_t n) {
        PyObject *data;
    #ifndef Py_GIL_DISABLED
        data = slipstream_recv_spare;
        if (data != NULL && n >= SLIPSTREAM_RECV_SPARE_MIN
                && n <= slipstream_recv_spare_room && 2 * n > slipstream_recv_spare_room) {
            slipstream_recv_spare = NULL;
            memcpy(PyBytes_AS_STRING(data), start, (size_t)n);
            return slipstream_recv_lend(data, n, slipstream_recv_spare_room);
        }
    #endif
        data = PyBytes_FromStringAndSize(start, n);
    #ifndef Py_GIL_DISABLED
        slipstream_recv_lent = data;
        slipstream_recv_lent_room = n;
    #endif
        return data;
    }
    static void slipstream_recv_recycle(PyObject *data) {
    #ifndef Py_GIL_DISABLED
        Py_ssize_t room;
        if (Py_REFCNT(data) != 1 || !PyBytes_CheckExact(data))
            return;
        room = data == slipstream_recv_lent ? slipstream_recv_lent_room : PyBytes_GET_SIZE(data);
        slipstream_recv_lent = NULL;
        if (room < SLIPSTREAM_RECV_SPARE_MIN || room > SLIPSTREAM_RECV_CACHE_MAX)
            return;
        Py_INCREF(data);
        if (room <= SLIPSTREAM_RECV_COPY) {
            Py_XSETREF(slipstream_recv_spare, data);
            slipstream_recv_spare_room = room;
        } else {
            Py_XSETREF(slipstream_recv_long_spare, data);
            slipstream_recv_long_spare_room = room;
        }
    #endif
    }

    /* recvfrom() into buffer, retried after EINTR (PEP 475): the count, or
       -1 with an exception set, or, when quiet, -2 without one if the call
       would block. */
    static Py_ssize_t slipstream_recvfrom_retrying(int fd, char *buffer, Py_ssize_t size,
                                                   struct sockaddr *addr, socklen_t *addrlen,
                                                   int quiet) {
        socklen_t room = addrlen != NULL ? *addrlen : 0;
        ssize_t n;
        int error;
        for (;;) {
            if (addrlen != NULL)
                *addrlen = room;  /* in-out: set again before a retry */
            n = recvfrom(fd, buffer, (size_t)size, 0, addr, addrlen);
            if (n >= 0)
                return (Py_ssize_t)n;
            error = errno;
            if (quiet && (error == EAGAIN || error == EWOULDBLOCK))
                return -2;
            if (error != EINTR) {
                slipstream_errno_error(error);
                return -1;
            }
            if (PyErr_CheckSignals() < 0)  /* a handler raised */
                return -1;
        }
    }

    /* The room a long read from a stream is handed over with: an eighth more
       than it filled (see slipstream_recv_stream), within the block's. */
    static Py_ssize_t slipstream_recv_long_room(Py_ssize_t n, Py_ssize_t room) {
        Py_ssize_t wanted = n + n / 8;
        return wanted < room ? wanted : room;
    }

    /* Inlined into each caller, where its flags are constants (gcc left it a
       call once it had two callers: ~35 instructions a read). */
    #if defined(__GNUC__)
    #define SLIPSTREAM_INLINE static inline __attribute__((always_inline))
    #else
    #define SLIPSTREAM_INLINE static inline
    #endif

    /* recvfrom() into a new bytes object of at most size bytes; the sender's
       address into addr (NULL: not wanted, which is recv()).  stream: the
       caller reads a stream socket and gives its objects back, so a long
       read is handed over with room to spare.  quiet: a call that would
       block returns None, no exception (see slipstream_recv_bytes_or_none). */
    SLIPSTREAM_INLINE PyObject *slipstream_recv_from(int fd, Py_ssize_t size,
                                                     struct sockaddr *addr,
                                                     socklen_t *addrlen, int stream,
                                                     int quiet) {
        PyObject *data;
        Py_ssize_t n, room;
        int cached = 0;
    #ifndef Py_GIL_DISABLED
        if (size <= SLIPSTREAM_RECV_CACHE_MAX) {
            if (slipstream_recv_cache == NULL || size > PyBytes_GET_SIZE(slipstream_recv_cache)) {
                Py_CLEAR(slipstream_recv_cache);
                slipstream_recv_cache = PyBytes_FromStringAndSize(
                    NULL, size > SLIPSTREAM_RECV_CACHE_MIN ? size : SLIPSTREAM_RECV_CACHE_MIN);
                if (slipstream_recv_cache == NULL)
                    return NULL;
            }
            data = slipstream_recv_cache;
            cached = 1;
        } else
    #endif
        {
            data = PyBytes_FromStringAndSize(NULL, size);
            if (data == NULL)
                return NULL;
        }
        n = slipstream_recvfrom_retrying(fd, PyBytes_AS_STRING(data), size, addr, addrlen, quiet);
        if (n < 0) {
            if (!cached)
                Py_DECREF(data);
            return n == -2 ? Py_NewRef(Py_None) : NULL;
        }
    #ifndef Py_GIL_DISABLED
        slipstream_recv_lent = NULL;
        if (cached) {
            if (n <= SLIPSTREAM_RECV_COPY)
                return slipstream_recv_copy(PyBytes_AS_STRING(data), n);
            slipstream_recv_cache = NULL;  /* handed over: the next read makes another */
            if (stream) {
                room = slipstream_recv_long_room(n, PyBytes_GET_SIZE(data));
                if (room != PyBytes_GET_SIZE(data) && _PyBytes_Resize(&data, room) < 0)
                    return NULL;
                return slipstream_recv_lend(data, n, room);
            }
        }
    #else
        (void)room;
        (void)stream;
    #endif
        if (n != PyBytes_GET_SIZE(data) && _PyBytes_Resize(&data, n) < 0)
            return NULL;
        return data;
    }
    static PyObject *slipstream_recv_bytes(int fd, Py_ssize_t size) {
        return slipstream_recv_from(fd, size, NULL, NULL, 0, 0);
    }
    /* recv(), or None if it would block.  sock_recv tries the call before it
       waits, as asyncio does, and in a request/response loop that try often
       finds nothing; as an exception, that cost ~3,500 instructions: the
       message looked up and decoded from the locale (strerror), the
       BlockingIOError, and a traceback entry as it left compiled code. */
    static PyObject *slipstream_recv_bytes_or_none(int fd, Py_ssize_t size) {
        return slipstream_recv_from(fd, size, NULL, NULL, 0, 1);
    }

    /* recv() from a stream socket whose reader gives each object back once
       done with it (slipstream_recv_recycle): the stream engine's read.

       A long read (over SLIPSTREAM_RECV_COPY bytes) hands the cache itself
       over, so the next one allocates a new cache: a malloc() of up to
       256 KiB, a realloc() to shrink the block handed over, and its free()
       once the protocol is done with it, ~700 instructions of a 10 KiB echo
       round trip (what rloop pays on every read, the short reads here no
       longer).  So a long read's object, given back, is the long spare, and
       the next read receives straight into it, asking the kernel for at
       most its room: no allocation, no copy.

       Only a stream may be read so.  Receiving less than is queued is
       harmless there: the rest stays in the kernel, and the transport's
       watch is level-triggered, so the next poll reports it.  A datagram
       would be cut short, and sock_recv()'s edge-triggered wait after a
       short read (backends/epoll.py) would wait for an edge already past,
       so neither reads through here.

       What keeps it from costing elsewhere:
       - A read that fills the spare to its room, when the caller asked for
         more, may have left the rest of a message queued.  Nothing is lost
         (the next poll reports it), but the message then costs a second
         turn, a second data_received() and, for a protocol that answers what
         it is given, a second write: ~1 µs, five times what the spare saves.
         (A second recv() at once would need to know whether more is queued
         without taking an error the kernel reports once, and recvmsg() into
         spare and cache together costs more than it saves: ~250 ns a read.)
         So the spare is read into only while long reads have kept fitting:
         SLIPSTREAM_RECV_FITS long reads in a row that fit its room, or would
         have, counted on the cache's reads too.  Messages of one size fit
         (a long read leaves the cache with an eighth more room than it
         filled), and a bulk transfer's reads are all that was asked; growing
         or scattered sizes read from the cache, as before.
       - A read that fills at most half the spare's room does not take it:
         a short one is copied out as ever, a longer one gets the spare
         shrunk to fit.  A chunk a protocol keeps pins at most an eighth more
         than its size, or twice it after a shrinking read (as short reads'
         objects do).
       - Memory held: the cache, one long spare and one short spare. */
    #define SLIPSTREAM_RECV_FITS 8
    static PyObject *slipstream_recv_stream(int fd, Py_ssize_t size) {
    #ifndef Py_GIL_DISABLED
        PyObject *spare = slipstream_recv_long_spare, *data;
        Py_ssize_t room = slipstream_recv_long_spare_room, asked, n;
        if (spare == NULL)
            return slipstream_recv_from(fd, size, NULL, NULL, 1, 0);
        asked = size < room ? size : room;
        if (slipstream_recv_long_fits < SLIPSTREAM_RECV_FITS) {
            data = slipstream_recv_from(fd, size, NULL, NULL, 1, 0);
            if (data != NULL && PyBytes_GET_SIZE(data) > SLIPSTREAM_RECV_COPY) {
                if (PyBytes_GET_SIZE(data) < asked || asked == size)
                    slipstream_recv_long_fits++;
                else
                    slipstream_recv_long_fits = 0;
            }
            return data;
        }
        n = slipstream_recvfrom_retrying(fd, PyBytes_AS_STRING(spare), asked, NULL, NULL, 0);
        if (n < 0)
            return NULL;
        slipstream_recv_lent = NULL;
        if (n <= SLIPSTREAM_RECV_COPY)
            return slipstream_recv_copy(PyBytes_AS_STRING(spare), n);
        slipstream_recv_long_spare = NULL;
        if (n == asked && asked < size) {
            slipstream_recv_long_fits = 0;  /* filled: maybe more queued (above) */
        } else if (2 * n <= room) {
            room = slipstream_recv_long_room(n, room);
            if (_PyBytes_Resize(&spare, room) < 0)
                return NULL;
        }
        return slipstream_recv_lend(spare, n, room);
    #else
        return slipstream_recv_from(fd, size, NULL, NULL, 1, 0);
    #endif
    }
    /* recvfrom() on an AF_INET socket, as socket.recvfrom returns it: (data,
       (host, port)), the host as inet_ntop() writes it (CPython's own
       make_ipv4_addr), or (data, None) when the kernel gave no address. */
    static PyObject *slipstream_recvfrom_inet(int fd, Py_ssize_t size) {
        struct sockaddr_storage storage;
        socklen_t addrlen = sizeof(storage);
        const struct sockaddr_in *inet = (const struct sockaddr_in *)&storage;
        char host[INET_ADDRSTRLEN];
        PyObject *data, *address;
        data = slipstream_recv_from(fd, size, (struct sockaddr *)&storage, &addrlen, 0, 0);
        if (data == NULL)
            return NULL;
        if (addrlen == 0) {
            address = Py_NewRef(Py_None);
        } else if (storage.ss_family == AF_INET) {
            if (inet_ntop(AF_INET, &inet->sin_addr, host, sizeof(host)) == NULL) {
                Py_DECREF(data);
                return PyErr_SetFromErrno(PyExc_OSError);
            }
            address = Py_BuildValue("(si)", host, (int)ntohs(inet->sin_port));
        } else {  /* never on an AF_INET socket; CPython's form for an unknown family */
            address = Py_BuildValue("(iy#)", (int)storage.ss_family,
                                    ((struct sockaddr *)&storage)->sa_data,
                                    (Py_ssize_t)sizeof(((struct sockaddr *)&storage)->sa_data));
        }
        if (address == NULL) {
            Py_DECREF(data);
            return NULL;
        }
        return Py_BuildValue("(NN)", data, address);
    }
    /* Whether recv_into() would accept buffer; if not, its own method says why
       (a TypeError where PyObject_GetBuffer would raise a BufferError). */
    static int slipstream_writable(PyObject *buffer) {
        Py_buffer view;
        if (PyByteArray_CheckExact(buffer))
            return 1;
        if (!PyObject_CheckBuffer(buffer))
            return 0;
        if (PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE) < 0) {
            PyErr_Clear();
            return 0;
        }
        PyBuffer_Release(&view);
        return 1;
    }

    /* recv() into a writable buffer (what recv_into() accepts). */
    static PyObject *slipstream_recv_into(int fd, PyObject *buffer) {
        Py_buffer view;
        ssize_t n;
        int error;
        if (PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE) < 0)
            return NULL;
        for (;;) {
            n = recv(fd, view.buf, (size_t)view.len, 0);
            if (n >= 0)
                break;
            error = errno;
            if (error != EINTR) {
                PyBuffer_Release(&view);
                return slipstream_errno_error(error);
            }
            if (PyErr_CheckSignals() < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
        }
        PyBuffer_Release(&view);
        return PyLong_FromSsize_t(n);
    }

    /* send() of a bytes-like object (what send() accepts): the count sent,
       or -1 with an exception set. */
    static Py_ssize_t slipstream_send_to(int fd, PyObject *data,
                                         const struct sockaddr *addr, socklen_t addrlen) {
        Py_buffer view;
        const char *start;
        Py_ssize_t length;
        ssize_t n;
        int error, viewed = 0;
        if (PyBytes_CheckExact(data)) {
            start = PyBytes_AS_STRING(data);
            length = PyBytes_GET_SIZE(data);
        } else {
            if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
                return -1;
            viewed = 1;
            start = (const char *)view.buf;
            length = view.len;
        }
        for (;;) {
            n = sendto(fd, start, (size_t)length, 0, addr, addrlen);
            if (n >= 0)
                break;
            error = errno;
            if (error != EINTR) {
                if (viewed)
                    PyBuffer_Release(&view);
                slipstream_errno_error(error);
                return -1;
            }
            if (PyErr_CheckSignals() < 0) {
                if (viewed)
                    PyBuffer_Release(&view);
                return -1;
            }
        }
        if (viewed)
            PyBuffer_Release(&view);
        return (Py_ssize_t)n;
    }

    static Py_ssize_t slipstream_send_count(int fd, PyObject *data) {
        return slipstream_send_to(fd, data, NULL, 0);
    }
    /* sendmsg() of the first count buffers of the iterable buffers (the
       caller's count: at most IOV_MAX, and no more than there are), as
       socket.sendmsg(buffers) sends them, without its argument parsing
       (~650 instructions of PyArg_ParseTuple and buffer conversion for a
       burst of two, a response's headers and body) and without releasing
       the GIL around a call that cannot block.  bytes are read in place;
       anything else through its buffer, released after the call.  The number
       of bytes sent, or -1 with an exception set (BlockingIOError when the
       kernel takes nothing, as from the method). */
    #define SLIPSTREAM_IOV_STACK 16
    static Py_ssize_t slipstream_sendmsg_count(int fd, PyObject *buffers, Py_ssize_t count) {
        struct iovec stack_iov[SLIPSTREAM_IOV_STACK];
        Py_buffer stack_views[SLIPSTREAM_IOV_STACK];
        struct iovec *iov = stack_iov;
        Py_buffer *views = stack_views;
        PyObject *iterator, *item;
        struct msghdr message;
        Py_ssize_t i, filled = 0, viewed = 0, result = -1;
        ssize_t n;
        int error;
        if (count > SLIPSTREAM_IOV_STACK) {
            iov = PyMem_Malloc((size_t)count * sizeof(struct iovec));
            views = PyMem_Malloc((size_t)count * sizeof(Py_buffer));
            if (iov == NULL || views == NULL) {
                PyErr_NoMemory();
                goto done;
            }
        }
        iterator = PyObject_GetIter(buffers);
        if (iterator == NULL)
            goto done;
        while (filled < count && (item = PyIter_Next(iterator)) != NULL) {
            if (PyBytes_CheckExact(item)) {
                /* The iterable (the engine's deque) holds it until we are done. */
                iov[filled].iov_base = PyBytes_AS_STRING(item);
                iov[filled].iov_len = (size_t)PyBytes_GET_SIZE(item);
            } else if (PyObject_GetBuffer(item, &views[viewed], PyBUF_SIMPLE) == 0) {
                iov[filled].iov_base = views[viewed].buf;
                iov[filled].iov_len = (size_t)views[viewed].len;
                viewed++;
            } else {
                Py_DECREF(item);
                break;
            }
            Py_DECREF(item);
            filled++;
        }
        Py_DECREF(iterator);
        if (PyErr_Occurred())
            goto done;
        memset(&message, 0, sizeof(message));
        message.msg_iov = iov;
        message.msg_iovlen = (size_t)filled;
        for (;;) {
            n = sendmsg(fd, &message, 0);
            if (n >= 0) {
                result = n;
                break;
            }
            error = errno;
            if (error != EINTR) {
                slipstream_errno_error(error);
                break;
            }
            if (PyErr_CheckSignals() < 0)  /* PEP 475: a handler raised */
                break;
        }
    done:
        for (i = 0; i < viewed; i++)
            PyBuffer_Release(&views[i]);
        if (iov != stack_iov)
            PyMem_Free(iov);
        if (views != stack_views)
            PyMem_Free(views);
        return result;
    }
    /* An AF_INET address socket.sendto would take without a lookup: a
       (str, int) pair, the host a dotted quad inet_pton() accepts (CPython
       parses those itself, to the same address; anything else, a name, "",
       "<broadcast>", leading zeros, may need its resolver), the port 0-65535.
       1 if so (out filled), 0 if the method must decide; never an exception. */
    static int slipstream_inet_address(PyObject *address, struct sockaddr_in *out) {
        PyObject *host, *port;
        const char *text;
        Py_ssize_t length;
        long number;
        if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) != 2)
            return 0;
        host = PyTuple_GET_ITEM(address, 0);
        port = PyTuple_GET_ITEM(address, 1);
        if (!PyUnicode_CheckExact(host) || !PyLong_CheckExact(port))
            return 0;
        text = PyUnicode_AsUTF8AndSize(host, &length);
        if (text == NULL) {
            PyErr_Clear();
            return 0;
        }
        if ((Py_ssize_t)strlen(text) != length)
            return 0;
        number = PyLong_AsLong(port);
        if (number == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (number < 0 || number > 0xffff)
            return 0;
        memset(out, 0, sizeof(*out));
        if (inet_pton(AF_INET, text, &out->sin_addr) != 1)
            return 0;
        out->sin_family = AF_INET;
        out->sin_port = htons((unsigned short)number);
        return 1;
    }
    /* sendto() on an AF_INET socket: the count as an int object; NotImplemented
       (no exception) if the address is one for the method (see above). */
    static PyObject *slipstream_sendto_inet(int fd, PyObject *data, PyObject *address) {
        struct sockaddr_in inet;
        Py_ssize_t n;
        if (!slipstream_inet_address(address, &inet))
            return Py_NewRef(Py_NotImplemented);
        n = slipstream_send_to(fd, data, (const struct sockaddr *)&inet, sizeof(inet));
        return n < 0 ? NULL : PyLong_FromSsize_t(n);
    }
    /* The same, as send() returns it: an int object. */
    static PyObject *slipstream_send(int fd, PyObject *data) {
        Py_ssize_t n = slipstream_send_count(fd, data);
        return n < 0 ? NULL : PyLong_FromSsize_t(n);
    }

    /* epoll_wait() into buffer: the number of events, or -1 with an exception set.

       A wait that may sleep has to let other threads run, and releasing and
       re-taking the GIL costs ~80 ns.  On a busy loop events are nearly always
       waiting, so a first zero-timeout wait, GIL kept, finds them for the price
       of the system call alone.  On a loop that sleeps between requests (most
       servers, most of the time) that first wait finds nothing: a wasted system
       call (~200 ns, more on a VM) on every wake-up, one more than uvloop makes.
       So the first wait is tried only while it pays.  After one that found
       nothing, the next wait that may sleep goes straight to sleeping; after
       a second miss in a row, the next two; then four, and so on up to
       SLIPSTREAM_ZERO_TRY_REST_MAX, until a try finds events again.  A busy
       loop keeps finding events and keeps the GIL (a rare miss costs it one
       GIL round trip, ~80 ns); an idle one soon wastes one system call in 65
       wake-ups.  (One state per process, read and written with the GIL held:
       loops in several threads share it, which costs at most misjudged waits.)

       EINTR runs the signal handlers and returns no events (the loop comes back
       with a fresh timeout), where epoll.poll would retry itself. */
    #define SLIPSTREAM_ZERO_TRY_REST_MAX 64
    static int slipstream_zero_try_rest = 0;     /* waits left to go straight to sleep */
    static int slipstream_zero_try_backoff = 0;  /* the last rest given; 0 after a hit */
    static int slipstream_epoll_wait_count(int epfd, char *buffer, int maxevents, double timeout) {
        struct epoll_event *events = (struct epoll_event *)buffer;
        int n = 0, error = 0, milliseconds;
        if (timeout < 0)
            milliseconds = -1;
        else  /* rounded up, as epoll.poll does: never woken before a timer is due */
            milliseconds = (int)ceil(timeout * 1e3);
        if (milliseconds == 0 || slipstream_zero_try_rest == 0) {
            n = epoll_wait(epfd, events, maxevents, 0);
            if (milliseconds != 0) {
                if (n == 0) {
                    /* 1, 2, 4 ... SLIPSTREAM_ZERO_TRY_REST_MAX */
                    int rest = slipstream_zero_try_backoff ? 2 * slipstream_zero_try_backoff : 1;
                    if (rest > SLIPSTREAM_ZERO_TRY_REST_MAX)
                        rest = SLIPSTREAM_ZERO_TRY_REST_MAX;
                    slipstream_zero_try_backoff = slipstream_zero_try_rest = rest;
                } else {
                    slipstream_zero_try_backoff = 0;
                }
            }
        } else {
            slipstream_zero_try_rest--;
        }
        if (n == 0 && milliseconds != 0) {
            Py_BEGIN_ALLOW_THREADS
            n = epoll_wait(epfd, events, maxevents, milliseconds);
            if (n < 0)
                error = errno;
            Py_END_ALLOW_THREADS
        } else if (n < 0) {
            error = errno;
        }
        if (n < 0) {
            if (error != EINTR) {
                slipstream_errno_error(error);
                return -1;
            }
            if (PyErr_CheckSignals() < 0)
                return -1;
            n = 0;
        }
        return n;
    }
    /* epoll_ctl() with the event's data whole: the descriptor in the low 32
       bits, a tag (0 for none) in the high 32.  0, or -1 with an exception set
       (the OSError subclass of errno, as select.epoll's methods raise). */
    static int slipstream_epoll_ctl(int epfd, int op, int fd, unsigned int mask,
                                    unsigned long long data) {
        struct epoll_event event;
        memset(&event, 0, sizeof(event));
        event.events = mask;
        event.data.u64 = data;
        if (epoll_ctl(epfd, op, fd, &event) < 0) {
            slipstream_errno_error(errno);
            return -1;
        }
        return 0;
    }

    /* Is event a registration's that is no longer current?  Its tag (high 32
       bits of the data) is not 0 and not the one edge_tags has for its
       descriptor: the registration of a file closed (or replaced) since,
       which the kernel keeps while another descriptor holds that file.
       1 stale, 0 current, -1 with an exception set. */
    static int slipstream_epoll_stale(struct epoll_event *event, PyObject *key, PyObject *edge_tags) {
        unsigned long long tag = event->data.u64 >> 32, expected;
        PyObject *current;
        if (tag == 0)
            return 0;
        current = PyDict_GetItemWithError(edge_tags, key);
        if (current == NULL)
            return PyErr_Occurred() ? -1 : 1;
        expected = PyLong_AsUnsignedLongLong(current);
        if (expected == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        return expected != tag;
    }

    /* epoll_wait() as a list of (fd, events) pairs, select.epoll.poll's result
       (less the stale events, see above). */
    static PyObject *slipstream_epoll_wait(int epfd, char *buffer, int maxevents, double timeout,
                                           PyObject *edge_tags) {
        struct epoll_event *events = (struct epoll_event *)buffer;
        PyObject *result, *pair, *key;
        int n, i, stale;
        n = slipstream_epoll_wait_count(epfd, buffer, maxevents, timeout);
        if (n < 0)
            return NULL;
        result = PyList_New(0);
        if (result == NULL)
            return NULL;
        for (i = 0; i < n; i++) {
            key = PyLong_FromLong((int)(events[i].data.u64 & 0xffffffffu));
            if (key == NULL)
                goto error;
            stale = slipstream_epoll_stale(&events[i], key, edge_tags);
            if (stale) {
                Py_DECREF(key);
                if (stale < 0)
                    goto error;
                continue;
            }
            pair = PyTuple_New(2);
            if (pair == NULL) {
                Py_DECREF(key);
                goto error;
            }
            PyTuple_SET_ITEM(pair, 0, key);
            PyTuple_SET_ITEM(pair, 1, PyLong_FromUnsignedLong(events[i].events));
            if (PyTuple_GET_ITEM(pair, 1) == NULL || PyList_Append(result, pair) < 0) {
                Py_DECREF(pair);
                goto error;
            }
            Py_DECREF(pair);
        }
        return result;
    error:
        Py_DECREF(result);
        return NULL;
    }
    /* epoll_wait() straight into the loop's ready list (see epoll_wait_ready in
       syscalls.py for what it does).  Building the list of pairs, then taking
       each apart, was ~400 instructions per event of the ~750 a readiness
       cost the loop (a tuple and its deallocation, the unpacking, the list):
       here an event costs an int (cached below 257), a dict lookup and an
       append.  The number of events, or -1 with an exception set. */
    static int slipstream_epoll_wait_ready(int epfd, char *buffer, int maxevents, double timeout,
                                           unsigned int read_events, unsigned int write_events,
                                           PyObject *readers, PyObject *writers, PyObject *ready,
                                           PyObject *armed, PyObject *fired,
                                           PyObject *edge_tags, PyObject *missed) {
        struct epoll_event *events = (struct epoll_event *)buffer;
        PyObject *key, *handle;
        unsigned int mask;
        int n, i, found, edge;
        n = slipstream_epoll_wait_count(epfd, buffer, maxevents, timeout);
        for (i = 0; i < n; i++) {
            mask = events[i].events;
            key = PyLong_FromLong((int)(events[i].data.u64 & 0xffffffffu));
            if (key == NULL)
                return -1;
            edge = (events[i].data.u64 >> 32) != 0;
            if (edge) {
                found = slipstream_epoll_stale(&events[i], key, edge_tags);
                if (found) {
                    Py_DECREF(key);
                    if (found < 0)
                        return -1;
                    continue;
                }
            }
            if (edge && (mask & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    && PySet_Add(missed, key) < 0) {
                /* The end of the stream or an error: a state, not news.  A
                   read that takes the data before it returns short without
                   reporting it, and the kernel will not report it again:
                   the next wait has it look afresh. */
                Py_DECREF(key);
                return -1;
            }
            if (PySet_GET_SIZE(armed)) {
                found = PySet_Discard(armed, key);
                if (found < 0 || (found && PySet_Add(fired, key) < 0))
                    goto error;
            }
            if (mask & read_events) {
                handle = PyDict_GetItemWithError(readers, key);
                if (handle != NULL) {
                    if (PyList_Append(ready, handle) < 0)
                        goto error;
                } else if (PyErr_Occurred()) {
                    goto error;
                } else if (edge && PySet_Add(missed, key) < 0) {
                    /* An edge nobody was waiting for: the kernel will not
                       report it again (see EpollBackend.watch_edges). */
                    goto error;
                }
            }
            if (mask & write_events) {
                handle = PyDict_GetItemWithError(writers, key);
                if (handle != NULL) {
                    if (PyList_Append(ready, handle) < 0)
                        goto error;
                } else if (PyErr_Occurred()) {
                    goto error;
                }
            }
            Py_DECREF(key);
        }
        return n;
    error:
        Py_DECREF(key);
        return -1;
    }
    """
    int slipstream_socket_layout
    PyObject *slipstream_socket_class
    int slipstream_socket_fd(object sock)
    long long slipstream_socket_timeout(object sock)
    int slipstream_socket_family(object sock)
    const int SLIPSTREAM_AF_INET "AF_INET"
    const int SLIPSTREAM_AF_INET6 "AF_INET6"
    const int SLIPSTREAM_SOCK_STREAM "SOCK_STREAM"
    int slipstream_socket_type(object sock)
    object slipstream_recvfrom_inet(int fd, Py_ssize_t size)
    object slipstream_sendto_inet(int fd, object data, object address)
    object slipstream_recv_bytes(int fd, Py_ssize_t size)
    object slipstream_recv_bytes_or_none(int fd, Py_ssize_t size)
    object slipstream_recv_stream(int fd, Py_ssize_t size)
    void slipstream_recv_recycle(object data) noexcept
    PyObject *slipstream_recv_lent
    object slipstream_recv_into(int fd, object buffer)
    bint slipstream_writable(object buffer)
    object slipstream_send(int fd, object data)
    Py_ssize_t slipstream_send_count(int fd, object data) except -1
    Py_ssize_t slipstream_sendmsg_count(int fd, object buffers, Py_ssize_t count) except -1
    int slipstream_epoll_ctl(int epfd, int op, int fd, unsigned int mask,
                             unsigned long long data) except -1
    object slipstream_epoll_wait(int epfd, char *buffer, int maxevents, double timeout,
                                 dict edge_tags)
    int slipstream_epoll_wait_ready(int epfd, char *buffer, int maxevents, double timeout,
                                    unsigned int read_events, unsigned int write_events,
                                    dict readers, dict writers, list ready,
                                    set armed, set fired, dict edge_tags,
                                    set missed) except -1
    const int SIZEOF_EPOLL_EVENT "sizeof(struct epoll_event)"
    int PyObject_AsFileDescriptor(object) except -1


cdef inline int _check_socket_layout() except -1:
    # Once per compiled module: does CPython's socket object look as expected?
    global slipstream_socket_layout, slipstream_socket_class
    import socket as socket_module

    try:
        a, b = socket_module.socketpair()
    except OSError:
        # No descriptors to spare (EMFILE) right now: this call uses the
        # method, and the check is made again on the next one.
        return 0
    try:
        a.setblocking(False)
        b.settimeout(2.5)
        matches = (
            slipstream_socket_fd(a) == a.fileno()
            and slipstream_socket_family(a) == a.family
            and slipstream_socket_timeout(a) == 0
            and slipstream_socket_fd(b) == b.fileno()
            and slipstream_socket_timeout(b) == 2500000000
        )
    finally:
        a.close()
        b.close()
    cls = socket_module.socket
    Py_INCREF(cls)
    slipstream_socket_class = <PyObject *>cls
    slipstream_socket_layout = 1 if matches else 0
    return 0


cdef inline bint _direct(object sock) except -1:
    # The kernel may be called directly only for what socket.socket's own
    # method would do the same with: exactly that class (a subclass may
    # override the method), non-blocking (a blocking call must release the
    # GIL), open (a closed socket's method raises EBADF, and the number may
    # name another file by now).
    if slipstream_socket_layout < 0:
        _check_socket_layout()
    return (
        slipstream_socket_layout == 1
        and <PyObject *>Py_TYPE(sock) == slipstream_socket_class
        and slipstream_socket_timeout(sock) == 0
        and slipstream_socket_fd(sock) >= 0
    )


cdef inline object recv(object sock, object size):
    if type(size) is int and 0 < size <= 0x7fffffff and _direct(sock):
        return slipstream_recv_bytes(slipstream_socket_fd(sock), size)
    return sock.recv(size)


cdef inline object recv_or_none(object sock, object size):
    if type(size) is int and 0 < size <= 0x7fffffff and _direct(sock):
        return slipstream_recv_bytes_or_none(slipstream_socket_fd(sock), size)
    try:
        return sock.recv(size)
    except BlockingIOError:
        return None


cdef inline object recv_sized(object sock, Py_ssize_t size):
    global slipstream_recv_lent
    if 0 < size <= 0x7fffffff and _direct(sock):
        # The stream engine's read: a stream's may receive into the last
        # read's object (slipstream_recv_stream); anything else may not.
        if slipstream_socket_type(sock) & 0xF == SLIPSTREAM_SOCK_STREAM:
            return slipstream_recv_stream(slipstream_socket_fd(sock), size)
        return slipstream_recv_bytes(slipstream_socket_fd(sock), size)
    # Not lent by us (see slipstream_recv_recycle): never taken for a spare
    # of the last lent object's room, should it sit at that object's address.
    slipstream_recv_lent = NULL
    return sock.recv(size)


cdef enum:
    RECYCLES = 1
    DIRECT = 1


cdef inline void recycle(object data) noexcept:
    slipstream_recv_recycle(data)


cdef inline int socket_fileno(object sock) except? -2:
    if _direct(sock):
        return slipstream_socket_fd(sock)
    try:
        return int(sock.fileno())
    except Exception:
        return -1


cdef inline bint wait_after_short_read(object sock) except -1:
    # TCP only (see syscalls.py), and only what _direct vouches for: its
    # layout was checked, so family and type can be read from the struct.
    if not _direct(sock) or slipstream_socket_type(sock) & 0xF != SLIPSTREAM_SOCK_STREAM:
        return False
    family = slipstream_socket_family(sock)
    return family == SLIPSTREAM_AF_INET or family == SLIPSTREAM_AF_INET6


cdef inline object recvfrom(object sock, object size):
    if (type(size) is int and 0 < size <= 0x7fffffff and _direct(sock)
            and slipstream_socket_family(sock) == SLIPSTREAM_AF_INET):
        return slipstream_recvfrom_inet(slipstream_socket_fd(sock), size)
    return sock.recvfrom(size)


cdef inline object sendto(object sock, object data, object address):
    if _direct(sock) and slipstream_socket_family(sock) == SLIPSTREAM_AF_INET:
        sent = slipstream_sendto_inet(slipstream_socket_fd(sock), data, address)
        if sent is not NotImplemented:
            return sent
    return sock.sendto(data, address)


cdef inline object recv_into(object sock, object buffer):
    if _direct(sock) and slipstream_writable(buffer):
        return slipstream_recv_into(slipstream_socket_fd(sock), buffer)
    return sock.recv_into(buffer)


cdef inline object send(object sock, object data):
    if _direct(sock):
        return slipstream_send(slipstream_socket_fd(sock), data)
    return sock.send(data)


cdef inline Py_ssize_t send_count(object sock, object data) except -1:
    if _direct(sock):
        return slipstream_send_count(slipstream_socket_fd(sock), data)
    return sock.send(data)


cdef inline Py_ssize_t sendmsg_count(object sock, object buffers, Py_ssize_t count) except -1:
    if _direct(sock):
        return slipstream_sendmsg_count(slipstream_socket_fd(sock), buffers, count)
    if count == len(buffers):
        return sock.sendmsg(buffers)
    import itertools

    return sock.sendmsg(itertools.islice(buffers, count))


cdef inline object epoll_buffer(object maxevents):
    return bytearray(SIZEOF_EPOLL_EVENT * maxevents)


cdef enum:
    EDGE_TAGS = 1
    EPOLL_CTL_ADD = 1
    EPOLL_CTL_DEL = 2
    EPOLL_CTL_MOD = 3


cdef inline int epoll_ctl(object epoll, int epfd, int op, object fd, unsigned int events,
                          unsigned long long data) except -1:
    cdef int number
    if epfd < 0:
        # Closed: the method raises what it raises for a closed epoll.
        if op == EPOLL_CTL_ADD:
            epoll.register(fd, events)
        elif op == EPOLL_CTL_MOD:
            epoll.modify(fd, events)
        else:
            epoll.unregister(fd)
        return 0
    # Every registration goes through here, never through the methods, which
    # leave the data's high half unset: an event whose tag is not 0 would be
    # taken for a stale one.  The number as the methods read it (an int, or
    # fileno(); a negative one is their ValueError).
    number = PyObject_AsFileDescriptor(fd)
    return slipstream_epoll_ctl(epfd, op, number, events,
                                (data & 0xffffffff00000000ULL) | <unsigned int>number)


cdef inline object epoll_wait(object epoll, int epfd, object buffer, double timeout,
                              int maxevents, dict edge_tags):
    if epfd < 0:  # closed: the method raises what it raises for a closed epoll
        return epoll.poll(timeout, maxevents)
    if type(buffer) is not bytearray or PyByteArray_GET_SIZE(buffer) < <Py_ssize_t>SIZEOF_EPOLL_EVENT * maxevents:
        raise ValueError("epoll_wait() needs the buffer epoll_buffer() made for maxevents")
    return slipstream_epoll_wait(epfd, PyByteArray_AS_STRING(buffer), maxevents, timeout,
                                 edge_tags)


cdef inline int epoll_wait_ready(object epoll, int epfd, object buffer, double timeout,
                                 int maxevents, unsigned int read_events,
                                 unsigned int write_events, dict readers, dict writers,
                                 list ready, set armed, set fired, dict edge_tags,
                                 set missed) except -1:
    if epfd < 0:  # closed: the method raises what it raises for a closed epoll
        epoll.poll(timeout, maxevents)
        return 0
    if type(buffer) is not bytearray or PyByteArray_GET_SIZE(buffer) < <Py_ssize_t>SIZEOF_EPOLL_EVENT * maxevents:
        raise ValueError("epoll_wait_ready() needs the buffer epoll_buffer() made for maxevents")
    return slipstream_epoll_wait_ready(epfd, PyByteArray_AS_STRING(buffer), maxevents, timeout,
                                       read_events, write_events, readers, writers, ready,
                                       armed, fired, edge_tags, missed)
