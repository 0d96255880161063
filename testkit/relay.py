"""A TCP relay on loopback that a test can cut: the network between a box and a server it
depends on (a story service and its PostgreSQL journal, say), without touching either end.

`relay = TcpRelay(target_port).start()`; connect to `relay.port`; `relay.stop()` closes the
listener and every relayed connection at once, so the client sees its server vanish.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

CHUNK = 65536


class TcpRelay:
    """Forwards every connection on `127.0.0.1:port` to `127.0.0.1:target`, until stopped."""

    def __init__(self, target: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target)
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def start(self) -> Self:
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        """Cut: no new connections, and the open ones end now."""
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener closed: stopped
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._stopped.is_set():
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="relay-pump",
                                 daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(CHUNK):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
