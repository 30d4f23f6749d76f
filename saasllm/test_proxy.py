"""A TCP proxy for tests that can cut every connection through it at once.

Tests put it between a gateway and PostgreSQL to act out a database restart.
``cut()`` closes every connection. Until ``restore()``, it also closes each
new connection as soon as it is accepted, as a server that is shutting down
or starting up does. It listens on 127.0.0.1 and forwards to 127.0.0.1 only.
"""

import contextlib
import socket
import threading

LOOPBACK = "127.0.0.1"
BUFFER_BYTES = 65536
# How often the accepting thread checks whether the proxy has stopped.
ACCEPT_POLL_SECONDS = 0.1
CONNECT_TIMEOUT_SECONDS = 5
JOIN_TIMEOUT_SECONDS = 5


class Link:
    """One client connection and its connection to the target.

    Two threads copy bytes, one per direction. ``shut()`` ends both copies at
    once. The last copy to end closes the sockets, so that no thread still
    reads a socket whose descriptor has been closed.
    """

    def __init__(self, client: socket.socket, upstream: socket.socket):
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._running_copies = 2

    def shut(self) -> None:
        for sock in (self.client, self.upstream):
            # OSError: the socket is shut down already.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def copy(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER_BYTES):
                destination.sendall(data)
        except OSError:
            pass  # The other side or cut() closed the connection.
        finally:
            self.shut()
            with self._lock:
                self._running_copies -= 1
                is_last = self._running_copies == 0
            if is_last:
                self.client.close()
                self.upstream.close()


class TCPProxy:
    """Forward connections from 127.0.0.1:``port`` to 127.0.0.1:``target_port``.

    Use it as a context manager, or call ``start()`` and ``stop()``.
    ``forwarded_count`` counts the connections forwarded so far and
    ``rejected_count`` those closed while the proxy was cut.
    """

    def __init__(self, target_port: int, target_host: str = LOOPBACK):
        if target_host not in (LOOPBACK, "localhost"):
            raise ValueError(
                f"The proxy forwards to {LOOPBACK} only, not {target_host}."
            )
        self.target = (LOOPBACK, target_port)
        self.forwarded_count = 0
        self.rejected_count = 0
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[Link] = set()
        self._threads: list[threading.Thread] = []
        self._is_cut = False
        self._is_stopped = False
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"tcp-proxy-{self.port}", daemon=True
        )

    def __enter__(self) -> "TCPProxy":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def is_cut(self) -> bool:
        return self._is_cut

    def start(self) -> None:
        self._acceptor.start()

    def cut(self) -> None:
        """Close every connection through the proxy, and new ones until restored."""
        with self._lock:
            self._is_cut = True
            links = list(self._links)
        for link in links:
            link.shut()

    def restore(self) -> None:
        """Forward new connections again."""
        with self._lock:
            self._is_cut = False

    def stop(self) -> None:
        """Close every connection and the listening socket, and join the threads."""
        with self._lock:
            self._is_stopped = True
        self.cut()
        if self._acceptor.is_alive():
            self._acceptor.join(JOIN_TIMEOUT_SECONDS)
        self._listener.close()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_SECONDS)

    def _accept_loop(self) -> None:
        while not self._is_stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        if self._is_cut:
            self._reject(client)
            return
        try:
            upstream = socket.create_connection(
                self.target, timeout=CONNECT_TIMEOUT_SECONDS
            )
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        link = Link(client, upstream)
        with self._lock:
            # cut() may have run while the target connection was opening.
            if self._is_cut or self._is_stopped:
                upstream.close()
                self._reject(client)
                return
            self._links.add(link)
            self.forwarded_count += 1
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        for source, destination in ((client, upstream), (upstream, client)):
            thread = threading.Thread(
                target=self._copy, args=(link, source, destination), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _copy(
        self, link: Link, source: socket.socket, destination: socket.socket
    ) -> None:
        link.copy(source, destination)
        with self._lock:
            self._links.discard(link)

    def _reject(self, client: socket.socket) -> None:
        self.rejected_count += 1
        client.close()
