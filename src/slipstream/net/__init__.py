"""Networking on the loop core: sockets, name resolution, TCP/Unix/UDP endpoints and servers."""
