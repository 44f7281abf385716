"""The loop core: scheduling, timers, readiness, lifecycle, errors, executors."""

from .handles import Handle, TimerHandle
from .loop import CoreLoop, fileobj_to_fd

__all__ = ["CoreLoop", "Handle", "TimerHandle", "fileobj_to_fd"]
