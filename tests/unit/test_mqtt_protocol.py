"""The MQTT 3.1.1 codec: golden bytes from the OASIS spec's examples, round trips fed one byte at
a time, and garbage that never raises anything but FrameError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.mqtt.protocol import (
    DUP_FLAG,
    ConnAck,
    Decoder,
    MqttFrameError,
    OversizedPublish,
    Packet,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Will,
    encode_connect,
    encode_disconnect,
    encode_pingreq,
    encode_puback,
    encode_publish,
    encode_remaining_length,
    encode_subscribe,
)
from storeedge.errors import FrameError, UsageError


def one_byte_at_a_time(data: bytes) -> list[object]:
    d = Decoder()
    out: list[object] = []
    for i in range(len(data)):
        out += d.feed(data[i:i + 1])
    assert d.pending == 0
    return out


# Section 2.2.3, Table 2.4: the bounds of each Remaining Length size.
@pytest.mark.parametrize("n, encoded", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_remaining_length_table(n: int, encoded: bytes) -> None:
    assert encode_remaining_length(n) == encoded


def test_connect_matches_the_spec_example() -> None:
    # 3.1.2.11, Figure 3.6: protocol "MQTT", level 4, flags 0xCE (user name, password,
    # will QoS 1, will flag, clean session), keep alive 10.
    packet = encode_connect("c", clean_session=True, keepalive=10, username="u", password="p",
                            will=Will("w", b"m", qos=1))
    variable = b"\x00\x04MQTT\x04\xce\x00\x0a"
    payload = b"\x00\x01c" + b"\x00\x01w\x00\x01m" + b"\x00\x01u" + b"\x00\x01p"
    assert packet == b"\x10" + bytes((len(variable) + len(payload),)) + variable + payload


def test_connect_minimal_persistent_session() -> None:
    assert encode_connect("ab", clean_session=False, keepalive=60) == (
        b"\x10\x0e\x00\x04MQTT\x04\x00\x00\x3c\x00\x02ab")


def test_publish_matches_the_spec_example() -> None:
    # 3.3.2.3, Figure 3.11: topic "a/b", packet identifier 10.
    packet = encode_publish("a/b", b"hi", qos=1, packet_id=10)
    assert packet == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    assert Decoder().feed(packet) == [Publish("a/b", b"hi", 1, False, False, 10)]
    assert encode_publish("a/b", b"", retain=True) == b"\x31\x05\x00\x03a/b"
    assert encode_publish("a/b", b"", qos=1, dup=True, packet_id=1)[0] == 0x3A


def test_subscribe_and_control_packets() -> None:
    # 3.8.1: SUBSCRIBE's fixed header flags are 0010; 3.8.3.1 Figure 3.23 style payload.
    assert encode_subscribe(10, [("a/b", 1), ("c/d", 2)]) == (
        b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/d\x02")
    assert encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert encode_pingreq() == b"\xc0\x00"
    assert encode_disconnect() == b"\xe0\x00"


def test_server_packets_decode() -> None:
    data = (b"\x20\x02\x01\x00" + b"\x20\x02\x00\x05" + b"\x90\x05\x00\x07\x00\x01\x80"
            + b"\x40\x02\x00\x07" + b"\xd0\x00")
    assert one_byte_at_a_time(data) == [ConnAck(True, 0), ConnAck(False, 5),
                                        SubAck(7, (0, 1, 0x80)), PubAck(7), PingResp()]
    assert ConnAck(False, 5).reason == "not authorized"


def test_feed_batch_returns_messages_and_ack_ids() -> None:
    d = Decoder()
    data = (encode_publish("t/1", b"a") + encode_publish("t/2", b"b", qos=1, packet_id=9)
            + b"\xd0\x00" + encode_publish("t/3", b"c", qos=1, packet_id=10)[:5])
    msgs, acks, others = d.feed_batch(data)
    assert msgs == [("t/1", b"a"), ("t/2", b"b")] and acks == [9] and others == [PingResp()]
    assert d.pending == 5
    msgs, acks, others = d.feed_batch(encode_publish("t/3", b"c", qos=1, packet_id=10)[5:])
    assert msgs == [("t/3", b"c")] and acks == [10] and others == []


def test_large_publish_with_multibyte_length_split_anywhere() -> None:
    payload = bytes(range(256)) * 1000
    packet = encode_publish("big", payload, qos=1, packet_id=65535)
    assert packet[1] & 0x80 and packet[2] & 0x80  # three length bytes
    for cut in (1, 2, 3, 4, 6, len(packet) - 1):
        d = Decoder()
        assert d.feed(packet[:cut]) == []
        assert d.feed(packet[cut:]) == [Publish("big", payload, 1, False, False, 65535)]


@pytest.mark.parametrize("data, why", [
    (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
    (b"\x10\x00", "CONNECT"),
    (b"\xe0\x00", "DISCONNECT"),
    (b"\x50\x02\x00\x01", "QoS 2"),
    (b"\x00\x00", "reserved"),
    (b"\x30\x03\x00\x05a", "truncated"),
    (b"\x32\x05\x00\x03a/b", "truncated"),
    (b"\x36\x06\x00\x01a\x00\x01x", "QoS 3"),
    (b"\x32\x06\x00\x01a\x00\x00x", "packet id 0"),
    (b"\x30\x04\x00\x02\xff\xfe", "not UTF-8"),
    (b"\x20\x03\x00\x00\x00", "CONNACK"),
    (b"\x21\x02\x00\x00", "reserved flags"),
    (b"\x90\x03\x00\x01\x03", "return code"),
    (b"\xd0\x01\x00", "PINGRESP"),
])
def test_malformed_input_raises_frame_error(data: bytes, why: str) -> None:
    with pytest.raises(MqttFrameError, match=why):
        Decoder().feed(data)
    assert issubclass(MqttFrameError, FrameError)


def test_oversized_publish_is_skipped_without_holding_its_payload() -> None:
    # 3.3.1: 0x33 = PUBLISH, QoS 1 (bits 2-1), RETAIN (bit 0); 3.3.2: topic "t/x", packet id 7.
    big = b"\x33\x87\x08\x00\x03t/x\x00\x07" + bytes(1024)  # Remaining Length 1031 (2.2.3)
    after = encode_publish("t/y", b"next", qos=1, packet_id=8)
    d = Decoder(max_packet_size=1000)
    out: list[object] = []
    held = 0
    for byte in big:
        out += d.feed(bytes((byte,)))
        held = max(held, d.pending)
    for byte in after:
        out += d.feed(bytes((byte,)))
    assert out == [OversizedPublish("t/x", 1031, 1, True, False, 7),
                   Publish("t/y", b"next", 1, False, False, 8)]
    assert held <= 9  # the fixed header, topic and packet id at most: never the payload
    assert d.pending == 0


def test_oversized_publish_ack_keeps_its_place_in_a_batch() -> None:
    # 4.6: PUBACKs go in the order the PUBLISHes came; the skipped one is acknowledged too.
    d = Decoder(max_packet_size=100)
    data = (encode_publish("a", b"1", qos=1, packet_id=5)
            + encode_publish("big", bytes(500), qos=1, packet_id=6)
            + encode_publish("b", b"2", qos=1, packet_id=9)
            + encode_publish("big", bytes(500)))
    msgs, acks, others = d.feed_batch(data[:150])
    msgs2, acks2, others2 = d.feed_batch(data[150:])
    assert msgs + msgs2 == [("a", b"1"), ("b", b"2")]
    assert acks + acks2 == [5, 6, 9]
    assert others + others2 == [OversizedPublish("big", 507, 1, False, False, 6),
                                OversizedPublish("big", 505)]


def test_oversized_packet_other_than_publish_is_garbage() -> None:
    with pytest.raises(MqttFrameError, match=r"type 9 .* exceeds the 1000-byte limit"):
        Decoder(max_packet_size=1000).feed(b"\x90\x80\x10")
    with pytest.raises(UsageError, match="max_packet_size"):
        Decoder(max_packet_size=1)


def test_retain_and_dup_flags_are_kept() -> None:
    # 3.3.1.3 RETAIN is bit 0, 3.3.1.1 DUP bit 3 of the fixed header: 0x31 retained QoS 0,
    # 0x3a a re-delivered QoS 1 PUBLISH (packet id 3), 0x30 neither.
    data = (b"\x31\x04\x00\x01ap" + b"\x3a\x06\x00\x01b\x00\x03q"
            + b"\x30\x04\x00\x01cr")
    assert one_byte_at_a_time(data) == [Publish("a", b"p", 0, True, False, None),
                                        Publish("b", b"q", 1, False, True, 3),
                                        Publish("c", b"r")]
    msgs, acks, _ = Decoder().feed_batch(data)
    assert msgs == [("a", b"p"), ("b", b"q"), ("c", b"r")] and acks == [3]
    assert [msgs.retain(i) for i in range(3)] == [True, False, False]
    assert [msgs.dup(i) for i in range(3)] == [False, True, False]
    assert msgs.subset([1, 2]).flags == {0: DUP_FLAG}


def test_encoders_refuse_misuse() -> None:
    with pytest.raises(UsageError):
        encode_publish("t", b"", qos=1)
    with pytest.raises(UsageError):
        encode_publish("t", b"", qos=0, packet_id=1)
    with pytest.raises(UsageError):
        encode_puback(0)
    with pytest.raises(UsageError):
        encode_connect("c", password="p")


topics = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
                 min_size=1, max_size=40)
publishes = st.builds(
    lambda topic, payload, qos, retain, dup, pid: Publish(
        topic, payload, qos, retain, dup and qos == 1, pid if qos else None),
    topics, st.binary(max_size=300), st.sampled_from([0, 1]), st.booleans(), st.booleans(),
    st.integers(1, 65535))


def encode(p: Publish | PubAck) -> bytes:
    if isinstance(p, PubAck):
        return encode_puback(p.packet_id)
    return encode_publish(p.topic, p.payload, qos=p.qos, retain=p.retain, dup=p.dup,
                          packet_id=p.packet_id)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(publishes, st.builds(PubAck, st.integers(1, 65535))), max_size=8))
def test_round_trip_one_byte_at_a_time(packets: list[Publish | PubAck]) -> None:
    data = b"".join(encode(p) for p in packets)
    assert one_byte_at_a_time(data) == packets
    assert Decoder().feed(data) == packets


@settings(max_examples=100, deadline=None)
@given(st.lists(publishes, max_size=8), st.data())
def test_feed_batch_agrees_with_feed_across_any_split(packets: list[Publish],
                                                      data: st.DataObject) -> None:
    raw = b"".join(encode(p) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=5)))
    d = Decoder()
    msgs: list[tuple[str, bytes]] = []
    acks: list[int] = []
    for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=False):
        m, k, o = d.feed_batch(raw[a:b])
        msgs += m
        acks += k
        assert o == []
    assert msgs == [(p.topic, p.payload) for p in packets]
    assert acks == [p.packet_id for p in packets if p.qos]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 7))
def test_garbage_raises_only_frame_error(garbage: bytes, step: int) -> None:
    d = Decoder()
    try:
        for i in range(0, len(garbage), step):
            for p in d.feed(garbage[i:i + step]):
                assert isinstance(p, (ConnAck, Publish, PubAck, SubAck, PingResp))
    except FrameError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(publishes, max_size=8), st.data())
def test_oversized_publishes_skipped_across_any_split(packets: list[Publish],
                                                      data: st.DataObject) -> None:
    limit = 64
    raw = b"".join(encode(p) for p in packets)
    expected: list[Packet] = []
    for p in packets:
        packet = encode(p)
        header = 2
        while packet[header - 1] & 0x80:  # 2.2.3: bit 7 of a length byte = another follows
            header += 1
        size = len(packet) - header
        expected.append(p if size <= limit else OversizedPublish(
            p.topic, size, p.qos, p.retain, p.dup, p.packet_id))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    d = Decoder(max_packet_size=limit)
    got: list[Packet] = []
    for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=False):
        got += d.feed(raw[a:b])
    assert got == expected
    assert d.pending == 0
