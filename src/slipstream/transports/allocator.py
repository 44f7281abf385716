"""How large a read may be: glibc's malloc decides, and it can be taught once.

``sock.recv(n)`` allocates an ``n``-byte bytes object before it knows how much
will arrive, then shrinks it to what did.  Whether a large ``n`` is cheap
depends on the C allocator, not on the kernel:

* glibc serves a block of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB in a new
  process) with its own ``mmap()``, and returns it with ``munmap()``.  Such a
  read costs an mmap, a page fault for each 4 KiB the kernel copies in, and an
  munmap: a 256 KiB read of a 1 KiB message costs ~14 µs more than a 64 KiB
  read, a 100 KiB message ~60 µs more.
* The threshold is *dynamic*: the first time an mmap'ed block is freed,
  glibc raises the threshold to that block's size (and the heap's trim
  threshold to twice as much), so a process that has ever freed a megabyte
  serves large blocks from its heap for good.  A shrunk read buffer never
  teaches it (its size at ``free()`` is what was received), which is why a
  new process reading 256 KiB at a time, as asyncio does, pays the mmap on
  every read until something else frees a large block.

So the first transport teaches it: :func:`large_reads_are_cheap` allocates and
frees one 1 MiB block, once per process.  From then on a 256 KiB read costs
what a 64 KiB one does (measured: 2.82 against 2.83 µs per 1 KiB message on a
socket pair), and a bulk transfer needs half the system calls.  That is the
state any long-running process reaches anyway; the only lasting effect is
that up to 2 MiB of freed heap is kept for reuse instead of being returned.
The compiled socket calls' cached read buffer (``backends/syscalls.pxd``)
follows from the same answer: it is as large as the reads asked of it.

Where the threshold is fixed (``MALLOC_MMAP_THRESHOLD_`` or any other malloc
tunable in the environment disables the dynamic adjustment) or the C library
is not glibc, nothing is assumed: reads stay below 128 KiB, where every
allocator we know serves them from its heap.
"""

from __future__ import annotations

import os

__all__ = ["LARGE_READ", "SMALL_READ", "large_reads_are_cheap", "teach_allocator"]

SMALL_READ = 64 * 1024
"""A read size every allocator serves from its heap."""

LARGE_READ = 256 * 1024
"""The read size once :func:`large_reads_are_cheap` says so (what asyncio reads)."""

# Any of these fixes glibc's thresholds (mallopt semantics): no dynamic
# adjustment happens, so a warm-up would teach nothing.
_MALLOC_ENVIRONMENT = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)

_answer: bool | None = None


def teach_allocator() -> None:
    """Free one block above glibc's initial mmap threshold, raising it for good.

    The block (1 MiB) is mmap'ed; freeing it sets the threshold to its size and
    the heap's trim threshold to twice that.  Elsewhere than glibc, or with a
    fixed threshold, it is a harmless allocation.
    """
    block = bytearray(1 << 20)
    del block


def _threshold_is_dynamic() -> bool:
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # not a name this C library knows: not glibc
        return False
    if not libc.startswith("glibc"):
        return False
    if any(name in os.environ for name in _MALLOC_ENVIRONMENT):
        return False
    return "glibc.malloc." not in os.environ.get("GLIBC_TUNABLES", "")


def large_reads_are_cheap() -> bool:
    """Whether a 256 KiB ``recv`` is served from the heap (teaching glibc so, once)."""
    global _answer
    if _answer is None:
        _answer = _threshold_is_dynamic()
        if _answer:
            teach_allocator()
    return _answer
