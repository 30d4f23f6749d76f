"""The test kit's TCP proxy: forwarding, cutting and restoring connections."""

import socket
import threading

import pytest

from saasllm.test_proxy import TCPProxy

TIMEOUT_SECONDS = 5


@pytest.fixture
def echo_port():
    """A loopback server that sends back every byte it receives."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopped = threading.Event()

    def echo(connection):
        with connection:
            while data := connection.recv(4096):
                connection.sendall(data)

    def serve():
        listener.settimeout(0.1)
        while not stopped.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopped.set()
    thread.join(TIMEOUT_SECONDS)
    listener.close()


def connect(proxy):
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT_SECONDS)


def round_trip(sock, data=b"ping"):
    sock.sendall(data)
    return sock.recv(4096)


def test_proxy_forwards_both_ways(echo_port):
    with TCPProxy(echo_port) as proxy, connect(proxy) as sock:
        reply = round_trip(sock)

    assert reply == b"ping"
    assert proxy.forwarded_count == 1


def test_cut_closes_live_connections(echo_port):
    with TCPProxy(echo_port) as proxy, connect(proxy) as sock:
        round_trip(sock)
        proxy.cut()
        after_cut = sock.recv(4096)

    assert after_cut == b""


def test_cut_proxy_closes_new_connections(echo_port):
    with TCPProxy(echo_port) as proxy:
        proxy.cut()
        with connect(proxy) as sock:
            received = sock.recv(4096)

    assert received == b""
    assert proxy.rejected_count == 1
    assert proxy.forwarded_count == 0


def test_restore_forwards_again(echo_port):
    with TCPProxy(echo_port) as proxy:
        proxy.cut()
        proxy.restore()
        is_cut = proxy.is_cut
        with connect(proxy) as sock:
            reply = round_trip(sock)

    assert reply == b"ping"
    assert not is_cut


def test_stop_ends_every_thread(echo_port):
    proxy = TCPProxy(echo_port)
    proxy.start()
    sockets = [connect(proxy) for _ in range(3)]
    for sock in sockets:
        round_trip(sock)

    proxy.stop()

    assert not proxy._acceptor.is_alive()
    assert not [thread for thread in proxy._threads if thread.is_alive()]
    for sock in sockets:
        assert sock.recv(4096) == b""
        sock.close()


def test_proxy_rejects_other_hosts():
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        TCPProxy(5432, target_host="10.0.0.1")
