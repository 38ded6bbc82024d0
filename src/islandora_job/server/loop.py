"""The server's I/O: one thread, one selector, non-blocking sockets around a ServerState.

Everything the server decides is in :mod:`islandora_job.server.state`; this layer accepts,
reads, writes and closes, and asks the state what the clock has made due. Output a peer does
not read is bounded: a connection holding more than ``max_pending`` unsent bytes is closed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import time

from islandora_job.gearman.protocol import MAX_PACKET_SIZE
from islandora_job.server.state import ServerState
from islandora_job.server.store import JobStore

__all__ = ["EmbeddedServer"]

log = logging.getLogger("islandora_job.server")

_READ_SIZE = 256 * 1024


class EmbeddedServer:
    """A Gearman server listening on ``host:port`` (port 0: one the system picks, see
    :attr:`port`). Call :meth:`serve_forever`; :meth:`request_stop` (safe in a signal
    handler) ends it.

    Raises OSError when the address cannot be bound, and whatever the store raises when its
    jobs are loaded.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4730,
        *,
        job_retries: int = 0,
        store: JobStore | None = None,
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=1024)
        self._listener.setblocking(False)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.store = store
        self.state = ServerState(
            socket.gethostname(),
            os.getpid(),
            job_retries=job_retries,
            store=store,
            clock=time.time,
            max_packet_size=max_packet_size,
        )
        self.max_pending = max_packet_size + (1 << 20)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._socks: dict[int, socket.socket] = {}
        self._pending: dict[int, bytearray] = {}
        self._stopping = False

    @property
    def address(self) -> str:
        """ "host:port" as clients take it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def request_stop(self) -> None:
        """Make serve_forever return; safe to call from a signal handler or another thread."""
        self._stopping = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def serve_forever(self) -> None:
        """Serve until request_stop or admin ``shutdown``; then close every connection."""
        log.info("listening on %s (pid %d)", self.address, os.getpid())
        state = self.state
        select = self._selector.select
        listener = self._listener.fileno()
        try:
            while not self._stopping and state.shutdown is None:
                due = state.tick()
                timeout = None if due is None else max(0.0, due - time.time())
                for key, mask in select(timeout):
                    fd = key.fd
                    if fd == listener:
                        self._accept()
                    elif fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                    else:
                        if mask & selectors.EVENT_WRITE:
                            self._write(fd)
                        if mask & selectors.EVENT_READ:
                            self._read(fd)
                self._flush()
        finally:
            self.close()
        log.info("stopped (%s)", state.shutdown or "signal")

    def close(self) -> None:
        """Close every connection, the listener and the store; idempotent."""
        for fd in list(self._socks):
            self._drop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._listener)
        self._listener.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._selector.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors, say: keep serving the connections there are.
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = sock.fileno()
            self._socks[fd] = sock
            self._selector.register(sock, selectors.EVENT_READ, None)
            self.state.connect(fd, peer[0])
            log.info("Accepted connection from %s:%d (%d)", peer[0], peer[1], fd)

    def _read(self, fd: int) -> None:
        sock = self._socks.get(fd)
        if sock is None:
            return
        try:
            data = sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        self.state.receive(fd, data)

    def _flush(self) -> None:
        state = self.state
        while True:
            for fd, data in state.take_output().items():
                pending = self._pending.get(fd)
                if pending is not None:
                    pending += data
                    if len(pending) > self.max_pending:
                        log.warning("closing connection %d: it does not read its replies", fd)
                        # Dropped, not flushed: it would never take what is pending.
                        del self._pending[fd]
                        state.closing.add(fd)
                    continue
                sock = self._socks.get(fd)
                if sock is None:
                    continue
                try:
                    sent = sock.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    state.closing.add(fd)
                    continue
                if sent < len(data):
                    self._pending[fd] = data[sent:]
                    self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            if not state.closing:
                return
            closing = [fd for fd in state.closing if fd not in self._pending]
            if not closing:
                return
            for fd in closing:
                # Disconnecting may queue output for others (a failed job, a woken worker).
                self._drop(fd)

    def _write(self, fd: int) -> None:
        pending = self._pending.get(fd)
        sock = self._socks.get(fd)
        if pending is None or sock is None:
            return
        try:
            sent = sock.send(pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            del self._pending[fd]
            self.state.closing.add(fd)
            return
        del pending[:sent]
        if not pending:
            del self._pending[fd]
            self._selector.modify(sock, selectors.EVENT_READ)

    def _drop(self, fd: int) -> None:
        sock = self._socks.pop(fd, None)
        self._pending.pop(fd, None)
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
            log.info("closed connection %d", fd)
        self.state.disconnect(fd)
