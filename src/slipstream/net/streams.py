"""Stream endpoints: TCP and Unix connections and servers."""

from __future__ import annotations

from ..core import CoreLoop


class StreamEndpoints(CoreLoop):
    """``create_connection``, ``create_server``, Unix variants, ``connect_accepted_socket``."""
