"""slipstream: a drop-in asyncio event loop written in Python.

Use it with ``asyncio.run(main(), loop_factory=slipstream.new_event_loop)``,
``slipstream.run(main())``, ``slipstream.install()`` or
``python -m slipstream script.py``.  Tasks and futures stay asyncio's own.
"""

from .event_loop import EventLoop
from .policy import EventLoopPolicy, install, new_event_loop, run

__all__ = ["EventLoop", "EventLoopPolicy", "install", "new_event_loop", "run"]
__version__ = "0.1.0"
