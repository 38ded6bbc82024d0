"""One blocking TCP connection to a gearmand (TCP_NODELAY, connect/read timeouts).

The connection owns a socket and a decoder (binary packets by default, or the admin text
decoder); it sends bytes and hands out decoded items one at a time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
import time
from collections import deque
from typing import Any, Protocol

from .protocol import Magic, PacketDecoder, ProtocolError

__all__ = ["DEFAULT_PORT", "Connection", "ServerUnavailable", "parse_address"]

DEFAULT_PORT = 4730
_RECV_SIZE = 256 * 1024
# struct timeval for SO_RCVTIMEO (two C longs on Linux; also right on little-endian BSDs).
_TIMEVAL = struct.Struct("@ll")
_MIN_TIMEOUT = 1e-6
# The longest one read waits (an infinite timeout waits by reads of this length).
_MAX_WAIT = 3600.0


class ServerUnavailable(ConnectionError):
    """gearmand cannot be reached, refused the connection, or closed or reset it."""


class Decoder(Protocol):
    """What a connection needs from a decoder: bytes in, decoded items out."""

    def feed(self, data: bytes | memoryview) -> list[Any]: ...


def parse_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` (``"[v6]:port"`` for IPv6; port defaults to 4730).

    Raises ValueError on an empty host or a port that is not a number from 1 to 65535.
    """
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad server address {address!r}; write [v6addr]:port")
        port_text = rest[1:]
    elif text.count(":") > 1:
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"server address {address!r} has no host; write host:port")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"server address {address!r} has a bad port {port_text!r}; use 1-65535")
    return host, int(port_text)


class Connection:
    """A blocking connection to one gearmand.

    Raises ServerUnavailable when the server cannot be reached (refused, unreachable,
    connect timeout) or when it closes or resets the connection later; TimeoutError when a
    read outlasts its timeout; ProtocolError (from the decoder) on malformed bytes.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        connect_timeout: float | None = 5.0,
        read_timeout: float | None = None,
        decoder: Decoder | None = None,
        *,
        wait: bool = True,
        candidate: int = 0,
    ) -> None:
        """Connect to ``host:port``.

        With ``wait=False`` the connect to the ``candidate``-th address ``host`` resolves to
        is only started: the connection is ``connecting`` until the socket turns writable
        and :meth:`finish_connect` succeeds (``connect_timeout`` is then unused); when the
        host has no such address, ServerUnavailable says "no address".
        """
        self.host = host
        self.port = port
        self.address = self.format_address(host, port)
        self.read_timeout = read_timeout
        self.decoder: Decoder = decoder if decoder is not None else PacketDecoder(Magic.RES)
        self._pending: deque[Any] = deque()
        # One receive buffer per connection: no allocation per read on the hot path.
        self._recv_buffer = bytearray(_RECV_SIZE)
        self._recv_view = memoryview(self._recv_buffer)
        self._timeout: float | None = None
        # SO_RCVLOWAT: the bytes a waiting read waits for (see read_packets).
        self._at_least = 1
        # Whether the last read filled the receive buffer (see receive()).
        self._filled = False
        self.connecting = not wait
        try:
            if wait:
                sock = socket.create_connection((host, port), timeout=connect_timeout)
            else:
                sock = self._start_connect(host, port, candidate)
        except OSError as exc:
            raise self._unreachable(exc) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if wait:
            # Read timeouts are the kernel's (SO_RCVTIMEO) on a socket Python sees as
            # blocking: a Python-level timeout would add a poll() before every recv().
            sock.settimeout(None)
        self._sock: socket.socket | None = sock

    @staticmethod
    def _start_connect(host: str, port: int, candidate: int) -> socket.socket:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if candidate >= len(addresses):
            raise OSError(errno.EADDRNOTAVAIL, f"no address {candidate + 1} for {host}")
        family, kind, proto, _, sockaddr = addresses[candidate]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        error = sock.connect_ex(sockaddr)
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(error, os.strerror(error))
        return sock

    def finish_connect(self) -> None:
        """Complete a connect started with ``wait=False`` once the socket is writable.

        Raises ServerUnavailable (and closes) when the connect failed.
        """
        sock = self._sock
        if sock is None:
            raise ServerUnavailable(f"connection to gearmand at {self.address} is closed")
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self.close()
            raise self._unreachable(OSError(error, os.strerror(error)))
        sock.settimeout(None)
        self.connecting = False

    def _unreachable(self, exc: OSError) -> ServerUnavailable:
        return ServerUnavailable(
            f"cannot connect to gearmand at {self.address}: {exc}; "
            "check that it runs and listens there"
        )

    @staticmethod
    def format_address(host: str, port: int) -> str:
        """``host:port`` (``[host]:port`` for an IPv6 address), the inverse of parse_address."""
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __repr__(self) -> str:
        state = "open" if self._sock is not None else "closed"
        return f"<Connection {self.address} {state}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (explicitly or after a failure)."""
        return self._sock is None

    def fileno(self) -> int:
        """The socket's file descriptor (for selectors); -1 once closed."""
        return self._sock.fileno() if self._sock is not None else -1

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send all bytes, within ``timeout`` seconds when given (None: no limit).

        Raises ServerUnavailable when the connection is closed or broken, TimeoutError
        (and closes the connection, which then holds a partial packet) when the peer
        reads too slowly for the bytes to go out in time.
        """
        sock = self._sock
        if sock is None:
            raise ServerUnavailable(f"connection to gearmand at {self.address} is closed")
        try:
            if timeout is None:
                sock.sendall(data)
                return
            # The usual case costs one syscall: the kernel's buffer takes it all at once.
            try:
                sent = sock.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._send_rest(sock, memoryview(data)[sent:], timeout)
        except TimeoutError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise ServerUnavailable(
                f"lost the connection to gearmand at {self.address}: {exc}"
            ) from exc

    def send_some(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the kernel takes now, without waiting (for selector loops); return how
        many bytes went out (0 when the socket's buffer is full).

        Raises ServerUnavailable (and closes) when the connection is closed or broken.
        """
        sock = self._sock
        if sock is None:
            raise ServerUnavailable(f"connection to gearmand at {self.address} is closed")
        try:
            return sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self.close()
            raise ServerUnavailable(
                f"lost the connection to gearmand at {self.address}: {exc}"
            ) from exc

    def _send_rest(self, sock: socket.socket, view: memoryview, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError(
                        f"could not send {len(view)} more bytes to gearmand at {self.address} "
                        f"within {timeout:g} s: it reads nothing (stopped or overloaded)"
                    )
                try:
                    view = view[sock.send(view, socket.MSG_DONTWAIT) :]
                except BlockingIOError:
                    continue

    def read_packet(self, timeout: float | None = -1.0) -> Any:
        """Return the next decoded item, reading from the socket as needed.

        ``timeout`` bounds the whole call (None waits forever; the default uses the
        connection's read timeout). Raises TimeoutError, ServerUnavailable or ProtocolError.
        """
        pending = self._pending
        if not pending:
            self._wait(timeout, 1)
        return pending.popleft()

    def read_packets(self, timeout: float | None = -1.0, *, at_least: int = 1) -> list[Any]:
        """Return every decoded item there is (at least one), reading from the socket when
        none is buffered; ``timeout`` and errors as for :meth:`read_packet`.

        With ``at_least`` > 1 a read waits for that many bytes to have come, unless the
        read's own time runs out first (a read waits half the time left at most, see
        _fill: it then returns what came, if anything) or the peer closes: the peer's next
        reply usually follows its first at once, and one wake-up for both costs half as much.
        """
        pending = self._pending
        if not pending:
            self._wait(timeout, at_least)
        items = list(pending)
        pending.clear()
        return items

    def _wait(self, timeout: float | None, at_least: int) -> None:
        """Read until at least one decoded item is buffered, for ``timeout`` seconds at most,
        each read waiting for ``at_least`` bytes (SO_RCVLOWAT, set when it changes)."""
        if at_least != self._at_least and self._sock is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, at_least)
            self._at_least = at_least
        pending = self._pending
        if timeout is not None and timeout < 0:
            timeout = self.read_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = timeout
        while not pending:
            # A read may end early (see _fill): the deadline alone says when to give up.
            with contextlib.suppress(TimeoutError):
                self._fill(remaining)
            if deadline is not None and not pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out(timeout)

    def _timed_out(self, timeout: float | None) -> TimeoutError:
        return TimeoutError(f"no reply from gearmand at {self.address} within {timeout:g} s")

    def receive(self) -> list[Any]:
        """Read all the socket holds now, without waiting (for selector loops: an
        edge-triggered one needs the socket drained), and return every decoded item,
        buffered ones included.

        Raises ServerUnavailable on a closed or reset connection, ProtocolError on bad bytes.
        """
        items = self._recv(wait=False)
        # A read that filled the buffer may have left bytes behind; a shorter one took all.
        while self._filled:
            try:
                items += self._recv(wait=False)
            except (ServerUnavailable, ProtocolError):
                if not items:
                    raise
                # The connection is closed now: what came before the failure is handed
                # out, and the next call says the connection is closed.
                break
        if self._pending:
            items[:0] = self._pending
            self._pending.clear()
        return items

    def _fill(self, timeout: float | None) -> None:
        """Read once, waiting ``timeout`` seconds at most (maybe less: TimeoutError then)."""
        if timeout is not None and timeout < _MIN_TIMEOUT:
            # SO_RCVTIMEO 0 means "wait forever": poll without waiting instead.
            items = self._recv(wait=False)
            if not items:
                raise TimeoutError
        else:
            current = self._timeout
            # Setting SO_RCVTIMEO is a system call: keep the one set while it ends the wait
            # in time and not much too early (a quarter of it), else set half the time left.
            # Calls that each wait a little less than the last (a deadline drawing nearer)
            # then change it seldom; the read that ends early is followed by another.
            if timeout is None or current is None or not timeout / 4 <= current <= timeout:
                seconds = 0.0 if timeout is None else min(max(timeout / 2, _MIN_TIMEOUT), _MAX_WAIT)
                if self._sock is not None and seconds != (current or 0.0):
                    whole = int(seconds)
                    self._sock.setsockopt(
                        socket.SOL_SOCKET,
                        socket.SO_RCVTIMEO,
                        _TIMEVAL.pack(whole, int((seconds - whole) * 1_000_000)),
                    )
                self._timeout = seconds or None
            items = self._recv(wait=True)
        self._pending.extend(items)

    def _recv(self, wait: bool) -> list[Any]:
        sock = self._sock
        if sock is None:
            raise ServerUnavailable(f"connection to gearmand at {self.address} is closed")
        try:
            # MSG_DONTWAIT reads the blocking socket without waiting (selector loops).
            size = sock.recv_into(self._recv_buffer, _RECV_SIZE, 0 if wait else socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._filled = False
            if not wait:
                return []
            # A waiting read got EAGAIN: SO_RCVTIMEO ran out.
            raise TimeoutError from None
        except OSError as exc:
            self.close()
            raise ServerUnavailable(
                f"lost the connection to gearmand at {self.address}: {exc}"
            ) from exc
        if not size:
            self.close()
            raise ServerUnavailable(f"gearmand at {self.address} closed the connection")
        self._filled = size == _RECV_SIZE
        try:
            return self.decoder.feed(self._recv_view[:size])
        except Exception:
            self.close()
            raise

    def close(self, linger: float = 0.0) -> None:
        """Close the socket (idempotent).

        With ``linger`` > 0, first half-close and wait up to that long for the server to
        close its side, so that data just sent is received before the socket goes away.
        """
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if linger > 0:
            try:
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(linger)
                deadline = time.monotonic() + linger
                while time.monotonic() < deadline and sock.recv(_RECV_SIZE):
                    pass
            except OSError:
                pass
        sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
