"""``python -m slipstream script.py [args]`` / ``python -m slipstream -m module [args]``.

Runs an ordinary asyncio program with slipstream installed as the loop, the way
``python script.py`` would run it: same ``sys.argv``, ``__main__`` module,
``sys.path[0]`` and exit status.
"""

from __future__ import annotations

import os
import runpy
import sys

from . import install
from .observe.watchdog import ENVIRONMENT_VARIABLE, check_blocking_ms

USAGE = """usage: python -m slipstream [--blocking-ms N] script.py [args...]
       python -m slipstream [--blocking-ms N] -m module [args...]
       python -m slipstream bench [options]    (side-by-side benchmarks; --help)
       python -m slipstream demo               (the examples, then a short benchmark)
       python -m slipstream ps|pstree PID      (the tasks of a process that opted in to inspection)

Runs an asyncio program with slipstream as its event loop.
--blocking-ms N   report each callback that holds the loop over N ms, while it
                  does (as SLIPSTREAM_BLOCKING_MS=N; see docs/observability.md)"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("bench", "demo"):
        from .bench import cli

        return cli.main(args[1:]) if args[0] == "bench" else cli.demo(args[1:])
    if args[0] in ("ps", "pstree"):
        from .observe import taskcli

        return taskcli.main(args)
    if args[0] == "--blocking-ms":
        if len(args) < 3:
            print(USAGE, file=sys.stderr)
            return 2
        check_blocking_ms(float(args[1]))
        # Through the environment, which every slipstream loop made in this
        # process reads (install() makes them through new_event_loop).
        os.environ[ENVIRONMENT_VARIABLE] = args[1]
        args = args[2:]
    install()
    if args[0] == "-m":
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    sys.argv = args
    sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
    runpy.run_path(args[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
