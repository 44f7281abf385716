"""POSIX-only facilities: pipes, subprocesses and signals."""
