"""TLS: a sans-I/O record pump and the transport layered on it."""
