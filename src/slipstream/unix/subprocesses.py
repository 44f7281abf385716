"""Child processes: ``subprocess_exec`` and ``subprocess_shell``.

Reaping children without child watchers
---------------------------------------
asyncio's child watchers (deprecated since 3.12) are process-wide objects
attached to one loop.  Here each loop reaps its own children, with no global
state, so any number of loops in any threads can run subprocesses:

* Where the kernel has ``pidfd_open(2)`` (Linux 5.3+), the loop watches the
  child's pidfd, which becomes readable when the child exits.  Only then do
  we reap it, so nothing ever blocks, no thread is needed, and no SIGCHLD
  handler is installed (which would steal other code's children).  Because
  only we (through the child's ``Popen``) reap it, its pid cannot be reused
  while we hold the pidfd.
* Elsewhere, or if ``pidfd_open`` fails (too many open files, a child that
  was already reaped by someone else), a daemon thread per child blocks in
  ``Popen.wait()`` and hands the status to the loop with
  ``call_soon_threadsafe``, like asyncio's ThreadedChildWatcher.

Reaping always goes through the child's ``Popen`` (``poll()`` / ``wait()``),
whose lock makes it safe against ``Popen.send_signal()`` or ``close()``
polling at the same time: whoever reaps first records the status in the
``Popen``, and the other reads it from there.  ``Popen`` also turns "killed by
signal N" into the return code ``-N``, as asyncio reports it.

If the loop is closed while children still run, their pidfds are handed to
reaper threads, so they do not stay zombies.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..core import CoreLoop
from ..core.errors import logger
from ..transports.subprocess import SubprocessTransport

_P = TypeVar("_P", bound=asyncio.SubprocessProtocol)


def _check_bytes_mode(
    universal_newlines: bool,
    shell: bool,
    want_shell: bool,
    bufsize: int,
    text: Any,
    encoding: Any,
    errors: Any,
) -> None:
    """The checks asyncio makes, in its order: the pipes carry unbuffered bytes."""
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bool(shell) != want_shell:
        raise ValueError(f"shell must be {want_shell}")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


def _describe_stdio(stdin: Any, stdout: Any, stderr: Any) -> str:
    names = {subprocess.PIPE: "pipe", subprocess.STDOUT: "stdout", subprocess.DEVNULL: "devnull"}
    parts = []
    for label, value in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
        if value is not None:
            parts.append(f"{label}={names.get(value, repr(value))}")
    return " ".join(parts)


def _reap_in_thread(proc: subprocess.Popen[bytes], on_exit: Callable[[int], None] | None) -> None:
    """Wait for ``proc`` in a daemon thread; then ``on_exit(returncode)`` (from that thread)."""

    def wait() -> None:
        returncode = proc.wait()
        if on_exit is not None:
            on_exit(returncode)

    threading.Thread(target=wait, name=f"slipstream-waitpid-{proc.pid}", daemon=True).start()


class SubprocessSupport(CoreLoop):
    """``subprocess_exec`` / ``subprocess_shell``, with per-loop child reaping."""

    # pidfd -> the child it watches; made on first use.
    _child_pidfds: dict[int, tuple[subprocess.Popen[bytes], SubprocessTransport]] | None = None

    async def subprocess_exec(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], _P],
        program: Any,
        *args: Any,
        stdin: Any = subprocess.PIPE,
        stdout: Any = subprocess.PIPE,
        stderr: Any = subprocess.PIPE,
        universal_newlines: bool = False,
        shell: bool = False,
        bufsize: int = 0,
        encoding: Any = None,
        errors: Any = None,
        text: Any = None,
        **kwargs: Any,
    ) -> tuple[SubprocessTransport, _P]:
        """Run ``program`` with ``args`` (no shell); returns ``(transport, protocol)``."""
        _check_bytes_mode(universal_newlines, shell, False, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        if self.get_debug():
            # Not the arguments: they may hold secrets, and be long.
            logger.debug("execute program %r %s", program, _describe_stdio(stdin, stdout, stderr))
        transport = await self._spawn(
            protocol, (program, *args), False, stdin, stdout, stderr, bufsize, **kwargs
        )
        return transport, protocol

    async def subprocess_shell(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], _P],
        cmd: bytes | str,
        *,
        stdin: Any = subprocess.PIPE,
        stdout: Any = subprocess.PIPE,
        stderr: Any = subprocess.PIPE,
        universal_newlines: bool = False,
        shell: bool = True,
        bufsize: int = 0,
        encoding: Any = None,
        errors: Any = None,
        text: Any = None,
        **kwargs: Any,
    ) -> tuple[SubprocessTransport, _P]:
        """Run ``cmd`` through the shell; returns ``(transport, protocol)``."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        _check_bytes_mode(universal_newlines, shell, True, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        if self.get_debug():
            logger.debug("run shell command %r %s", cmd, _describe_stdio(stdin, stdout, stderr))
        transport = await self._spawn(protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs)
        return transport, protocol

    async def _spawn(
        self,
        protocol: asyncio.SubprocessProtocol,
        args: Any,
        shell: bool,
        stdin: Any,
        stdout: Any,
        stderr: Any,
        bufsize: int,
        extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SubprocessTransport:
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        waiter: asyncio.Future[None] = self.create_future()
        transport = SubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra, **kwargs
        )
        transport.start(waiter)
        self._watch_child(transport)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            # Cancelled or failed while connecting the pipes: kill the child
            # and wait for the end, so nothing (process, pipe) is left behind.
            transport.close()
            await transport._wait()
            raise
        if self.get_debug():
            logger.info("process started: %r", transport)
        return transport

    # -- reaping -----------------------------------------------------------------------

    def _watch_child(self, transport: SubprocessTransport) -> None:
        proc = transport.popen
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                pidfd: int = pidfd_open(proc.pid)
            except OSError:
                pass
            else:
                try:
                    self.watch_readable(pidfd, self._child_ready, pidfd)
                except BaseException:
                    os.close(pidfd)
                    raise
                pidfds = self._child_pidfds
                if pidfds is None:
                    pidfds = self._child_pidfds = {}
                pidfds[pidfd] = (proc, transport)
                return

        def on_exit(returncode: int) -> None:
            try:
                self.call_soon_threadsafe(transport.child_exited, returncode)
            except RuntimeError:
                pass  # the loop was closed meanwhile: nobody is waiting

        _reap_in_thread(proc, on_exit)

    def _child_ready(self, pidfd: int) -> None:
        # The child has exited: it is a zombie (or someone already reaped it
        # through its Popen), so this poll() does not block.
        self.unwatch_readable(pidfd)
        pidfds = self._child_pidfds
        assert pidfds is not None
        proc, transport = pidfds.pop(pidfd)
        os.close(pidfd)
        returncode = proc.poll()
        if returncode is None:
            # Another thread holds the Popen's wait lock (it is reaping this
            # very child right now): let a thread wait for it to finish.
            def on_exit(returncode: int) -> None:
                try:
                    self.call_soon_threadsafe(transport.child_exited, returncode)
                except RuntimeError:
                    pass

            _reap_in_thread(proc, on_exit)
            return
        transport.child_exited(returncode)

    def close(self) -> None:
        """Close the loop; children still running are left to reaper threads."""
        super().close()
        pidfds = self._child_pidfds
        if pidfds:
            self._child_pidfds = None
            for pidfd, (proc, _) in pidfds.items():
                os.close(pidfd)
                _reap_in_thread(proc, None)
