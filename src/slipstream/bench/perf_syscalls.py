"""System calls a process makes while it is measured, counted by ``perf stat``.

Callgrind counts a server's user-space instructions and nothing of the kernel.
What a loop costs the kernel is mostly *which* system calls it makes and how
many: every server here moves the same bytes, so the copies and TCP's work are
the same, while an extra ``epoll_wait`` or a write sent as two ``send`` calls
is the loop's doing.  Those counts, like instruction counts, do not move with
the machine's load, so the two together describe a round trip's cost where
the clock is too noisy to.

How: ``perf stat`` attaches to the server with the ``raw_syscalls:sys_enter``
tracepoint (every system call) and one ``syscalls:sys_enter_NAME`` tracepoint
for each call in :data:`NAMED` (what an event loop makes; the rest is counted
as ``other``), its events disabled (``--delay=-1``), and is switched on and off
through its control descriptors, each switch acknowledged, so the window is
exactly the measured part of the run.  (Not every tracepoint: perf takes
~40 ms to remove each one, 13 s for all of them.)  The tracepoints cost the
server a little on each system call and slow nothing else: the server runs at
full speed, unlike under callgrind or strace.  It needs ``perf`` and
permission to read the tracepoints (root, or ``kernel.perf_event_paranoid``
≤ -1).
"""

from __future__ import annotations

import functools
import os
import select
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .processes import BenchError

NAMED = (
    # waiting for readiness
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll", "select",
    "pselect6", "io_uring_enter",
    # moving bytes
    "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
    "recvmmsg", "sendmmsg",
    # connections and descriptors
    "accept4", "close", "shutdown", "ioctl", "fcntl", "getsockopt", "setsockopt",
    # threads and memory
    "futex", "mmap", "munmap", "madvise", "brk",
)  # fmt: skip
"""The system calls counted by name; any other is counted in ``other``."""

TOTAL_EVENT = "raw_syscalls:sys_enter"
_PREFIX = "syscalls:sys_enter_"
ACK_TIMEOUT = 30.0  # seconds perf may take to attach (it answers in ~50 ms)


def available() -> str | None:
    """None if system calls can be counted here, else why not."""
    if shutil.which("perf") is None:
        return "no perf (Debian: apt-get install linux-perf)"
    done = subprocess.run(
        ["perf", "stat", "-x,", "-e", f"{TOTAL_EVENT},{_PREFIX}getpid", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        return f"perf cannot read the syscall tracepoints: {reason}"
    if len(events()) == 1:
        return "perf lists none of the syscall tracepoints by name (perf list tracepoint)"
    return None


@functools.cache
def events() -> tuple[str, ...]:
    """The tracepoints to count: the total, and each name of :data:`NAMED` this kernel has.

    Asked of ``perf list`` once a process: the kernel's tracepoints do not change.
    """
    listed = subprocess.run(
        ["perf", "list", "--raw-dump", "tracepoint"], capture_output=True, text=True, check=False
    ).stdout.split()
    return (TOTAL_EVENT, *(_PREFIX + name for name in NAMED if _PREFIX + name in listed))


def parse(text: str) -> dict[str, int]:
    """``perf stat -x,`` output -> {system call: count}, the calls made only.

    Calls not counted by name are ``other``: the total's count less the named ones.
    """
    counts: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        if fields[2] == TOTAL_EVENT:
            total = int(fields[0])
        elif fields[2].startswith(_PREFIX) and int(fields[0]):
            counts[fields[2][len(_PREFIX) :]] = int(fields[0])
    if total > sum(counts.values()):
        counts["other"] = total - sum(counts.values())
    return counts


class SyscallMeter:
    """Counts the system calls of one process between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._perf: subprocess.Popen[bytes] | None = None
        self._control = -1
        self._ack = -1
        self._directory = ""

    def warmed_up(self, pid: int) -> None:
        """Nothing to do: perf attaches when the measured part starts."""

    def start(self, pid: int) -> None:
        """Attach to ``pid`` (every thread) and count from now on."""
        self._directory = tempfile.mkdtemp(prefix="slipstream-perf-")
        control_read, self._control = os.pipe()
        self._ack, ack_write = os.pipe()
        command = ["perf", "stat", "-x,", "-o", str(Path(self._directory, "counts"))]
        command += ["--delay=-1", f"--control=fd:{control_read},{ack_write}"]
        command += ["-e", ",".join(events()), "-p", str(pid)]
        self._perf = subprocess.Popen(
            command,
            pass_fds=(control_read, ack_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(control_read)
        os.close(ack_write)
        try:
            self._command(b"enable")
        except BaseException:
            self.close()
            raise

    def stop(self, pid: int) -> None:
        """Stop counting; the counts are in :attr:`counts`."""
        perf = self._perf
        if perf is None:
            raise BenchError("the syscall count was stopped before it started")
        try:
            self._command(b"disable")
            perf.send_signal(signal.SIGINT)
            perf.wait(ACK_TIMEOUT)
            self.counts = parse(Path(self._directory, "counts").read_text())
        finally:
            self.close()

    def close(self) -> None:
        """End perf if it still runs and free what the count used."""
        if self._perf is not None:
            if self._perf.poll() is None:
                self._perf.kill()
                self._perf.wait()
            if self._perf.stderr is not None:
                self._perf.stderr.close()
            self._perf = None
        for fd in (self._control, self._ack):
            if fd >= 0:
                os.close(fd)
        self._control = self._ack = -1
        if self._directory:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = ""

    def _command(self, command: bytes) -> None:
        # perf answers "ack" once the events are switched; it answers nothing
        # if it failed to attach (it exits: the read sees the end of the pipe).
        assert self._perf is not None
        os.write(self._control, command + b"\n")
        ready = _readable(self._ack, ACK_TIMEOUT)
        answer = os.read(self._ack, 64) if ready else b""
        if not answer.startswith(b"ack"):
            self._perf.kill()
            _, errors = self._perf.communicate()
            detail = errors.decode(errors="replace").strip() or "no answer"
            raise BenchError(f"perf stat did not {command.decode()} its events: {detail}")


def _readable(fd: int, timeout: float) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)
