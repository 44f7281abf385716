"""Which manifest tests are in scope: the ones whose failure makes the runner exit non-zero.

Every manifest test is run and reported whatever the scope; the scope only drives the exit status.

- ``all``: the whole manifest.
- ``core``: the loop core through its public API — scheduling, futures and tasks, synchronisation,
  sockets, TCP/UDP/Unix transports and servers, streams, threads — without TLS, subprocesses,
  pipes, ptys, signals and sendfile.  That is the modules in ``CORE_MODULES``, less the
  ``test_events`` tests in ``CORE_EXCLUDED_EVENTS`` (chosen by reading each test's body in
  3.11, 3.12 and 3.13).  Modules that only exist in some versions' manifests (test_server,
  test_staggered, test_eager_task_factory) count where they exist.
"""

from __future__ import annotations

PREFIX = "test.test_asyncio."

SCOPES = ("core", "all")

CORE_MODULES = frozenset(
    {
        "test_base_events",
        "test_buffered_proto",
        "test_context",
        "test_eager_task_factory",
        "test_events",
        "test_futures2",
        "test_locks",
        "test_queues",
        "test_server",
        "test_sock_lowlevel",
        "test_staggered",
        "test_streams",
        "test_taskgroups",
        "test_tasks",
        "test_threads",
        "test_timeouts",
        "test_waitfor",
    }
)

_SSL = "TLS (ssl=...)"
_SIGNAL = "signals (add_signal_handler)"
_PIPE = "pipes (connect_read_pipe / connect_write_pipe)"
_PTY = "ptys through the pipe transports"
_SUBPROCESS = "subprocesses (SubprocessTestsMixin)"

# test_events.ForeignLoopTests methods that are not core, and why.  Tests whose name says
# nothing but that touch one of these areas only incidentally stay in: test_close checks that
# add_signal_handler() raises RuntimeError on a closed loop, and test_connect_accepted_socket
# runs with ssl=None.
CORE_EXCLUDED_EVENTS: dict[str, str] = {
    "test_create_ssl_connection": _SSL,
    "test_create_ssl_unix_connection": _SSL,
    "test_ssl_connect_accepted_socket": _SSL,
    # Only checks the ValueError for ssl_handshake_timeout without ssl: part of the TLS API.
    "test_connect_accepted_socket_ssl_timeout_for_plain_socket": _SSL,
    "test_create_server_ssl": _SSL,
    "test_create_server_ssl_match_failed": _SSL,
    "test_create_server_ssl_verified": _SSL,
    "test_create_server_ssl_verify_failed": _SSL,
    "test_create_unix_server_ssl": _SSL,
    "test_create_unix_server_ssl_verified": _SSL,
    "test_create_unix_server_ssl_verify_failed": _SSL,
    "test_add_signal_handler": _SIGNAL,
    "test_signal_handling_args": _SIGNAL,
    "test_signal_handling_while_selecting": _SIGNAL,
    "test_read_pipe": _PIPE,
    "test_write_pipe": _PIPE,
    "test_write_pipe_disconnect_on_close": _PIPE,
    "test_read_pty_output": _PTY,
    "test_write_pty": _PTY,
    "test_bidirectional_pty": _PTY,
    "test_subprocess_close_after_finish": _SUBPROCESS,
    "test_subprocess_close_client_stream": _SUBPROCESS,
    "test_subprocess_exec": _SUBPROCESS,
    "test_subprocess_exec_invalid_args": _SUBPROCESS,
    "test_subprocess_exitcode": _SUBPROCESS,
    "test_subprocess_interactive": _SUBPROCESS,
    "test_subprocess_kill": _SUBPROCESS,
    "test_subprocess_send_signal": _SUBPROCESS,
    "test_subprocess_shell": _SUBPROCESS,
    "test_subprocess_shell_invalid_args": _SUBPROCESS,
    "test_subprocess_stderr": _SUBPROCESS,
    "test_subprocess_stderr_redirect_to_stdout": _SUBPROCESS,
    "test_subprocess_terminate": _SUBPROCESS,
    "test_subprocess_wait_no_same_group": _SUBPROCESS,
    # Asserts asyncio's private loop._internal_fds/_csock and skips itself on any loop that is
    # not a BaseSelectorEventLoop: it can never pass on a foreign loop.
    "test_internal_fds": "asyncio-private attributes (skips itself on foreign loops)",
}


def module_of(test_id: str) -> str:
    """``test.test_asyncio.test_events.X.test_y`` -> ``test_events``."""
    return test_id.removeprefix(PREFIX).split(".", 1)[0]


def exclusion_reason(test_id: str, scope: str) -> str | None:
    """Why ``test_id`` is out of ``scope``, or None if it is in scope."""
    if scope == "all":
        return None
    if scope != "core":
        raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
    module = module_of(test_id)
    if module not in CORE_MODULES:
        return f"module {module} is not core"
    if module == "test_events":
        reason = CORE_EXCLUDED_EVENTS.get(test_id.rsplit(".", 1)[-1])
        if reason is not None:
            return reason
    return None


def in_scope(test_id: str, scope: str) -> bool:
    """Whether a failure of ``test_id`` fails the run under ``scope``."""
    return exclusion_reason(test_id, scope) is None
