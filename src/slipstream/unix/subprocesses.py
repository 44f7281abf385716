"""Child processes: ``subprocess_exec`` and ``subprocess_shell``."""

from __future__ import annotations

from ..core import CoreLoop


class SubprocessSupport(CoreLoop):
    """``subprocess_exec`` / ``subprocess_shell``."""
