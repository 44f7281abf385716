"""Transports: the objects that move bytes between a descriptor and a protocol."""
