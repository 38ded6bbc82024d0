"""Sans-I/O Gearman codec: bytes in, packets out; packets in, bytes out. No sockets.

CONTRACT (to be implemented):
- class ProtocolError(Exception): the only exception malformed input may raise.
- class PacketType(enum.IntEnum): every binary packet type (CAN_DO=1 ... SUBMIT_JOB_LOW_BG=34, ...).
- class Magic(enum.Enum): REQ (b"\\0REQ") / RES (b"\\0RES").
- @dataclass(frozen=True) class Packet: magic, type, args: tuple[bytes, ...].
- ARG_COUNT: number of arguments per packet type (the last one is opaque and may contain NUL).
- def request(type, *args) -> bytes / def response(type, *args) -> bytes: encode one packet.
- class PacketDecoder: feed(data: bytes) -> list[Packet]; accepts any split of the stream;
  raises ProtocolError on bad magic, unknown type, wrong argument count, oversized length.
- class AdminDecoder: feed text admin replies (lines ending in \\r\\n or \\n, blocks ending in ".").
"""
