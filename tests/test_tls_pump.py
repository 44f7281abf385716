"""The sans-I/O TLS pump: a client pump and a server pump talking purely in memory.

No socket, no loop, no clock: each test moves ciphertext between the two
pumps by hand, so every state transition happens exactly where the test says.
"""

from __future__ import annotations

import hashlib
import os
import ssl

import pytest

from slipstream.tls.pump import TRANSITIONS, TLSEvent, TLSPump, TLSState, TLSStateError
from tests.test_tls_certs import tls_material

S = TLSState


def state(pump: TLSPump) -> TLSState:
    """The pump's state (a call, so that mypy does not narrow it between steps)."""
    return pump.state


def make_pair(
    hostname: str = "localhost", *, version: ssl.TLSVersion | None = None
) -> tuple[TLSPump, TLSPump]:
    material = tls_material()
    client_ctx = material.client_context()
    server_ctx = material.server_context()
    if version is not None:
        client_ctx.maximum_version = version
        server_ctx.maximum_version = version
    client = TLSPump(client_ctx, server_hostname=hostname)
    server = TLSPump(server_ctx, server_side=True)
    return client, server


def shuttle(a: TLSPump, b: TLSPump, *, rounds: int = 20) -> None:
    """Move ciphertext both ways until neither side has anything to say."""
    for _ in range(rounds):
        to_b = a.ciphertext_to_send()
        to_a = b.ciphertext_to_send()
        if not to_a and not to_b:
            return
        if to_b:
            b.receive_ciphertext(to_b)
        if to_a:
            a.receive_ciphertext(to_a)
    raise AssertionError("the pumps never went quiet")


def connected_pair(**kwargs: object) -> tuple[TLSPump, TLSPump]:
    client, server = make_pair(**kwargs)  # type: ignore[arg-type]
    client.start_handshake()
    server.start_handshake()
    shuttle(client, server)
    assert state(client) is S.WRAPPED
    assert state(server) is S.WRAPPED
    return client, server


def read_all(pump: TLSPump) -> bytes:
    chunks = []
    while chunk := pump.read_plaintext():
        chunks.append(chunk)
    return b"".join(chunks)


# -- the table -------------------------------------------------------------------


def test_every_state_can_fail_or_abort_to_closed() -> None:
    for state in S:
        assert TRANSITIONS[(state, TLSEvent.FAIL)] is S.CLOSED
        assert TRANSITIONS[(state, TLSEvent.ABORT)] is S.CLOSED


def test_closed_is_terminal() -> None:
    for (state, _event), target in TRANSITIONS.items():
        if state is S.CLOSED:
            assert target is S.CLOSED


def test_states_only_move_forward() -> None:
    order = list(S)
    for (state, _event), target in TRANSITIONS.items():
        assert order.index(target) >= order.index(state)


# -- handshake -------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_handshake_completes_with_details(version: ssl.TLSVersion) -> None:
    client, server = make_pair(version=version)
    assert state(client) is S.UNWRAPPED
    client.start_handshake()
    assert state(client) is S.DO_HANDSHAKE
    assert client.pending_ciphertext > 0  # the ClientHello
    server.start_handshake()
    assert server.ciphertext_to_send() == b""  # a server speaks second
    shuttle(client, server)

    assert state(client) is S.WRAPPED and state(server) is S.WRAPPED
    info = client.handshake
    assert info is not None
    assert info.ssl_object is client.ssl_object
    expected = "TLSv1.3" if version is ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert info.ssl_object.version() == expected
    assert info.peercert is not None
    assert dict(x[0] for x in info.peercert["subject"])["commonName"] == "localhost"
    assert info.cipher is not None and len(info.cipher) == 3
    assert info.compression is None
    # The server asked for no client certificate.
    assert server.handshake is not None and server.handshake.peercert is None


def test_handshake_survives_byte_by_byte_delivery() -> None:
    client, server = make_pair()
    client.start_handshake()
    server.start_handshake()
    for _ in range(10):
        to_server = client.ciphertext_to_send()
        to_client = server.ciphertext_to_send()
        if not to_server and not to_client:
            break
        for i in range(len(to_server)):
            server.receive_ciphertext(to_server[i : i + 1])
        for i in range(len(to_client)):
            client.receive_ciphertext(to_client[i : i + 1])
    assert state(client) is S.WRAPPED and state(server) is S.WRAPPED


def test_wrong_hostname_fails_the_handshake_with_an_alert() -> None:
    client, server = make_pair("example.com")
    client.start_handshake()
    server.start_handshake()
    server.receive_ciphertext(client.ciphertext_to_send())
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        client.receive_ciphertext(server.ciphertext_to_send())
    assert "example.com" in str(info.value)
    assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
    assert state(client) is S.CLOSED
    # The alert that tells the server why is ready to be sent.
    alert = client.ciphertext_to_send()
    assert alert
    with pytest.raises(ssl.SSLError):
        server.receive_ciphertext(alert)
    assert state(server) is S.CLOSED


def test_untrusted_server_fails_verification() -> None:
    material = tls_material()
    client = TLSPump(ssl.create_default_context(), server_hostname="localhost")
    server = TLSPump(material.server_context(), server_side=True)
    client.start_handshake()
    server.start_handshake()
    server.receive_ciphertext(client.ciphertext_to_send())
    with pytest.raises(ssl.SSLCertVerificationError):
        client.receive_ciphertext(server.ciphertext_to_send())


def test_eof_during_handshake_is_a_connection_reset() -> None:
    client, _server = make_pair()
    client.start_handshake()
    with pytest.raises(ConnectionResetError):
        client.receive_eof()
    assert state(client) is S.CLOSED


def test_garbage_during_handshake_is_an_ssl_error() -> None:
    _client, server = make_pair()
    server.start_handshake()
    with pytest.raises(ssl.SSLError):
        server.receive_ciphertext(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert state(server) is S.CLOSED


def test_invalid_inputs_raise_state_errors() -> None:
    client, _server = make_pair()
    with pytest.raises(TLSStateError, match="send close_notify in state UNWRAPPED"):
        client.send_close_notify()
    client.start_handshake()
    with pytest.raises(TLSStateError, match="start the handshake in state DO_HANDSHAKE"):
        client.start_handshake()


# -- data --------------------------------------------------------------------------


def test_data_flows_both_ways() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"ping")
    shuttle(client, server)
    assert read_all(server) == b"ping"
    server.send_plaintext(bytearray(b"pong"))
    server.send_plaintext(memoryview(b"!"))
    shuttle(client, server)
    assert read_all(client) == b"pong!"
    assert client.read_plaintext() == b""
    assert not client.close_notify_received


def test_big_transfer_with_checksum() -> None:
    client, server = connected_pair()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    for start in range(0, len(payload), 100_000):
        client.send_plaintext(payload[start : start + 100_000])
    server.receive_ciphertext(client.ciphertext_to_send())
    digest = hashlib.sha256()
    received = 0
    while chunk := server.read_plaintext(64 * 1024):
        assert len(chunk) <= 64 * 1024
        digest.update(chunk)
        received += len(chunk)
    assert received == len(payload)
    assert digest.digest() == hashlib.sha256(payload).digest()


def test_read_into_a_buffer() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"0123456789")
    shuttle(client, server)
    buffer = bytearray(4)
    got = bytearray()
    while count := server.read_plaintext_into(buffer):
        got += buffer[:count]
    assert got == b"0123456789"


def test_partial_record_waits_for_the_rest() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"x" * 1000)
    record = client.ciphertext_to_send()
    server.receive_ciphertext(record[:10])
    assert server.read_plaintext() == b""
    assert server.pending_incoming == 10 or server.pending_incoming == 0
    server.receive_ciphertext(record[10:])
    assert read_all(server) == b"x" * 1000


def test_writes_before_the_handshake_are_kept_and_sent_after() -> None:
    client, server = make_pair()
    client.send_plaintext(b"early")
    assert client.pending_plaintext == 5
    client.start_handshake()
    server.start_handshake()
    shuttle(client, server)
    assert client.pending_plaintext == 0
    assert read_all(server) == b"early"


def test_corrupted_record_is_an_ssl_error() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"hello")
    record = bytearray(client.ciphertext_to_send())
    record[-1] ^= 0xFF
    server.receive_ciphertext(bytes(record))
    with pytest.raises(ssl.SSLError):
        server.read_plaintext()
    assert state(server) is S.CLOSED


def test_data_before_a_corrupted_record_is_delivered_first() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"good")
    good = client.ciphertext_to_send()
    server.receive_ciphertext(good + b"\x17\x03\x03\x00\x05garbage")
    assert server.read_plaintext() == b"good"
    with pytest.raises(ssl.SSLError):
        server.read_plaintext()
    # The error is raised once; then the pump is simply closed.
    assert server.read_plaintext() == b""


def test_check_failure_surfaces_a_deferred_error() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"good")
    server.receive_ciphertext(client.ciphertext_to_send() + b"\x17\x03\x03\x00\x05garbage")
    buffer = bytearray(100)
    assert server.read_plaintext_into(buffer) == 4
    with pytest.raises(ssl.SSLError):
        server.check_failure()
    server.check_failure()


# -- closing -------------------------------------------------------------------------


def test_clean_shutdown_exchanges_close_notify() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"last words")
    client.start_shutdown()
    assert state(client) is S.FLUSHING
    with pytest.raises(TLSStateError):
        client.send_plaintext(b"too late")
    client.send_close_notify()
    assert state(client) is S.SHUTDOWN

    server.receive_ciphertext(client.ciphertext_to_send())
    # The peer's close_notify reads as EOF, after the data before it.
    assert server.read_plaintext() == b"last words"
    assert server.read_plaintext() == b""
    assert server.close_notify_received
    assert state(server) is S.WRAPPED  # only the peer's side is over
    server.start_shutdown()
    server.send_close_notify()
    assert state(server) is S.CLOSED  # both close_notify are known

    client.receive_ciphertext(server.ciphertext_to_send())
    assert state(client) is S.CLOSED
    assert client.close_notify_received


def test_ragged_eof_ends_the_session_without_error() -> None:
    client, server = connected_pair()
    client.send_plaintext(b"bye")
    server.receive_ciphertext(client.ciphertext_to_send())
    server.receive_eof()  # no close_notify: the peer just hung up
    assert state(server) is S.FLUSHING
    assert read_all(server) == b"bye"
    server.send_close_notify()
    assert state(server) is S.CLOSED
    # Nobody is listening: nothing is sent.
    assert server.ciphertext_to_send() == b""


def test_eof_while_waiting_for_the_peers_close_notify() -> None:
    client, _server = connected_pair()
    client.start_shutdown()
    client.send_close_notify()
    assert state(client) is S.SHUTDOWN
    client.receive_eof()
    assert state(client) is S.CLOSED


def test_data_arriving_during_shutdown_is_dropped() -> None:
    # The peer may still be sending when our close_notify leaves: TLS says
    # to ignore that data, where OpenSSL's shutdown alone would fail with
    # "application data after close notify".
    client, server = connected_pair()
    client.start_shutdown()
    client.send_close_notify()
    server.send_plaintext(b"in flight")
    client.receive_ciphertext(server.ciphertext_to_send())
    assert state(client) is S.SHUTDOWN
    assert client.read_plaintext() == b""
    server.receive_ciphertext(client.ciphertext_to_send())
    assert read_all(server) == b""
    server.start_shutdown()
    server.send_close_notify()
    client.receive_ciphertext(server.ciphertext_to_send())
    assert state(client) is S.CLOSED


def test_closing_during_the_handshake_abandons_it() -> None:
    client, _server = make_pair()
    client.start_handshake()
    client.start_shutdown()
    assert state(client) is S.CLOSED


def test_abort_discards_everything() -> None:
    client, _server = connected_pair()
    client.send_plaintext(b"never sent")
    client.abort()
    assert state(client) is S.CLOSED
    assert client.ciphertext_to_send() == b""
    assert client.pending_plaintext == 0
    client.receive_ciphertext(b"ignored")
    assert client.read_plaintext() == b""
