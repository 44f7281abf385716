"""Signal handlers: ``add_signal_handler`` / ``remove_signal_handler``."""

from __future__ import annotations

from ..core import CoreLoop


class SignalHandling(CoreLoop):
    """``add_signal_handler`` / ``remove_signal_handler``."""
