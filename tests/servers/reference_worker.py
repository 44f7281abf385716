"""The gunicorn worker of the reference runs: uvicorn-worker's worker on asyncio's own loop.

uvicorn-worker's ``UvicornWorker`` asks for the ``auto`` loop, which is uvloop
wherever uvloop is installed; the reference must be asyncio's loop, so it is
named here, and everything else stays as in ``SlipstreamWorker``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]


class AsyncioWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no types
    """uvicorn-worker's worker with ``loop="asyncio"``."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "asyncio", "http": "auto"}
