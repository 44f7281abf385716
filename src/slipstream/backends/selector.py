"""Portable backend over :mod:`selectors` (kqueue, poll or select, whatever is best here)."""

from __future__ import annotations

import selectors
from typing import TypeVar

from .base import READABLE, WRITABLE, collect_ready
from .ready import ReadyBackend

T = TypeVar("T")

_MAX_TIMEOUT = 24 * 3600.0


class SelectorBackend(ReadyBackend):
    """Readiness through ``selectors.DefaultSelector``, translated to poll bits."""

    name = "selector"

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        self._selector = selector if selector is not None else selectors.DefaultSelector()
        self.name = f"selector:{type(self._selector).__name__}"

    def fileno(self) -> int:
        return self._selector.fileno() if hasattr(self._selector, "fileno") else -1

    def set_interest(self, fd: int, events: int) -> None:
        mask = 0
        if events & READABLE:
            mask |= selectors.EVENT_READ
        if events & WRITABLE:
            mask |= selectors.EVENT_WRITE
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            key = None
        if key is None:
            if mask:
                self._selector.register(fd, mask)
        elif mask == 0:
            self._selector.unregister(fd)
        elif mask != key.events:
            self._selector.modify(fd, mask)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is not None and timeout > _MAX_TIMEOUT:
            timeout = _MAX_TIMEOUT
        result = []
        for key, mask in self._selector.select(timeout):
            events = 0
            if mask & selectors.EVENT_READ:
                events |= READABLE
            if mask & selectors.EVENT_WRITE:
                events |= WRITABLE
            result.append((key.fd, events))
        return result

    def poll_ready(
        self,
        timeout: float | None,
        readers: dict[int, T],
        writers: dict[int, T],
        ready: list[T],
    ) -> int:
        return collect_ready(self.poll(timeout), readers, writers, ready)

    def close(self) -> None:
        self._selector.close()
