"""Reliability under load, faults and bad input (issue 14).

Each scenario is an ``async def`` that takes a :class:`~tests.stress.common.Scale`
and returns its figures; it raises ``AssertionError`` when a guarantee fails.
pytest runs the short scale on every loop (``tests/stress/test_*.py``);
``python -m tests.stress --full`` runs the full scale and prints the figures
that docs/reliability.md quotes.
"""
