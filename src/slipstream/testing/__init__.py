"""Virtual time for tests: a slipstream loop whose clock moves only when the loop is idle.

``new_virtual_loop()`` returns a complete slipstream loop whose ``time()`` is
a :class:`VirtualClock`.  With autojump (the default), whenever nothing is
ready and no I/O arrives, the clock jumps straight to the next timer: an hour
of ``asyncio.sleep``, ``wait_for`` and ``asyncio.timeout`` takes milliseconds,
and the same program gives the same order of events every time.  With
autojump off, ``clock.advance(seconds)`` moves it by hand.  Sockets,
subprocesses and executors stay real; :class:`VirtualEventLoop` says what
happens where real and virtual time meet.

The pytest plugin (:mod:`slipstream.testing.pytest_plugin`, registered by
entry point, off unless asked) runs async tests on these loops; see
docs/testing.md.
"""

from .clock import VirtualClock
from .loop import VirtualEventLoop, new_virtual_loop

__all__ = ["VirtualClock", "VirtualEventLoop", "new_virtual_loop"]
