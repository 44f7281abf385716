"""Side-by-side benchmarks of slipstream, asyncio, uvloop and rloop.

``python -m slipstream bench`` runs them (see :mod:`slipstream.bench.cli` and
``docs/benchmarks.md``).  Every measurement runs the loop under test in a fresh
child interpreter (:mod:`slipstream.bench.child`); the parent only plans,
interleaves rounds across loops, drives load generators and reports.
"""
