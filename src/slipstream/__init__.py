"""slipstream: a drop-in asyncio event loop written in Python.

Use it with ``asyncio.run(main(), loop_factory=slipstream.new_event_loop)``,
``slipstream.run(main())``, ``slipstream.install()`` or
``python -m slipstream script.py``.  Tasks and futures stay asyncio's own.

``slipstream.compiled`` is True when the loop's scheduling core runs as
compiled C (built by ``pip install`` where a C compiler exists), False when it
runs from the Python sources (no compiler at install time, or
``SLIPSTREAM_PURE=1`` in the environment).

``slipstream.dump_tasks()`` returns the tree of the running loop's tasks (who awaits whom,
where each is suspended); ``python -m slipstream ps|pstree PID`` prints it for a process that
opted in with ``slipstream.run(..., inspect=True)`` or ``SLIPSTREAM_INSPECT=1``.
"""

from .core import COMPILED as compiled
from .event_loop import EventLoop
from .observe.tasktree import dump_tasks
from .policy import EventLoopPolicy, install, new_event_loop, run

__all__ = [
    "EventLoop",
    "EventLoopPolicy",
    "compiled",
    "dump_tasks",
    "install",
    "new_event_loop",
    "run",
]
__version__ = "0.1.0"
