"""Serving an ASGI app (the exporter, the dashboard) with uvicorn, and who counts as local.

uvicorn serves connections concurrently but waits for a new connection's request for ever;
:class:`ReadTimeoutProtocol` closes a connection that does not deliver a whole request in
time, so idle or trickling clients cannot pile up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from conveyor import defaults


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ReadTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a read timeout on each request.

    A connection must deliver a whole request (head and body) within ``read_timeout``
    seconds of opening, or of its previous response; otherwise it is closed.
    """

    read_timeout: float = defaults.HTTP_READ_TIMEOUT
    _read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._disarm()  # the request is in: the app may take its time answering

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class Server:
    """An ASGI app served by uvicorn on a socket that listens as soon as this is made.

    ``port=0`` picks a free port (see :attr:`port`). Connections made before :meth:`run`
    wait in the backlog instead of being refused.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        read_timeout: float = defaults.HTTP_READ_TIMEOUT,
        **options: Any,
    ) -> None:
        protocol = type("Protocol", (ReadTimeoutProtocol,), {"read_timeout": read_timeout})
        options.setdefault("log_level", "warning")
        options.setdefault("access_log", False)
        self.config = uvicorn.Config(app, host=host, port=port, http=protocol,
                                     limit_concurrency=defaults.HTTP_MAX_CONNECTIONS,
                                     **options)  # fmt: skip
        self.server = uvicorn.Server(self.config)
        self.socket: socket.socket = self.config.bind_socket()
        self.socket.listen(self.config.backlog)
        #: The port it listens on.
        self.port: int = self.socket.getsockname()[1]

    def run(self) -> None:
        """Serve until :meth:`stop` is called (or SIGINT/SIGTERM in the main thread)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return (from any thread)."""
        self.server.should_exit = True

    @contextmanager
    def running(self) -> Iterator[Server]:
        """Serve in a background thread for the duration of a ``with`` block."""
        thread = threading.Thread(target=self.run, name="conveyor-http", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop()
            thread.join(defaults.HTTP_READ_TIMEOUT)
