"""The opt-in inspection endpoint: a process answers "what are your tasks?" on a Unix socket.

A process opts in with ``slipstream.run(..., inspect=True)`` or ``SLIPSTREAM_INSPECT=1`` (then
every loop made by ``slipstream.new_event_loop()`` is watched), or by calling
:func:`watch_loop` on any loop, asyncio's own included. The first watched loop starts a daemon
thread that listens on ``<runtime dir>/<pid>.sock``:

- the runtime dir is ``$XDG_RUNTIME_DIR/slipstream``, else ``<temp dir>/slipstream-<uid>``; it is
  made with mode 0700 and refused unless it is a real directory owned by this user with no
  access for others; the socket itself is mode 0600, and a peer whose uid (``SO_PEERCRED``) is
  not this process's is answered with an error and nothing else;
- the protocol is read-only: a client sends ``snapshot\\n`` and receives one JSON document, the
  :class:`~slipstream.observe.tasktree.TaskTree` of each watched loop; any other request gets
  an error. Nothing a client sends reaches the program;
- the snapshot is taken *on the loop's thread* by a callback sent with
  ``call_soon_threadsafe``, so it is consistent. If the loop does not run that callback within
  :data:`LOOP_ANSWER_TIMEOUT` seconds (a callback is blocking it), the server reads the tasks
  from its own thread instead, marks the tree ``source="inspector-thread"`` and adds the loop
  thread's current stack (``sys._current_frames()``): where the loop is stuck;
- the socket is removed when the last watched loop is unwatched (``slipstream.run`` does this
  when it returns) and at interpreter exit.

:func:`fetch_task_trees` is the client (``python -m slipstream ps|pstree PID``).
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import os
import select
import socket
import stat
import struct
import sys
import tempfile
import threading
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .tasktree import MAX_STACK_DEPTH, CodeLocation, TaskTree, dump_tasks

ENV_VAR = "SLIPSTREAM_INSPECT"
LOOP_ANSWER_TIMEOUT = 1.0  # seconds the server waits for a loop to take its own snapshot
CLIENT_TIMEOUT = 10.0  # seconds a client waits for the whole answer
REQUEST = b"snapshot\n"
_MAX_REQUEST = 64  # bytes; a request is one short line
_PROTOCOL_VERSION = 1


class InspectionError(Exception):
    """A process could not be inspected; the message says why, for a person."""


class NoSuchProcessError(InspectionError):
    """No process has that pid."""


class NotInspectableError(InspectionError):
    """The process did not opt in to inspection, or its endpoint does not answer."""


class InspectionPermissionError(InspectionError):
    """The process, or its socket, belongs to another user."""


def inspection_requested() -> bool:
    """True when ``SLIPSTREAM_INSPECT`` asks for inspection (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def socket_dirs(uid: int | None = None) -> list[Path]:
    """Where the inspection sockets of user ``uid`` (default: this one) may be, in the order a
    server chooses and a client looks. ``$XDG_RUNTIME_DIR`` is this user's, so only then."""
    own = os.getuid()
    uid = own if uid is None else uid
    dirs = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if uid == own and os.path.isabs(runtime):
        dirs.append(Path(runtime) / "slipstream")
    dirs.append(Path(tempfile.gettempdir()) / f"slipstream-{uid}")
    return dirs


def socket_path(pid: int) -> Path:
    """The socket this user's process ``pid`` listens on, once it is being inspected."""
    return socket_dirs()[0] / f"{pid}.sock"


def private_dir(path: Path) -> Path:
    """Make ``path`` (mode 0700) or check an existing one is this user's alone; return it."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)  # lstat: a symlink planted by someone else is refused, not followed
    if not stat.S_ISDIR(info.st_mode):
        raise InspectionError(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise InspectionError(f"{path} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        raise InspectionError(f"{path} is open to other users (mode {info.st_mode & 0o777:o})")
    return path


@dataclasses.dataclass
class _Watched:
    loop: weakref.ref[asyncio.AbstractEventLoop]
    thread_ident: int  # threading.get_ident() of the thread that runs the loop
    native_id: int


class _Server:
    """The listening socket and the daemon thread that answers on it."""

    def __init__(self, path: Path, snapshot: Callable[[], list[TaskTree]]) -> None:
        self.path = path
        self._snapshot = snapshot
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if path.exists() or path.is_symlink():
                path.unlink()  # named by our own pid: left by a process that died
            self._listener.bind(str(path))
            os.chmod(path, 0o600)  # inside a 0700 directory, so nobody connected meanwhile
            self._listener.listen(8)
        except BaseException:
            self._listener.close()
            raise
        self._inode = os.stat(path).st_ino
        self._owner_pid = os.getpid()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._serve, name=f"slipstream-inspector {path}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked child must not remove its parent's socket
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._listener.close()

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            events = dict(poller.poll())
            if self._wake_r in events:
                return
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    self._answer(conn)
                except OSError:
                    pass  # the client went away; the next one is served as usual

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        peer_uid = _peer_uid(conn)
        if peer_uid is not None and peer_uid != os.getuid():
            reply: dict[str, Any] = {"error": f"this process answers only uid {os.getuid()}"}
        elif _read_request(conn) != REQUEST:
            reply = {"error": "unknown request; the only request is 'snapshot'"}
        else:
            reply = {
                "version": _PROTOCOL_VERSION,
                "pid": os.getpid(),
                "loops": [tree.to_dict() for tree in self._snapshot()],
            }
        conn.sendall(json.dumps(reply).encode() + b"\n")
        # Closing with unread bytes would reset the connection and lose the reply: read what
        # the client sent beyond the request line (a little) until it closes.
        conn.shutdown(socket.SHUT_WR)
        for _ in range(64):
            if not conn.recv(4096):
                break


def _peer_uid(conn: socket.socket) -> int | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None  # not Linux: the socket's mode and its directory's are the guard
    pid_uid_gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, 12))
    return int(pid_uid_gid[1])


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < _MAX_REQUEST:
        chunk = conn.recv(_MAX_REQUEST - len(data))
        if not chunk:
            break
        data += chunk
    return data


class _Registry:
    """The watched loops of this process, and the server that exists while there are any."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[int, _Watched] = {}
        self._server: _Server | None = None

    def watch(self, loop: asyncio.AbstractEventLoop) -> Path:
        with self._lock:
            self._watched[id(loop)] = _Watched(
                weakref.ref(loop), threading.get_ident(), threading.get_native_id()
            )
            if self._server is None:
                try:
                    path = socket_path(os.getpid())
                    private_dir(path.parent)
                    self._server = _Server(path, self.snapshot)
                except BaseException:
                    del self._watched[id(loop)]
                    raise
            return self._server.path

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._watched.pop(id(loop), None)
            self._prune()
            server = self._server if not self._watched else None
            if server is not None:
                self._server = None
        if server is not None:
            server.stop()

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            self._watched.clear()
        if server is not None:
            server.stop()

    def forget_after_fork(self) -> None:
        # A forked child has none of the parent's threads: it starts unwatched.
        self._lock = threading.Lock()
        self._watched = {}
        self._server = None

    def snapshot(self) -> list[TaskTree]:
        with self._lock:
            self._prune()
            watched = list(self._watched.values())
        trees = []
        for entry in watched:
            loop = entry.loop()
            if loop is not None and not loop.is_closed():
                trees.append(_snapshot_of(loop, entry))
        return trees

    def _prune(self) -> None:
        for key, entry in list(self._watched.items()):
            loop = entry.loop()
            if loop is None or loop.is_closed():
                del self._watched[key]


def _snapshot_of(loop: asyncio.AbstractEventLoop, entry: _Watched) -> TaskTree:
    """The loop's tree, taken on its thread if it answers in time, else from this thread."""
    if not loop.is_running():
        tree = dump_tasks(loop, source="inspector-thread", thread_id=entry.native_id)
        return dataclasses.replace(
            tree, note="the loop was not running; tasks were read from another thread"
        )
    answered = threading.Event()
    result: list[TaskTree] = []
    abandoned = False

    def take_on_loop() -> None:
        if abandoned:
            return
        entry.thread_ident, entry.native_id = threading.get_ident(), threading.get_native_id()
        try:
            result.append(dump_tasks(loop))
        finally:
            answered.set()

    try:
        loop.call_soon_threadsafe(take_on_loop)
    except RuntimeError:
        pass  # closed meanwhile: read it from here, like a blocked loop
    else:
        if answered.wait(LOOP_ANSWER_TIMEOUT) and result:
            return result[0]
    abandoned = True
    tree = dump_tasks(loop, source="inspector-thread", thread_id=entry.native_id)
    return dataclasses.replace(
        tree,
        loop_thread_stack=_thread_stack(entry.thread_ident),
        note=f"the loop did not run the snapshot callback within {LOOP_ANSWER_TIMEOUT:g} s; "
        "tasks were read from another thread while the loop ran on",
    )


def _thread_stack(thread_ident: int) -> tuple[CodeLocation, ...]:
    frame: types.FrameType | None = sys._current_frames().get(thread_ident)
    stack: list[CodeLocation] = []
    while frame is not None and len(stack) < MAX_STACK_DEPTH:
        code = frame.f_code
        stack.append(CodeLocation(code.co_qualname, code.co_filename, frame.f_lineno or 0))
        frame = frame.f_back
    return tuple(reversed(stack))


_registry = _Registry()
atexit.register(_registry.stop)
os.register_at_fork(after_in_child=_registry.forget_after_fork)


def watch_loop(loop: asyncio.AbstractEventLoop) -> Path:
    """Answer inspection requests for ``loop`` from now on; returns the socket's path.

    Call it on the thread that will run the loop (where the loop is stuck is read from that
    thread's stack). Raises :class:`InspectionError` if the runtime dir is not private.
    """
    return _registry.watch(loop)


def unwatch_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Stop answering for ``loop`` (no-op if unwatched); the last one takes the socket along."""
    _registry.unwatch(loop)


def fetch_task_trees(pid: int, *, timeout: float = CLIENT_TIMEOUT) -> list[TaskTree]:
    """Ask process ``pid`` for the task trees of its watched loops.

    Raises :class:`NoSuchProcessError`, :class:`NotInspectableError`,
    :class:`InspectionPermissionError` or :class:`InspectionError` with a message for a person.
    """
    if pid <= 0:
        raise NoSuchProcessError(f"{pid} is not a process id")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise NoSuchProcessError(f"no process with pid {pid}") from None
    except PermissionError:
        raise InspectionPermissionError(
            f"process {pid} belongs to another user; it answers only its own user"
        ) from None
    path = _existing_socket(pid)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
        except PermissionError:
            raise InspectionPermissionError(
                f"no permission to open {path}: process {pid} answers only its own user"
            ) from None
        except ConnectionRefusedError:
            raise NotInspectableError(
                f"process {pid} does not answer on {path} (a socket left by an earlier process?)"
            ) from None
        conn.sendall(REQUEST)
        reply = _read_reply(conn, pid)
    if "error" in reply:
        raise InspectionError(f"process {pid} refused: {reply['error']}")
    try:
        return [TaskTree.from_dict(item) for item in reply["loops"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InspectionError(f"process {pid} sent a malformed snapshot ({exc!r})") from None


def _existing_socket(pid: int) -> Path:
    try:
        owner: int | None = os.stat(f"/proc/{pid}").st_uid  # Linux: whose dir to look in
    except OSError:
        owner = None
    dirs = socket_dirs(owner)
    for directory in dirs:
        path = directory / f"{pid}.sock"
        try:
            os.stat(path)
        except PermissionError:
            raise InspectionPermissionError(
                f"no permission to open {directory}: process {pid} answers only its own user"
            ) from None
        except FileNotFoundError:
            continue
        return path
    raise NotInspectableError(
        f"process {pid} is not open to inspection: start it with "
        f"slipstream.run(..., inspect=True) or {ENV_VAR}=1 "
        f"(looked for {' and '.join(str(d / f'{pid}.sock') for d in dirs)})"
    )


def _read_reply(conn: socket.socket, pid: int) -> dict[str, Any]:
    chunks = []
    try:
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        raise InspectionError(f"process {pid} did not answer within the timeout") from None
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise InspectionError(f"process {pid} sent something that is not a snapshot") from None
    if not isinstance(reply, dict):
        raise InspectionError(f"process {pid} sent something that is not a snapshot")
    return reply
