"""Run slipstream under the servers people deploy: uvicorn, gunicorn, hypercorn, aiohttp.

Each server is one flag or one argument away; only gunicorn and hypercorn need
code of ours, and it lives in a module named after the server, so importing
this package imports no server:

* uvicorn: ``uvicorn app:app --loop slipstream:new_event_loop``.  uvicorn
  imports a ``--loop`` value that is not one of its own names as
  ``module:attribute`` and uses it as the loop factory, so the public
  :func:`slipstream.new_event_loop` is the whole integration (with
  ``--workers N`` and ``--reload`` too: each process uvicorn starts imports it
  again).
* gunicorn: ``gunicorn -k slipstream.servers.gunicorn.SlipstreamWorker app:app``
  (:mod:`slipstream.servers.gunicorn`, built on uvicorn-worker's worker).
* hypercorn: ``python -m slipstream.servers.hypercorn app:app [options]``
  (:mod:`slipstream.servers.hypercorn`): hypercorn's own command line, every
  worker on slipstream.  Hypercorn's ``--worker-class`` only knows asyncio,
  uvloop and trio.
* aiohttp: ``web.run_app(app, loop=slipstream.new_event_loop())``, or an
  ``AppRunner`` inside ``slipstream.run(main())``; nothing of ours is needed.

Which exit status each server gives on SIGTERM and SIGINT is in
``docs/servers.md``, with the tests that check it on both loops.
"""
