"""The transport of a child process: what ``loop.subprocess_exec`` returns.

A :class:`SubprocessTransport` owns a :class:`subprocess.Popen` and up to three
pipe transports (stdin, stdout, stderr).  It turns their events into the
:class:`asyncio.SubprocessProtocol` calls, in asyncio's order, because
``asyncio.subprocess.Process`` (and code written against asyncio) relies on it:

1. The pipes are connected first (stdin, then stdout, then stderr), each
   through ``connect_*_pipe``; only then is ``connection_made`` scheduled.
   Anything that happened meanwhile (data, a closed pipe, the exit) was queued
   and is replayed after ``connection_made``, in the order it happened.
2. ``pipe_data_received(fd, data)`` and ``pipe_connection_lost(fd, exc)`` per
   pipe; ``process_exited()`` once the exit status is known.
3. ``connection_lost(None)`` only when *both* the process has exited and every
   pipe is closed; then ``wait()`` returns.

Who learns of the exit (a pidfd or a waiting thread) is the loop's business
(:mod:`slipstream.unix.subprocesses`); it calls :meth:`child_exited`.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import warnings
from collections.abc import Callable
from typing import Any

from ..core.errors import logger


class _PipeRelay(asyncio.BaseProtocol):
    """The protocol of one of the child's pipes: forwards its events to the transport."""

    def __init__(self, owner: SubprocessTransport, fd: int) -> None:
        self.owner: SubprocessTransport | None = owner
        self.fd = fd
        self.pipe: Any = None
        self.disconnected = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.fd} pipe={self.pipe!r}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.pipe = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.disconnected = True
        owner = self.owner
        self.owner = None
        if owner is not None:
            owner._pipe_connection_lost(self.fd, exc)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.get_protocol().pause_writing()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.get_protocol().resume_writing()


class _ReadPipeRelay(_PipeRelay, asyncio.Protocol):
    """The protocol of the child's stdout or stderr."""

    def data_received(self, data: bytes) -> None:
        if self.owner is not None:
            self.owner._pipe_data_received(self.fd, data)


class SubprocessTransport(asyncio.SubprocessTransport):
    """A running child process and its pipes (see the module docstring for the order)."""

    _extra: dict[str, Any]  # asyncio.BaseTransport's, undeclared in typeshed

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.SubprocessProtocol,
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        extra: dict[str, Any] | None = None,
        **popen_kwargs: Any,
    ) -> None:
        super().__init__(extra)
        self._closed = False
        self._protocol: Any = protocol
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._returncode: int | None = None
        self._exit_waiters: list[asyncio.Future[int]] | None = []
        # Protocol calls made before connection_made(), replayed after it.
        self._pending_calls: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] | None
        self._pending_calls = collections.deque()
        # fd -> its relay; None until that pipe is connected.
        self._pipes: dict[int, _PipeRelay | None] = {}
        self._finished = False
        if stdin == subprocess.PIPE:
            self._pipes[0] = None
        if stdout == subprocess.PIPE:
            self._pipes[1] = None
        if stderr == subprocess.PIPE:
            self._pipes[2] = None
        try:
            self._proc = subprocess.Popen(
                args,
                shell=shell,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                universal_newlines=False,
                bufsize=bufsize,
                **popen_kwargs,
            )
        except BaseException:
            self.close()
            raise
        self._pid = self._proc.pid
        self._extra["subprocess"] = self._proc
        if loop.get_debug():
            program = args if isinstance(args, (bytes, str)) else args[0]
            logger.debug("process %r created: pid %s", program, self._pid)

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        """The :class:`subprocess.Popen` of the child."""
        assert self._proc is not None
        return self._proc

    def start(self, waiter: asyncio.Future[None]) -> None:
        """Connect the pipes in a task; ``waiter`` gets the outcome."""
        assert self._loop is not None
        self._loop.create_task(self._connect_pipes(waiter))

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._closed:
            info.append("closed")
        if self._pid is not None:
            info.append(f"pid={self._pid}")
        if self._returncode is not None:
            info.append(f"returncode={self._returncode}")
        elif self._pid is not None:
            info.append("running")
        else:
            info.append("not started")
        stdin = self._pipes.get(0)
        if stdin is not None:
            info.append(f"stdin={stdin.pipe}")
        stdout = self._pipes.get(1)
        stderr = self._pipes.get(2)
        if stdout is not None and stderr is stdout:
            info.append(f"stdout=stderr={stdout.pipe}")
        else:
            if stdout is not None:
                info.append(f"stdout={stdout.pipe}")
            if stderr is not None:
                info.append(f"stderr={stderr.pipe}")
        return "<{}>".format(" ".join(info))

    # -- the SubprocessTransport API --------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand further events to ``protocol``."""
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol that receives this transport's events."""
        return self._protocol  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def get_pid(self) -> int:
        """The child's process id."""
        return self._pid  # type: ignore[return-value]

    def get_returncode(self) -> int | None:
        """The exit status once known (``-N`` if killed by signal N), else None."""
        return self._returncode

    def get_pipe_transport(self, fd: int) -> Any:
        """The transport of pipe ``fd`` (0, 1 or 2), or None if it is not a pipe."""
        relay = self._pipes.get(fd)
        return relay.pipe if relay is not None else None

    def send_signal(self, signal: int) -> None:
        """Send ``signal`` to the child (nothing happens once it has been reaped).

        Raises ProcessLookupError once the transport has finished, as asyncio does.
        """
        proc = self._check_proc()
        # Popen.send_signal() polls first and sends nothing to a child that
        # has been reaped, whose pid the kernel may already have reused.
        # Polling may reap the child here; the exit watcher copes with that.
        proc.send_signal(signal)

    def terminate(self) -> None:
        """Send SIGTERM to the child."""
        self._check_proc().terminate()

    def kill(self) -> None:
        """Send SIGKILL to the child."""
        self._check_proc().kill()

    def close(self) -> None:
        """Close the pipes, and kill the child if it is still running."""
        if self._closed:
            return
        self._closed = True
        for relay in self._pipes.values():
            if relay is not None and relay.pipe is not None:
                relay.pipe.close()
        proc = self._proc
        if proc is not None and self._returncode is None and proc.poll() is None:
            loop = self._loop
            if loop is not None and loop.get_debug():
                logger.warning("Close running child process: kill %r", self)
            try:
                proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
            # _proc stays: the pipes may still be connecting.

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()

    async def _wait(self) -> int:
        """Wait for the end (exit seen and pipes closed); the return code.

        ``asyncio.subprocess.Process.wait()`` calls this by name.
        """
        if self._returncode is not None:
            return self._returncode
        assert self._loop is not None and self._exit_waiters is not None
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._exit_waiters.append(waiter)
        return await waiter

    # -- events --------------------------------------------------------------------------

    def child_exited(self, returncode: int) -> None:
        """Called by the loop once the child has been reaped."""
        if self._returncode is not None or self._loop is None:
            return
        if self._loop.get_debug():
            logger.info("%r exited with return code %r", self, returncode)
        self._returncode = returncode
        self._call(self._protocol.process_exited)
        self._try_finish()

    def _check_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ProcessLookupError()
        return self._proc

    async def _connect_pipes(self, waiter: asyncio.Future[None]) -> None:
        try:
            proc = self._proc
            loop = self._loop
            assert proc is not None and loop is not None
            if proc.stdin is not None:
                _, relay = await loop.connect_write_pipe(lambda: _PipeRelay(self, 0), proc.stdin)
                self._pipes[0] = relay
            if proc.stdout is not None:
                _, read_relay = await loop.connect_read_pipe(
                    lambda: _ReadPipeRelay(self, 1), proc.stdout
                )
                self._pipes[1] = read_relay
            if proc.stderr is not None:
                _, read_relay = await loop.connect_read_pipe(
                    lambda: _ReadPipeRelay(self, 2), proc.stderr
                )
                self._pipes[2] = read_relay
            pending = self._pending_calls
            assert pending is not None
            loop.call_soon(self._protocol.connection_made, self)
            for callback, args in pending:
                loop.call_soon(callback, *args)
            self._pending_calls = None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if not waiter.cancelled():
                waiter.set_exception(exc)
        else:
            if not waiter.cancelled():
                waiter.set_result(None)

    def _call(self, callback: Callable[..., object], *args: Any) -> None:
        if self._pending_calls is not None:
            self._pending_calls.append((callback, args))
        else:
            assert self._loop is not None
            self._loop.call_soon(callback, *args)

    def _pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _pipe_data_received(self, fd: int, data: bytes) -> None:
        self._call(self._protocol.pipe_data_received, fd, data)

    def _try_finish(self) -> None:
        if self._finished or self._returncode is None:
            return
        if all(relay is not None and relay.disconnected for relay in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            for waiter in self._exit_waiters or ():
                if not waiter.cancelled():
                    waiter.set_result(self._returncode)  # type: ignore[arg-type]
            self._exit_waiters = None
            self._loop = None
            self._proc = None
            self._protocol = None
