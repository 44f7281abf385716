# Cython declarations for scheduler.py (pure-Python mode: this file augments that
# source, which stays the one implementation).  See docs/benchmarks.md,
# "Compiled core", for what is compiled and why.

cimport cython

from .handles cimport Handle, HandleOwner, TimerHandle
from . cimport primitives
from ..backends.ready cimport ReadyBackend

# Module-level names the hot path calls: C variables instead of dict lookups.
cdef object _SOURCE_FILE
cdef object _context_run
cdef object _heappush
cdef object _heappop
cdef object _Future
cdef object _Task
cdef list _free_handles
cdef Py_ssize_t _FREE_HANDLES_MAX
cdef bint _RECYCLE_HANDLES
cdef double _POLL_SKIP_WINDOW
cdef double _AFTER_POLL
cdef object _NO_WAIT
cdef Py_ssize_t _MIN_CANCELLED_TIMERS_TO_PURGE
cdef Py_ssize_t _LAG_TOP_BUCKET


cdef class TurnCounters:
    # Public, so the interpreted statistics() and run bookkeeping read them too.
    cdef public Py_ssize_t batches
    cdef public Py_ssize_t idle_turns
    cdef public Py_ssize_t callbacks_run
    cdef public Py_ssize_t timers_cancelled
    # A C array compiled (an increment, no int objects); a list interpreted.
    cdef Py_ssize_t lag_counts[32]
    cdef public double lag_max
    cdef public double lag_sum
    cdef public double poll_time
    cdef public double run_time
    cdef public double run_started
    cdef public double last_poll_end
    cdef public double longest_stretch
    cdef public double slowest_callback
    cdef public object slowest_callback_name


cdef class Scheduler(HandleOwner):
    # Read or written by the interpreted layers (CoreLoop, ErrorReporting, the
    # mixins of EventLoop): public, so the C field is the only copy.  (_debug,
    # as public, comes from HandleOwner.)
    cdef readonly bint _closed
    cdef public object _thread_id
    cdef public Handle _current_handle
    cdef public object _task_factory

    cdef ReadyBackend _backend
    cdef list _ready
    cdef list _spare
    cdef list _timers
    cdef Py_ssize_t _timer_sequence
    cdef Py_ssize_t _cancelled_timers
    cdef dict _readers
    cdef dict _writers
    cdef bint _io_watched
    cdef double _clock_resolution
    cdef bint _plain_clock
    cdef double _next_peek
    cdef bint _stopping
    cdef object _wakeup_read
    cdef object _wakeup_write

    cdef TurnCounters _counters
    cdef Py_ssize_t _callback_sequence

    @cython.locals(events=int)
    cdef _update_interest(self, object fd, object owner=*)

    @cython.locals(handle=Handle)
    cdef Handle _schedule(self, object callback, tuple args, object context, str method)

    @cython.locals(timer=TimerHandle, sequence=Py_ssize_t)
    cdef TimerHandle _schedule_timer(self, object when, object callback, tuple args,
                                     object context, str method)

    @cython.locals(ready=list, handle=Handle, args=tuple, done=Py_ssize_t, counters=TurnCounters)
    cdef _run_once(self)

    @cython.locals(counters=TurnCounters, now=double, real_now=double, timeout=double, deadline=double, mask=int, stretch=double,
                   started=double, lateness=double, bucket=Py_ssize_t, first_when=double,
                   timers=list, readers=dict, writers=dict, handle=Handle, timer=TimerHandle)
    cdef _gather(self, list ready)


    @cython.locals(counters=TurnCounters)
    cdef _finish_batch(self, list batch, Py_ssize_t done)

    @cython.locals(handle=Handle, started=double, elapsed=double, done=Py_ssize_t, debug=bint,
                   counters=TurnCounters)
    cdef _run_batch_debug(self, list batch)

    @cython.locals(counters=TurnCounters)
    cdef _timer_cancelled(self)

    @cython.locals(timers=list)
    cdef _drop_cancelled_timers(self)

    @cython.locals(timers=list, kept=list, timer=TimerHandle)
    cdef _purge_cancelled_timers(self)
