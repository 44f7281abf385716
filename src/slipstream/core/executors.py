"""Running blocking calls in threads: ``run_in_executor`` and the default executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


class ExecutorSupport:
    """The executor half of the loop's API (mixed into the loop core)."""

    _debug: bool

    def __init__(self) -> None:
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False

    if TYPE_CHECKING:  # provided by the loop core

        def _check_closed(self) -> None: ...
        def _check_callback(self, callback: object, method: str) -> None: ...
        def create_future(self) -> asyncio.Future[Any]: ...
        def call_soon_threadsafe(
            self,
            callback: Callable[..., object],
            *args: object,
            context: contextvars.Context | None = None,
        ) -> asyncio.Handle: ...
        def is_closed(self) -> bool: ...

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[*_Ts], _T],
        *args: *_Ts,
    ) -> asyncio.Future[_T]:
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return asyncio.wrap_future(executor.submit(func, *args), loop=self)  # type: ignore[arg-type]

    def set_default_executor(self, executor: Any) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Wait for the default executor's threads; warn if they outlive ``timeout``."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()
        # executor.shutdown(wait=True) blocks, so it runs in a thread of its own.
        thread = threading.Thread(target=self._join_executor, args=(executor, done))
        thread.start()
        try:
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError:
            warnings.warn(
                f"The executor did not finishing joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            executor.shutdown(wait=False)
        else:
            thread.join()

    def _join_executor(
        self, executor: concurrent.futures.ThreadPoolExecutor, done: asyncio.Future[Any]
    ) -> None:
        try:
            executor.shutdown(wait=True)
        except Exception as exc:
            if not self.is_closed():
                self.call_soon_threadsafe(_fail_unless_cancelled, done, exc)
        else:
            if not self.is_closed():
                self.call_soon_threadsafe(_finish_unless_cancelled, done)

    def _shutdown_executor_nowait(self) -> None:
        executor = self._default_executor
        self._default_executor = None
        if executor is not None:
            executor.shutdown(wait=False)


def _finish_unless_cancelled(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fail_unless_cancelled(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
