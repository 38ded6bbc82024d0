"""Sans-I/O Gearman codec: bytes in, packets out; packets in, bytes out. No sockets.

Binary packets are a 12-byte header (magic ``\\0REQ`` or ``\\0RES``, type, body length,
big-endian) and a body of NUL-separated arguments whose last one is opaque and may hold
NUL bytes. The text admin protocol answers with one line (``OK ...`` / ``ERR ...``) or a
block of lines ended by a line holding a single ``.``; gearmand ends lines with ``\\n`` or
``\\r\\n``. Malformed input of any kind raises :class:`ProtocolError` and nothing else.
"""

from __future__ import annotations

import enum
import re
import struct
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

__all__ = [
    "ARG_COUNT",
    "MAX_PACKET_SIZE",
    "AdminDecoder",
    "AdminReply",
    "Magic",
    "Packet",
    "PacketDecoder",
    "PacketType",
    "ProtocolError",
    "admin_command",
    "encode",
    "function_name",
    "request",
    "response",
    "trusted_request",
]

#: Largest body (and largest unterminated admin reply) accepted from a peer. A declared
#: length beyond it is refused at once instead of buffering towards it.
MAX_PACKET_SIZE = 64 * 1024 * 1024

_HEADER = struct.Struct(">4sII")
HEADER_SIZE = _HEADER.size


class ProtocolError(Exception):
    """Bytes that are not valid Gearman protocol; the connection they came on is unusable."""


class Magic(enum.Enum):
    """The first four header bytes: requests go to the server, responses come from it."""

    REQ = b"\0REQ"
    RES = b"\0RES"


class PacketType(enum.IntEnum):
    """Every binary packet type gearmand 1.1 knows (0, text, and 5, unused, are not packets)."""

    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42
    SET_WORKER_LOAD = 43


_T = PacketType
#: Number of arguments of each packet type, the opaque last one included (as in
#: gearmand's libgearman/command.cc, where the opaque "data" argument is counted apart).
ARG_COUNT: dict[PacketType, int] = {
    _T.CAN_DO: 1,
    _T.CANT_DO: 1,
    _T.RESET_ABILITIES: 0,
    _T.PRE_SLEEP: 0,
    _T.NOOP: 0,
    _T.SUBMIT_JOB: 3,
    _T.JOB_CREATED: 1,
    _T.GRAB_JOB: 0,
    _T.NO_JOB: 0,
    _T.JOB_ASSIGN: 3,
    _T.WORK_STATUS: 3,
    _T.WORK_COMPLETE: 2,
    _T.WORK_FAIL: 1,
    _T.GET_STATUS: 1,
    _T.ECHO_REQ: 1,
    _T.ECHO_RES: 1,
    _T.SUBMIT_JOB_BG: 3,
    _T.ERROR: 2,
    _T.STATUS_RES: 5,
    _T.SUBMIT_JOB_HIGH: 3,
    _T.SET_CLIENT_ID: 1,
    _T.CAN_DO_TIMEOUT: 2,
    _T.ALL_YOURS: 0,
    _T.WORK_EXCEPTION: 2,
    _T.OPTION_REQ: 1,
    _T.OPTION_RES: 1,
    _T.WORK_DATA: 2,
    _T.WORK_WARNING: 2,
    _T.GRAB_JOB_UNIQ: 0,
    _T.JOB_ASSIGN_UNIQ: 4,
    _T.SUBMIT_JOB_HIGH_BG: 3,
    _T.SUBMIT_JOB_LOW: 3,
    _T.SUBMIT_JOB_LOW_BG: 3,
    _T.SUBMIT_JOB_SCHED: 8,
    _T.SUBMIT_JOB_EPOCH: 4,
    _T.SUBMIT_REDUCE_JOB: 5,
    _T.SUBMIT_REDUCE_JOB_BACKGROUND: 5,
    _T.GRAB_JOB_ALL: 0,
    _T.JOB_ASSIGN_ALL: 5,
    _T.GET_STATUS_UNIQUE: 1,
    _T.STATUS_RES_UNIQUE: 6,
    _T.SET_WORKER_LOAD: 1,
}
del _T

# Plain lookups keep the decoder's hot loop free of enum construction and exceptions.
_MAGIC_BY_BYTES: dict[bytes, Magic] = {m.value: m for m in Magic}
# Per type code: its argument count and its member, in one lookup.
_DECODING: dict[int, tuple[int, PacketType]] = {int(t): (n, t) for t, n in ARG_COUNT.items()}


class Packet(NamedTuple):
    """One binary packet: its magic, its type and its arguments as bytes."""

    # A named tuple rather than a frozen dataclass: the decoder makes one per packet, and a
    # tuple costs half as much to build (pipelined replies come by the thousand).
    magic: Magic
    type: PacketType
    args: tuple[bytes, ...]


def encode(magic: Magic, type: PacketType, *args: bytes) -> bytes:
    """Encode one packet.

    Raises ValueError when the number of arguments is not the one the type takes, or when an
    argument other than the last holds a NUL byte (NUL separates arguments on the wire).
    """
    expected = ARG_COUNT[type]
    if len(args) != expected:
        raise ValueError(
            f"{type.name} takes {expected} argument(s), got {len(args)}; pass exactly {expected}"
        )
    for index in range(expected - 1):
        if b"\0" in args[index]:
            raise ValueError(
                f"argument {index + 1} of {type.name} contains a NUL byte, which the Gearman "
                "protocol uses as separator; remove it (only the last argument may hold NUL)"
            )
    return _framed(magic.value, type, args)


def _framed(magic: bytes, type: PacketType, args: tuple[bytes, ...]) -> bytes:
    body = b"\0".join(args)
    return _HEADER.pack(magic, type, len(body)) + body


_REQ = Magic.REQ.value


def request(type: PacketType, *args: bytes) -> bytes:
    """Encode a request packet (client or worker to server); see :func:`encode`."""
    return encode(Magic.REQ, type, *args)


def trusted_request(type: PacketType, *args: bytes) -> bytes:
    """Encode a request packet without :func:`encode`'s checks, for a hot path whose
    arguments are right by construction (e.g. a job handle the server sent, then opaque data):
    a wrong count or a NUL in a leading argument goes out as it is. Raises struct.error
    only for a body over 4 GiB."""
    return _framed(_REQ, type, args)


def response(type: PacketType, *args: bytes) -> bytes:
    """Encode a response packet (server to client or worker); see :func:`encode`."""
    return encode(Magic.RES, type, *args)


class PacketDecoder:
    """Turn a byte stream, split anywhere, into packets.

    ``expect`` restricts the accepted magic (a client or worker expects ``Magic.RES``).
    After a :class:`ProtocolError` the decoder refuses all further input.
    """

    __slots__ = ("_broken", "_buffer", "_expect", "_magics", "_max_size")

    def __init__(self, expect: Magic | None = None, max_size: int = MAX_PACKET_SIZE) -> None:
        self._buffer = bytearray()
        self._expect = expect.value if expect is not None else None
        self._magics = frozenset(_MAGIC_BY_BYTES if expect is None else (expect.value,))
        self._max_size = max_size
        self._broken: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Add bytes; return every packet they complete (maybe none).

        Raises ProtocolError on a bad magic, an unknown type, an oversized length or a body
        whose argument count does not match its type.
        """
        if self._broken is not None:
            raise ProtocolError(self._broken)
        buffer = self._buffer
        # Parse straight from ``data`` when nothing is buffered (the usual case): each body
        # is then copied once, and only an incomplete tail is kept.
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            source = data
        packets: list[Packet] = []
        append = packets.append
        decoding, magics, limit = _DECODING, self._magics, self._max_size
        # Packets are tuples made without Packet's own __new__ (a Python function): pipelined
        # replies come by the thousand.
        new, packet_class = tuple.__new__, Packet
        position = 0
        with memoryview(source) as view:
            available = len(view)
            while available - position >= HEADER_SIZE:
                magic_bytes, code, size = _HEADER.unpack_from(view, position)
                known = decoding.get(code)
                if known is None or magic_bytes not in magics or size > limit:
                    self._refuse_header(magic_bytes, code, size)
                count, kind = known
                if size and not count:
                    self._fail(f"{kind.name} carries no arguments, got {size} bytes")
                start = position + HEADER_SIZE
                end = start + size
                if end > available:
                    break
                if count == 1:
                    args: tuple[bytes, ...] = (view[start:end].tobytes(),)
                elif count:
                    args = tuple(view[start:end].tobytes().split(b"\0", count - 1))
                    if len(args) != count:
                        self._fail(
                            f"{kind.name} needs {count} arguments, the body holds {len(args)}"
                        )
                else:
                    args = ()
                append(new(packet_class, (_MAGIC_BY_BYTES[magic_bytes], kind, args)))
                position = end
            if source is not buffer and position < available:
                buffer += view[position:]
        if source is buffer and position:
            del buffer[:position]
        return packets

    def _refuse_header(self, magic_bytes: bytes, code: int, size: int) -> NoReturn:
        """Fail on a header with a bad magic, an unknown type or an oversized body."""
        if magic_bytes not in _MAGIC_BY_BYTES:
            self._fail(f"bad magic {magic_bytes!r}: the peer does not speak the Gearman protocol")
        if self._expect is not None and magic_bytes != self._expect:
            self._fail(f"unexpected magic {magic_bytes!r}, expected {self._expect!r}")
        if code not in _DECODING:
            self._fail(f"unknown packet type {code}")
        self._fail(f"packet body of {size} bytes exceeds the limit of {self._max_size} bytes")

    def _fail(self, message: str) -> NoReturn:
        self._broken = message
        # A fresh buffer: the old one may be exported to a memoryview right now.
        self._buffer = bytearray()
        raise ProtocolError(message)


def function_name(name: object, what: str = "function name") -> bytes:
    """The wire bytes of a Gearman function name (UTF-8, surrogates kept).

    Raises TypeError when ``name`` is not a str, ValueError when it is empty or holds a NUL
    byte (which separates arguments on the wire); ``what`` names it in the message.
    """
    if not isinstance(name, str):
        raise TypeError(f"a {what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"the {what} is empty: Gearman function names must be non-empty")
    if "\0" in name:
        raise ValueError(
            f"{what} {name!r} contains a NUL byte, which the Gearman protocol cannot carry"
        )
    return name.encode("utf-8", "surrogateescape")


def admin_command(line: str) -> bytes:
    """Encode one admin command line.

    Raises ValueError when the command holds a newline, carriage return or NUL, which would
    end it early or smuggle in a second command.
    """
    if any(c in line for c in "\r\n\0"):
        raise ValueError(
            f"admin command {line!r} contains a newline, carriage return or NUL; remove it"
        )
    return line.encode("utf-8", "surrogateescape") + b"\n"


@dataclass(frozen=True, slots=True)
class AdminReply:
    """One admin reply: ``ok`` is False for an ``ERR`` line; ``lines`` is the single line's
    text after ``OK``/``ERR`` (split on the first space: ``ERR CODE message``) or a block's
    lines without the final ``.``. Text is UTF-8 decoded with ``surrogateescape`` so that
    names in any encoding survive a round trip."""

    ok: bool
    lines: tuple[str, ...]


# A version number as a server may send it without "OK": 1.1.20, v1.130.1, 1.1.20+ds.
_BARE_VERSION = re.compile(r"v?\d+(?:\.\d+)*[\w.+~-]*")


class AdminDecoder:
    """Turn admin reply bytes into :class:`AdminReply` objects.

    Whether the next reply is a single line or a block is not visible in the bytes, so call
    :meth:`expect` once per command sent, in order, before feeding its reply. A block reply
    whose first line is ``ERR ...`` is an error reply of one line.
    """

    __slots__ = ("_block", "_buffer", "_expected", "_max_size")

    def __init__(self, max_size: int = MAX_PACKET_SIZE) -> None:
        self._buffer = bytearray()
        # Per command outstanding: (block, bare), see expect().
        self._expected: deque[tuple[bool, bool]] = deque()
        self._block: list[str] | None = None
        self._max_size = max_size

    def expect(self, block: bool, *, bare: bool = False) -> None:
        """Announce the next reply: a block of lines (``block=True``) or one line; with
        ``bare``, one line that may also be a bare version number without its ``OK``
        (Perl's Gearman::Server answers ``version`` with ``v1.130.1``)."""
        self._expected.append((block, bare))

    def feed(self, data: bytes | bytearray | memoryview) -> list[AdminReply]:
        """Add bytes; return the replies they complete.

        Raises ProtocolError on a reply nobody asked for, a line that is neither ``OK`` nor
        ``ERR`` where one line was expected, or more than ``max_size`` bytes without a line end.
        """
        buffer = self._buffer
        buffer += data
        replies: list[AdminReply] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            raw = bytes(buffer[start:end])
            start = end + 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            reply = self._line(raw.decode("utf-8", "surrogateescape"))
            if reply is not None:
                replies.append(reply)
        if start:
            del buffer[:start]
        if len(buffer) > self._max_size:
            buffer.clear()
            raise ProtocolError(f"admin reply line longer than {self._max_size} bytes")
        return replies

    def _line(self, text: str) -> AdminReply | None:
        if self._block is not None:
            if text == ".":
                lines, self._block = tuple(self._block), None
                return AdminReply(True, lines)
            self._block.append(text)
            return None
        if not self._expected:
            raise ProtocolError(f"admin reply {text!r} arrived with no command outstanding")
        block, bare = self._expected.popleft()
        if text == "ERR" or text.startswith("ERR "):
            return AdminReply(False, tuple(text[4:].split(" ", 1)) if text[4:] else ())
        if block:
            if text == ".":
                return AdminReply(True, ())
            self._block = [text]
            return None
        if text == "OK" or text.startswith("OK "):
            return AdminReply(True, (text[3:],) if text[3:] else ())
        if bare and _BARE_VERSION.fullmatch(text):
            return AdminReply(True, (text,))
        raise ProtocolError(f"admin reply {text!r} is neither 'OK ...' nor 'ERR ...'")
