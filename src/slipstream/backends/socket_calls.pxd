# Cython declarations for socket_calls.py: its functions compile to C that
# calls the inline system calls of syscalls.pxd.

from . cimport syscalls
