"""``python -m slipstream.servers.hypercorn app:app [options]``: hypercorn on slipstream.

Hypercorn's ``--worker-class`` knows only ``asyncio``, ``uvloop`` and ``trio``,
and takes no loop factory.  Its asyncio worker, though, makes its loop with
``asyncio.Runner()``, which asks the event loop policy; so this command
installs slipstream's policy and hands the arguments, all of hypercorn's own,
to hypercorn's command line.

Hypercorn starts its workers (one by default, ``--workers N``) with
multiprocessing's *spawn* method, and a spawned child imports the parent's
main module under the name ``__mp_main__`` before it runs its target.  Since
that main module is this one, every worker installs the policy before it makes
its loop, and serves on slipstream too.  ``--workers 0`` serves in this process.

In a program of your own, serve hypercorn on slipstream with its API:
``slipstream.run(hypercorn.asyncio.serve(app, config, shutdown_trigger=...))``.
"""

from __future__ import annotations

import sys

from slipstream import install


def main(argv: list[str] | None = None) -> int:
    """Run hypercorn's command line with slipstream as the loop; return its exit status."""
    from hypercorn.__main__ import main as hypercorn_main

    install()
    return hypercorn_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__mp_main__":
    # A worker spawned by hypercorn's supervisor (see the module docstring).
    install()

if __name__ == "__main__":
    sys.exit(main())
