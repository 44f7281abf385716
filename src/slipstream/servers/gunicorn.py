"""A gunicorn worker class that serves ASGI applications on slipstream.

``gunicorn -k slipstream.servers.gunicorn.SlipstreamWorker app:app`` runs
uvicorn's server in every worker process, as uvicorn-worker's ``UvicornWorker``
does, with a slipstream loop instead of asyncio's (or uvloop's) loop.  Signals
keep gunicorn's meaning: SIGTERM stops the workers gracefully (requests in
flight finish) and the master exits with status 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

# uvicorn imports this "module:attribute" string in each worker and calls it to make the loop.
LOOP_FACTORY = "slipstream:new_event_loop"


class SlipstreamWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no types
    """uvicorn-worker's worker with slipstream as the loop and uvicorn's best HTTP parser."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": LOOP_FACTORY, "http": "auto"}


class SlipstreamH11Worker(UvicornWorker):  # type: ignore[misc]
    """The same with the pure-Python h11 HTTP parser (where httptools cannot be installed)."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": LOOP_FACTORY, "http": "h11"}
