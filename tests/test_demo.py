"""``python -m slipstream demo``'s examples half: every example shown, none able to hang it.

The demo once ran each example and waited: ``webserver.py`` serves until a signal, so the
README's first command never finished. These tests hold the runner to what it promises:
servers are started, asked and stopped; a script that does not end is stopped at the
deadline and reported; an example that cannot run here is skipped with the reason, not
counted as a failure.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from slipstream.bench import demo


def write(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


def test_every_special_example_exists() -> None:
    # A renamed server example would fall back to "script" and only the deadline would end it.
    assert sorted(demo.KINDS) == sorted(
        name for name in demo.KINDS if (demo.EXAMPLES / name).is_file()
    )
    assert all(example.kind in demo.RUNNERS for example in demo.KINDS.values())


def test_a_script_that_never_ends_is_stopped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "DEADLINE", 3.0)
    write(tmp_path, "forever.py", "import asyncio\nasyncio.run(asyncio.sleep(3600))\n")
    write(tmp_path, "quick.py", "import asyncio\nprint(asyncio.run(asyncio.sleep(0, 'done')))\n")
    assert demo.run_examples(tmp_path) == 1
    out = capfd.readouterr().out
    assert "forever.py failed: still running after 3 s: stopped" in out
    assert "\ndone\n" in out
    assert "quick.py                 ok" in out


def test_an_example_that_cannot_run_here_is_skipped_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "needs_lib.py", "import no_such_library_anywhere\n")
    write(tmp_path, "needs_db.py", "raise SystemExit('must not run')\n")
    kinds = {
        "needs_lib.py": demo.Example(needs=("no_such_library_anywhere",)),
        "needs_db.py": demo.Example(
            needs_env="SLIPSTREAM_TEST_NO_SUCH_DSN", env_hint="a server's address"
        ),
    }
    monkeypatch.setattr(demo, "KINDS", kinds)
    monkeypatch.delenv("SLIPSTREAM_TEST_NO_SUCH_DSN", raising=False)
    assert demo.run_examples(tmp_path) == 0
    out = capfd.readouterr().out
    assert "skipped: needs no_such_library_anywhere (pip install no_such_library_anywhere)" in out
    assert "skipped: needs SLIPSTREAM_TEST_NO_SUCH_DSN, a server's address\n" in out
    assert "must not run" not in out


def test_the_webserver_example_is_served_asked_and_stopped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = demo.KINDS["webserver.py"]
    outcome = demo.run_server(demo.EXAMPLES / "webserver.py", example)
    out = capsys.readouterr().out
    assert outcome.ok, (outcome, out)
    assert "answered 3 requests" in out
    assert '(the demo) GET /loop -> 200 {"loop": "slipstream.event_loop.EventLoop"}' in out


def test_the_asgi_example_is_served_by_uvicorn_on_slipstream(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = demo.KINDS["asgi_app.py"]
    outcome = demo.run_asgi(demo.EXAMPLES / "asgi_app.py", example)
    out = capsys.readouterr().out
    assert outcome.ok, (outcome, out)
    assert '"loop": "slipstream.event_loop.EventLoop"' in out


def test_a_server_that_dies_before_answering_is_a_failure(tmp_path: Path) -> None:
    script = write(tmp_path, "dies.py", "raise SystemExit(3)\n")
    outcome = demo.run_server(script, demo.Example(kind="server"))
    assert not outcome.ok
    assert outcome.note == "RuntimeError: the server exited with status 3"


def test_a_server_that_ignores_ctrl_c_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "STOP_GRACE", 1.0)
    script = write(
        tmp_path,
        "stubborn.py",
        """\
        import asyncio, signal, sys

        async def main(port: int) -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\\r\\n\\r\\n")
                writer.write(b"HTTP/1.0 200 OK\\r\\ncontent-length: 3\\r\\n\\r\\nyes")
                writer.close()
            server = await asyncio.start_server(answer, "127.0.0.1", port)
            print("serving", flush=True)
            await server.serve_forever()

        asyncio.run(main(int(sys.argv[2])))
        """,
    )
    outcome = demo.run_server(script, demo.Example(kind="server"))
    out = capsys.readouterr().out
    assert not outcome.ok
    assert outcome.note == "exit status -9 after SIGINT"
    assert "serving" in out
    assert "(the demo) GET / -> 200 yes" in out


def test_a_chatty_server_is_not_blocked_by_its_own_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # More than a pipe holds (64 KiB), printed before the server answers: read
    # through a pipe nobody drains, the server would block and never answer.
    monkeypatch.setattr(demo, "DEADLINE", 20.0)
    script = write(
        tmp_path,
        "chatty.py",
        """\
        import asyncio, sys

        async def main(port: int) -> None:
            for number in range(4096):
                print(f"line {number:05d} " + "x" * 50, flush=True)
            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\\r\\n\\r\\n")
                writer.write(b"HTTP/1.0 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")
                writer.close()
            server = await asyncio.start_server(answer, "127.0.0.1", port)
            async with server:
                await server.serve_forever()

        try:
            asyncio.run(main(int(sys.argv[2])))
        except KeyboardInterrupt:
            print("stopped")
        """,
    )
    outcome = demo.run_server(script, demo.Example(kind="server"))
    out = capsys.readouterr().out
    assert "(the demo) GET / -> 200 ok" in out
    assert "line 04095 " in out
    assert out.count(" xxxxx") == 4096
    # (Exit status 0: the script catches the KeyboardInterrupt SIGINT raises.)
    assert outcome.ok, (outcome, out[-300:])
