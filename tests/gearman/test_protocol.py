"""The sans-I/O codec alone: round trips, every split of a stream, malformed and random bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from islandora_job.gearman.connection import parse_address
from islandora_job.gearman.protocol import (
    ARG_COUNT,
    MAX_PACKET_SIZE,
    AdminDecoder,
    AdminReply,
    Magic,
    Packet,
    PacketDecoder,
    PacketType,
    ProtocolError,
    admin_command,
    encode,
    request,
    response,
)

ALL_TYPES = list(PacketType)


def sample_args(kind: PacketType) -> tuple[bytes, ...]:
    """Arguments for ``kind``: NUL-free leading ones, an opaque last one with NUL and more."""
    count = ARG_COUNT[kind]
    if count == 0:
        return ()
    leading = tuple(f"arg{i}-é\n".encode() for i in range(count - 1))
    return (*leading, b"last\0with\0NUL\r\n\xff")


def stream_of_every_type() -> tuple[bytes, list[Packet]]:
    packets = [Packet(Magic.RES, kind, sample_args(kind)) for kind in ALL_TYPES]
    return b"".join(encode(p.magic, p.type, *p.args) for p in packets), packets


# -- binary packets -------------------------------------------------------------------


def test_header_layout_matches_the_protocol() -> None:
    assert request(PacketType.CAN_DO, b"fn") == b"\0REQ" + struct.pack(">II", 1, 2) + b"fn"
    assert response(PacketType.NOOP) == b"\0RES" + struct.pack(">II", 6, 0)
    assert request(PacketType.SUBMIT_JOB, b"f", b"u", b"d\0x") == (
        b"\0REQ" + struct.pack(">II", 7, 7) + b"f\0u\0d\0x"
    )


def test_the_types_are_those_of_gearmand() -> None:
    assert PacketType.SUBMIT_JOB_LOW_BG == 34
    assert PacketType.JOB_ASSIGN_UNIQ == 31
    assert PacketType.SET_WORKER_LOAD == 43
    assert set(ARG_COUNT) == set(PacketType)
    assert 0 not in {int(t) for t in PacketType}
    assert 5 not in {int(t) for t in PacketType}


@pytest.mark.parametrize("kind", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("magic", list(Magic), ids=lambda m: m.name)
def test_every_type_round_trips(kind: PacketType, magic: Magic) -> None:
    args = sample_args(kind)
    assert PacketDecoder().feed(encode(magic, kind, *args)) == [Packet(magic, kind, args)]


def test_empty_arguments_round_trip() -> None:
    packet = Packet(Magic.REQ, PacketType.SUBMIT_JOB, (b"f", b"", b""))
    assert PacketDecoder().feed(request(PacketType.SUBMIT_JOB, b"f", b"", b"")) == [packet]


def test_every_split_of_a_stream_gives_the_same_packets() -> None:
    stream, packets = stream_of_every_type()
    for cut in range(len(stream) + 1):
        decoder = PacketDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == packets, cut


def test_byte_by_byte_feeding() -> None:
    stream, packets = stream_of_every_type()
    decoder = PacketDecoder()
    got: list[Packet] = []
    for index in range(len(stream)):
        got += decoder.feed(stream[index : index + 1])
    assert got == packets


def test_memoryview_and_bytearray_input() -> None:
    data = response(PacketType.JOB_CREATED, b"H:x:1")
    assert PacketDecoder().feed(memoryview(data)) == PacketDecoder().feed(bytearray(data))


def test_incomplete_packet_waits_for_more() -> None:
    data = response(PacketType.WORK_COMPLETE, b"H:x:1", b"result")
    decoder = PacketDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.feed(data[-1:]) == [
        Packet(Magic.RES, PacketType.WORK_COMPLETE, (b"H:x:1", b"result"))
    ]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\0REX" + struct.pack(">II", 6, 0), "bad magic"),
        (b"GET / HTTP/1.1\r\n\r\n", "bad magic"),
        (b"\0RES" + struct.pack(">II", 0, 0), "unknown packet type 0"),
        (b"\0RES" + struct.pack(">II", 5, 0), "unknown packet type 5"),
        (b"\0RES" + struct.pack(">II", 44, 0), "unknown packet type 44"),
        (b"\0RES" + struct.pack(">II", 2**32 - 1, 0), "unknown packet type"),
        (b"\0RES" + struct.pack(">II", 6, 1) + b"x", "carries no arguments"),
        (b"\0RES" + struct.pack(">II", 11, 3) + b"a\0b", "needs 3 arguments"),
        (b"\0RES" + struct.pack(">II", 20, 4) + b"a\0b\0", "needs 5 arguments"),
    ],
)
def test_malformed_packets_raise_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        PacketDecoder().feed(data)


def test_oversized_length_is_refused_from_the_header_alone() -> None:
    header = b"\0RES" + struct.pack(">II", 13, MAX_PACKET_SIZE + 1)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        PacketDecoder().feed(header)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        PacketDecoder(max_size=10).feed(response(PacketType.ECHO_RES, b"x" * 11))
    assert PacketDecoder(max_size=10).feed(response(PacketType.ECHO_RES, b"x" * 10))


def test_expected_magic_is_enforced() -> None:
    with pytest.raises(ProtocolError, match="unexpected magic"):
        PacketDecoder(Magic.RES).feed(request(PacketType.CAN_DO, b"f"))
    assert PacketDecoder(Magic.REQ).feed(request(PacketType.CAN_DO, b"f"))


def test_decoder_refuses_input_after_an_error() -> None:
    decoder = PacketDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(b"\0BAD" + bytes(8))
    with pytest.raises(ProtocolError, match="bad magic"):
        decoder.feed(response(PacketType.NOOP))


def test_good_packets_before_a_bad_one_are_not_returned_as_success() -> None:
    with pytest.raises(ProtocolError):
        PacketDecoder().feed(response(PacketType.NOOP) + b"\0RES" + struct.pack(">II", 99, 0))


def test_encode_checks_argument_count_and_nul() -> None:
    with pytest.raises(ValueError, match="takes 3 argument"):
        request(PacketType.SUBMIT_JOB, b"f", b"u")
    with pytest.raises(ValueError, match="argument 1 of SUBMIT_JOB contains a NUL"):
        request(PacketType.SUBMIT_JOB, b"f\0x", b"u", b"d")
    with pytest.raises(ValueError, match="argument 2 of SUBMIT_JOB contains a NUL"):
        request(PacketType.SUBMIT_JOB, b"f", b"u\0", b"d")


# -- property tests -------------------------------------------------------------------

nul_free = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    kind = draw(st.sampled_from(ALL_TYPES))
    count = ARG_COUNT[kind]
    args = tuple(draw(nul_free) for _ in range(max(count - 1, 0)))
    if count:
        args += (draw(st.binary(max_size=200)),)
    return Packet(draw(st.sampled_from(list(Magic))), kind, args)


@given(st.lists(packets(), max_size=8), st.lists(st.integers(0, 10_000), max_size=6))
def test_any_packets_split_anywhere_round_trip(items: list[Packet], cuts: list[int]) -> None:
    stream = b"".join(encode(p.magic, p.type, *p.args) for p in items)
    points = sorted({min(c, len(stream)) for c in cuts})
    decoder = PacketDecoder()
    got: list[Packet] = []
    start = 0
    for point in [*points, len(stream)]:
        got += decoder.feed(stream[start:point])
        start = point
    assert got == items


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_bytes_raise_only_protocol_error(chunks: list[bytes]) -> None:
    decoder = PacketDecoder()
    try:
        for chunk in chunks:
            for packet in decoder.feed(chunk):
                assert isinstance(packet, Packet)
    except ProtocolError:
        pass


@settings(max_examples=500)
@given(packets(), st.integers(0, 300), st.integers(0, 255))
def test_a_corrupted_byte_gives_packets_or_protocol_error(
    packet: Packet, position: int, value: int
) -> None:
    stream = bytearray(encode(packet.magic, packet.type, *packet.args) * 2)
    stream[position % len(stream)] = value
    try:
        decoded = PacketDecoder().feed(bytes(stream))
    except ProtocolError:
        return
    assert all(isinstance(p, Packet) for p in decoded)
    assert len(decoded) <= 2


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_any_header_gives_packets_a_wait_or_protocol_error(
    code: int, size: int, body: bytes
) -> None:
    data = b"\0RES" + struct.pack(">II", code, size) + body
    try:
        decoded = PacketDecoder().feed(data)
    except ProtocolError:
        return
    # Accepted: a known type whose body is either complete (one packet) or still awaited.
    assert code in {int(t) for t in PacketType}
    assert size <= MAX_PACKET_SIZE
    assert len(decoded) == (1 if size <= len(body) else 0)


# -- admin replies --------------------------------------------------------------------


def test_admin_single_lines_with_both_line_ends() -> None:
    decoder = AdminDecoder()
    for _ in range(4):
        decoder.expect(block=False)
    replies = decoder.feed(b"OK 1.1.20\nOK\r\nERR UNKNOWN_JOB\r\nERR UNKNOWN_COMMAND Unknown+x\n")
    assert replies == [
        AdminReply(True, ("1.1.20",)),
        AdminReply(True, ()),
        AdminReply(False, ("UNKNOWN_JOB",)),
        AdminReply(False, ("UNKNOWN_COMMAND", "Unknown+x")),
    ]


def test_admin_blocks_and_split_points() -> None:
    stream = b"f\t1\t0\t2\r\ng\t0\t0\t0\n.\n.\nERR UNKNOWN_SHOW_ARGUMENTS\r\nOK 7\n"
    expected = [
        AdminReply(True, ("f\t1\t0\t2", "g\t0\t0\t0")),
        AdminReply(True, ()),
        AdminReply(False, ("UNKNOWN_SHOW_ARGUMENTS",)),
        AdminReply(True, ("7",)),
    ]
    for cut in range(len(stream) + 1):
        decoder = AdminDecoder()
        for block in (True, True, True, False):
            decoder.expect(block)
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == expected, cut


def test_admin_text_keeps_any_bytes() -> None:
    decoder = AdminDecoder()
    decoder.expect(block=True)
    (reply,) = decoder.feed("né\t0\t0\t1\n".encode() + b"\xff\t1\t1\t1\n.\n")
    assert reply.lines[0] == "né\t0\t0\t1"
    assert reply.lines[1].encode("utf-8", "surrogateescape") == b"\xff\t1\t1\t1"


@pytest.mark.parametrize(
    "block, data, message",
    [
        (False, b"hello\n", "neither 'OK ...' nor 'ERR ...'"),
        (None, b"OK\n", "no command outstanding"),
    ],
)
def test_admin_bad_replies(block: bool | None, data: bytes, message: str) -> None:
    decoder = AdminDecoder()
    if block is not None:
        decoder.expect(block)
    with pytest.raises(ProtocolError, match=message):
        decoder.feed(data)


def test_admin_overlong_line_is_refused() -> None:
    decoder = AdminDecoder(max_size=100)
    decoder.expect(block=False)
    with pytest.raises(ProtocolError, match="longer than 100"):
        decoder.feed(b"OK " + b"x" * 200)


@settings(max_examples=500)
@given(st.lists(st.booleans(), max_size=4), st.lists(st.binary(max_size=40), max_size=6))
def test_admin_random_bytes_raise_only_protocol_error(
    expected: list[bool], chunks: list[bytes]
) -> None:
    decoder = AdminDecoder(max_size=64)
    for block in expected:
        decoder.expect(block)
    try:
        for chunk in chunks:
            for reply in decoder.feed(chunk):
                assert isinstance(reply, AdminReply)
    except ProtocolError:
        pass


def test_admin_command_refuses_line_breaks() -> None:
    assert admin_command("status") == b"status\n"
    assert admin_command("drop function né") == "drop function né\n".encode()
    for bad in ("status\nshutdown", "x\r", "a\0b"):
        with pytest.raises(ValueError, match="newline, carriage return or NUL"):
            admin_command(bad)


# -- addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:4731", ("127.0.0.1", 4731)),
        ("localhost", ("localhost", 4730)),
        (" gear.example:1 ", ("gear.example", 1)),
        ("[::1]:4800", ("::1", 4800)),
        ("[::1]", ("::1", 4730)),
        ("::1", ("::1", 4730)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", ":4730", "host:0", "host:65536", "host:x", "[::1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(text)
