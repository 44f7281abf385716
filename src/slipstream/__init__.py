"""slipstream: a drop-in asyncio event loop written in Python.

Use it with ``asyncio.run(main(), loop_factory=slipstream.new_event_loop)``,
``slipstream.run(main())``, ``slipstream.install()`` or
``python -m slipstream script.py``.  Tasks and futures stay asyncio's own.

``slipstream.compiled`` is True when the loop's scheduling core runs as
compiled C (built by ``pip install`` where a C compiler exists), False when it
runs from the Python sources (no compiler at install time, or
``SLIPSTREAM_PURE=1`` in the environment).
"""

from .core import COMPILED as compiled
from .event_loop import EventLoop
from .policy import EventLoopPolicy, install, new_event_loop, run

__all__ = ["EventLoop", "EventLoopPolicy", "compiled", "install", "new_event_loop", "run"]
__version__ = "0.1.0"
