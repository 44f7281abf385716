"""Pipes and ptys: ``connect_read_pipe`` and ``connect_write_pipe``."""

from __future__ import annotations

from ..core import CoreLoop


class PipeEndpoints(CoreLoop):
    """``connect_read_pipe`` / ``connect_write_pipe``."""
