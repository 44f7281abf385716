"""Exception handler API: how errors that have no caller reach the user.

An exception raised by a callback, a task nobody awaited, a transport that
failed: none has a caller to propagate to, so the loop hands a *context* dict to
the exception handler.  The default handler logs it on the ``asyncio`` logger,
exactly where the stock loop logs it, so existing logging configuration keeps
working.
"""

from __future__ import annotations

import traceback
from asyncio.log import logger
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .handles import describe_callback_source

if TYPE_CHECKING:
    from .handles import Handle

__all__ = ["ErrorReporting", "logger"]

ExceptionHandler = Callable[[Any, dict[str, Any]], object]


class ErrorReporting:
    """The exception-handler half of the loop's API."""

    _current_handle: Handle | None
    _debug: bool

    def __init__(self) -> None:
        self._exception_handler: ExceptionHandler | None = None

    def get_exception_handler(self) -> ExceptionHandler | None:
        return self._exception_handler

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = (
            (type(exception), exception, exception.__traceback__)
            if exception is not None
            else False
        )
        current = self._current_handle
        if (
            "source_traceback" not in context
            and current is not None
            and current._source_traceback
        ):
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                text = "Object created at (most recent call last):\n"
                text += "".join(traceback.format_list(value)).rstrip()
            elif key == "handle_traceback":
                text = "Handle created at (most recent call last):\n"
                text += "".join(traceback.format_list(value)).rstrip()
            else:
                text = repr(value)
            lines.append(f"{key}: {text}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                # Logging itself failed (a broken handler or stream); there
                # is nowhere left to report to but the logger.
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            # The handler runs in the context of the object that failed (a
            # task's, a handle's), so context variables it reads are the ones
            # the failing code saw (CPython gh-96704).
            owner = context.get("task") or context.get("future") or context.get("handle")
            owner_context = getattr(owner, "get_context", None)
            if owner_context is not None:
                owner_context().run(handler, self, context)
            else:
                handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error(
                    "Exception in default exception handler while handling an "
                    "unexpected error in custom exception handler",
                    exc_info=True,
                )

    def report_callback_error(self, handle: Handle, exc: BaseException) -> None:
        """Report an exception that escaped the callback of ``handle``."""
        callback = handle._callback
        described = (
            describe_callback_source(callback, handle._args, self._debug)
            if callback
            else repr(handle)
        )
        context: dict[str, Any] = {
            "message": f"Exception in callback {described}",
            "exception": exc,
            "handle": handle,
        }
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)
