"""A loopback TCP relay to an API server, for tests that cut a cluster off and bring it back."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from testbed.processes import free_port


class Relay:
    """A loopback TCP relay to an API server that the test can cut and restore.

    Its port stays bound from `start` to `close`: re-binding it after a cut could fail, since
    any client's outgoing connection may take a free port as its own meanwhile. Cut, it
    resets every connection at once, as a crashed server behind an address would.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._cut = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Relay (again)."""
        self._cut = False
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            if self._cut:
                _reset(downstream)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Reset new connections and cut every open one, as a crashed server would."""
        self._cut = True
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv
            sock.close()

    def close(self) -> None:
        self.stop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (linger 0), not a graceful close."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
