"""A sans-I/O MQTT 3.1.1 codec for the client side (OASIS Standard, 29 October 2014).

Encoders build the packets a client sends (CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ,
DISCONNECT); ``Decoder.feed`` turns whatever bytes arrived into the packets a server sends a
client (CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP) as frozen dataclasses, across arbitrary
splits. Malformed input raises ``MqttFrameError`` (a ``storeedge.errors.FrameError``); after it
the connection must be closed (section 4.8), so the decoder is not meant to be fed again.

A PUBLISH larger than the decoder's ``max_packet_size`` is not an error: its topic and packet id
are read, its payload is discarded as it arrives without being held, and it comes out as one
``OversizedPublish`` (to be acknowledged like any other, so the broker does not send it again).
Any other packet that large is garbage and raises ``MqttFrameError``.

QoS 2 is not implemented: we never subscribe above QoS 1, so a server never sends it (3.8.4);
PUBREC/PUBREL/PUBCOMP from a server are treated as a protocol violation.

The hot path is ``Decoder.feed_batch``: one call per socket read, returning every PUBLISH as a
plain ``(topic, payload)`` tuple in a ``Batch`` plus the packet ids to acknowledge, with no
per-message object beyond those two strings (the few messages with RETAIN or DUP set have them
in ``Batch.flags``). ``feed`` is the typed, h11-style view of the same parser.

Bytes of a packet not yet complete are appended to one ``bytearray`` and parsed once the packet
is whole, so a packet arriving in many reads costs time linear in its size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storeedge.errors import FrameError, UsageError

# 2.2.1 Control packet types (the high nibble of byte 1).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# 2.2.3: the largest Remaining Length four bytes can carry.
MAX_REMAINING_LENGTH = 268_435_455

# What a decoder accepts unless told otherwise: device messages are a few hundred bytes.
DEFAULT_MAX_PACKET_SIZE = 1024 * 1024

# 3.3.1.1 DUP and 3.3.1.3 RETAIN: bits of a PUBLISH's first byte.
DUP_FLAG, RETAIN_FLAG = 0x08, 0x01

# 3.2.2.3 Table 3.1: CONNACK return codes.
CONNACK_REASONS = {
    0: "connection accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttFrameError(FrameError):
    """The broker sent bytes that are not a valid MQTT 3.1.1 packet for a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message, source="mqtt")


# Packets a client receives. One base class, frozen, slotted (STYLE.md: h11 events).

@dataclass(frozen=True, slots=True)
class Packet:
    """Base of every decoded packet."""


@dataclass(frozen=True, slots=True)
class ConnAck(Packet):
    session_present: bool
    return_code: int

    @property
    def reason(self) -> str:
        return CONNACK_REASONS.get(self.return_code, f"reserved return code {self.return_code}")


@dataclass(frozen=True, slots=True)
class Publish(Packet):
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class OversizedPublish(Packet):
    """A PUBLISH above the decoder's ``max_packet_size``: its payload was discarded unread.
    ``size`` is its Remaining Length (2.2.3)."""

    topic: str
    size: int
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(frozen=True, slots=True)
class PubAck(Packet):
    packet_id: int


@dataclass(frozen=True, slots=True)
class SubAck(Packet):
    packet_id: int
    granted: tuple[int, ...]  # 0, 1, 2 or 0x80 (failure), one per topic filter (3.9.3)


@dataclass(frozen=True, slots=True)
class PingResp(Packet):
    pass


@dataclass(frozen=True, slots=True)
class Will:
    """A last will (3.1.2.5-3.1.2.7, 3.1.3.2-3.1.3.3)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class Batch(list[tuple[str, bytes]]):
    """The PUBLISHes of one read, in order, as ``(topic, payload)``. ``flags`` maps the index
    of each message with DUP (3.3.1.1) or RETAIN (3.3.1.3) set to those bits (``DUP_FLAG``,
    ``RETAIN_FLAG``); most messages have neither, and no entry."""

    __slots__ = ("flags",)

    def __init__(self, messages: Iterable[tuple[str, bytes]] = ()) -> None:
        super().__init__(messages)
        self.flags: dict[int, int] = {}

    def retain(self, index: int) -> bool:
        """Whether message ``index`` is a retained message the broker held (3.3.1.3)."""
        return bool(self.flags.get(index, 0) & RETAIN_FLAG)

    def dup(self, index: int) -> bool:
        """Whether message ``index`` may have been delivered before (3.3.1.1)."""
        return bool(self.flags.get(index, 0) & DUP_FLAG)

    def subset(self, indexes: Iterable[int]) -> Batch:
        """The messages at ``indexes``, in that order, with their flags."""
        out = Batch()
        for i in indexes:
            if i in self.flags:
                out.flags[len(out)] = self.flags[i]
            out.append(self[i])
        return out


# Encoders


def encode_remaining_length(n: int) -> bytes:
    """2.2.3: seven bits a byte, least significant group first, bit 7 = more bytes follow."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise UsageError(f"MQTT packet too large: {n} bytes")
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def _string(s: str | bytes, what: str) -> bytes:
    """1.5.3: a UTF-8 string is a 16-bit big-endian length then the bytes."""
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise UsageError(f"MQTT {what} longer than 65,535 bytes")
    return len(b).to_bytes(2, "big") + b


def _check_packet_id(packet_id: int) -> None:
    # 2.3.1: a non-zero 16-bit integer.
    if not 0 < packet_id <= 0xFFFF:
        raise UsageError(f"MQTT packet id must be 1..65535, not {packet_id}")


def _check_qos(qos: int, allowed: tuple[int, ...] = (0, 1)) -> None:
    if qos not in allowed:
        raise UsageError(f"unsupported MQTT QoS {qos}")


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def encode_connect(client_id: str, *, clean_session: bool = True, keepalive: int = 60,
                   username: str | None = None, password: str | bytes | None = None,
                   will: Will | None = None) -> bytes:
    """3.1 CONNECT."""
    if not 0 <= keepalive <= 0xFFFF:
        raise UsageError("MQTT keepalive must be 0..65535 seconds")
    if password is not None and username is None:
        raise UsageError("an MQTT 3.1.1 password needs a user name")  # 3.1.2.9
    flags = 0x02 if clean_session else 0  # 3.1.2.4
    payload = [_string(client_id, "client id")]  # 3.1.3.1
    if will is not None:
        _check_qos(will.qos, (0, 1, 2))
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)  # 3.1.2.5-3.1.2.7
        payload += [_string(will.topic, "will topic"), _string(will.payload, "will message")]
    if username is not None:
        flags |= 0x80  # 3.1.2.8
        payload.append(_string(username, "user name"))
    if password is not None:
        flags |= 0x40  # 3.1.2.9; 3.1.3.5: binary data, same length prefix
        payload.append(_string(password, "password"))
    # 3.1.2.1-3.1.2.3: protocol name "MQTT", level 4, then flags and keep alive (3.1.2.10).
    header = b"\x00\x04MQTT\x04" + bytes((flags,)) + keepalive.to_bytes(2, "big")
    return _frame(CONNECT << 4, header + b"".join(payload))


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """3.8 SUBSCRIBE: fixed header flags are 0b0010 (3.8.1); at least one filter (3.8.3)."""
    _check_packet_id(packet_id)
    if not filters:
        raise UsageError("SUBSCRIBE needs at least one topic filter")
    parts = [packet_id.to_bytes(2, "big")]
    for topic_filter, qos in filters:
        _check_qos(qos, (0, 1, 2))
        parts += [_string(topic_filter, "topic filter"), bytes((qos,))]
    return _frame((SUBSCRIBE << 4) | 0x02, b"".join(parts))


def encode_publish(topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
                   dup: bool = False, packet_id: int | None = None) -> bytes:
    """3.3 PUBLISH. DUP must be 0 at QoS 0 (3.3.1.1); a packet id only when QoS > 0 (2.3.1)."""
    _check_qos(qos)
    first = 0x30 | (qos << 1) | (0x01 if retain else 0)
    topic_b = topic.encode()
    if len(topic_b) > 0xFFFF:
        raise UsageError("MQTT topic longer than 65,535 bytes")
    if qos:
        if packet_id is None:
            raise UsageError("a QoS 1 PUBLISH needs a packet id")
        _check_packet_id(packet_id)
        if dup:
            first |= 0x08
        pid = packet_id.to_bytes(2, "big")
    else:
        if dup or packet_id is not None:
            raise UsageError("a QoS 0 PUBLISH has neither DUP nor a packet id")
        pid = b""
    n = 2 + len(topic_b) + len(pid) + len(payload)
    # The one- and two-byte remaining lengths of every alert and reading, without a call.
    if n < 128:
        head = bytes((first, n))
    elif n < 16_384:
        head = bytes((first, (n & 0x7F) | 0x80, n >> 7))
    else:
        head = bytes((first,)) + encode_remaining_length(n)
    return b"".join((head, len(topic_b).to_bytes(2, "big"), topic_b, pid, payload))


def encode_puback(packet_id: int) -> bytes:
    """3.4 PUBACK."""
    _check_packet_id(packet_id)
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def encode_pubacks(packet_ids: list[int]) -> bytes:
    """Many PUBACKs in one write (the ids come from the decoder, so they are valid)."""
    return b"".join([b"\x40\x02" + p.to_bytes(2, "big") for p in packet_ids])


def encode_pingreq() -> bytes:
    """3.12 PINGREQ."""
    return b"\xc0\x00"


def encode_disconnect() -> bytes:
    """3.14 DISCONNECT: the server then discards the will (3.14.4)."""
    return b"\xe0\x00"


# Decoder

_REJECTED = {
    CONNECT: "CONNECT", PUBREC: "PUBREC (QoS 2 is not used)", PUBREL: "PUBREL (QoS 2 is not used)",
    PUBCOMP: "PUBCOMP (QoS 2 is not used)", SUBSCRIBE: "SUBSCRIBE", UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK (we never unsubscribe)", PINGREQ: "PINGREQ", DISCONNECT: "DISCONNECT",
    0: "reserved type 0", 15: "reserved type 15",
}


class Decoder:
    """Incremental decoder of server-to-client packets. Feed it every byte received, in order."""

    __slots__ = ("_buf", "_need", "_skip", "_skipped", "_topics", "max_packet_size")

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        if not 2 <= max_packet_size <= MAX_REMAINING_LENGTH:
            raise UsageError(f"max_packet_size must be 2..{MAX_REMAINING_LENGTH} bytes, "
                             f"not {max_packet_size}")
        self.max_packet_size = max_packet_size
        # The start of a packet not yet complete, and how long it must grow before it is
        # worth parsing again (the whole packet once its header is known).
        self._buf = bytearray()
        self._need = 0
        # Bytes of an oversized PUBLISH still to discard, and the packet they end.
        self._skip = 0
        self._skipped: OversizedPublish | None = None
        # Topics repeat (a store has a few hundred devices): decode each one's UTF-8 once.
        self._topics: dict[bytes, str] = {}

    @property
    def pending(self) -> int:
        """Bytes held of a packet not yet complete (an oversized one's discarded bytes are
        not held)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        """Every packet completed by ``data``, in order, typed."""
        return self._parse(data, None, None)

    def feed_batch(self, data: bytes) -> tuple[Batch, list[int], list[Packet]]:
        """The hot path: ``(messages, ack_ids, others)``: every PUBLISH completed by ``data`` as
        ``(topic, payload)`` in order, the packet ids of those at QoS 1 (to PUBACK once they
        are processed, in this order, 4.6), and every other packet typed, ``OversizedPublish``
        included (its id, if any, is among ``ack_ids`` in its place)."""
        messages = Batch()
        acks: list[int] = []
        others = self._parse(data, messages, acks)
        return messages, acks, others

    def _emit_skipped(self, out: list[Packet], acks: list[int] | None) -> None:
        skipped, self._skipped = self._skipped, None
        assert skipped is not None
        out.append(skipped)
        if acks is not None and skipped.packet_id is not None:
            acks.append(skipped.packet_id)

    def _parse(self, data: bytes, messages: Batch | None,
               acks: list[int] | None) -> list[Packet]:
        out: list[Packet] = []
        if self._skip:
            # Discarding the payload of an oversized PUBLISH: nothing of it is kept.
            if len(data) < self._skip:
                self._skip -= len(data)
                return out
            data = data[self._skip:]
            self._skip = 0
            self._emit_skipped(out, acks)
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return out
            data = bytes(buf)
            buf.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        topics = self._topics
        end = len(data)
        pos = 0
        need = 0
        while pos < end:
            if end - pos < 2:
                need = 2
                break
            first = data[pos]
            # 2.2.3 Remaining Length; one byte in the common case.
            b = data[pos + 1]
            if b < 0x80:
                length = b
                start = pos + 2
            else:
                length = b & 0x7F
                shift = 7
                i = pos + 2
                while True:
                    if i >= end:
                        if i - pos > 4:
                            raise MqttFrameError("remaining length longer than 4 bytes")
                        length = -1
                        break
                    b = data[i]
                    length |= (b & 0x7F) << shift
                    i += 1
                    if b < 0x80:
                        break
                    if i - pos > 4:  # a fifth length byte would follow (2.2.3)
                        raise MqttFrameError("remaining length longer than 4 bytes")
                    shift += 7
                if length < 0:
                    need = end - pos + 1
                    break
                start = i
            kind = first >> 4
            if length > self.max_packet_size:
                if kind != PUBLISH:
                    raise MqttFrameError(f"packet of type {kind} and {length} bytes exceeds the "
                                         f"{self.max_packet_size}-byte limit")
                head = self._oversized(data, first, start, length)
                if head < 0:  # its topic or packet id not here yet
                    need = start - pos - head
                    break
                if start + length <= end:
                    self._emit_skipped(out, acks)
                    pos = start + length
                    continue
                self._skip = start + length - end
                pos = end
                break
            stop = start + length
            if stop > end:
                need = stop - pos
                break
            if kind == PUBLISH:
                # 3.3.1: DUP (bit 3), QoS (bits 2-1), RETAIN (bit 0); 3.3.2.1 topic name.
                qos = (first >> 1) & 0x03
                if length < 2:
                    raise MqttFrameError("PUBLISH shorter than its topic length")
                tlen = (data[start] << 8) | data[start + 1]
                t0 = start + 2
                t1 = t0 + tlen
                p0 = t1 + 2 if qos else t1
                if p0 > stop:
                    raise MqttFrameError("PUBLISH truncated inside its topic or packet id")
                raw = data[t0:t1]
                topic = topics.get(raw)
                if topic is None:
                    topic = _decode_topic(raw)
                    if len(topics) < 4096:
                        topics[raw] = topic
                payload = data[p0:stop]
                pid = _publish_packet_id(data, first, t1) if qos else None
                if messages is not None:
                    if first & 0x09:
                        messages.flags[len(messages)] = first & 0x09
                    messages.append((topic, payload))
                    if pid is not None:
                        acks.append(pid)  # type: ignore[union-attr]
                else:
                    out.append(Publish(topic, payload, qos, bool(first & RETAIN_FLAG),
                                       bool(first & DUP_FLAG), pid))
            else:
                out.append(self._control(first, kind, data, start, length))
            pos = stop
        if pos < end:
            buf += memoryview(data)[pos:]
            self._need = need
        return out

    def _oversized(self, data: bytes, first: int, start: int, length: int) -> int:
        """Read an oversized PUBLISH's topic and packet id (3.3.2) into ``_skipped``. Returns
        how many body bytes that took, or minus how many are needed when not all are here."""
        have = len(data) - start
        if have < 2:
            return -2
        qos = (first >> 1) & 0x03
        t1 = start + 2 + ((data[start] << 8) | data[start + 1])
        head = t1 - start + (2 if qos else 0)
        if head > length:
            raise MqttFrameError("PUBLISH truncated inside its topic or packet id")
        if have < head:
            return -head
        pid = _publish_packet_id(data, first, t1) if qos else None
        self._skipped = OversizedPublish(
            _decode_topic(data[start + 2:t1]), length, qos, bool(first & RETAIN_FLAG),
            bool(first & DUP_FLAG), pid)
        return head

    @staticmethod
    def _control(first: int, kind: int, data: bytes, start: int, length: int) -> Packet:
        if kind in _REJECTED:
            raise MqttFrameError(f"unexpected {_REJECTED[kind]} packet from the server")
        if first & 0x0F:  # 2.2.2: reserved flags of these packets are 0
            raise MqttFrameError(f"packet type {kind} with reserved flags {first & 0x0F:#x}")
        if kind == CONNACK:  # 3.2
            if length != 2:
                raise MqttFrameError(f"CONNACK remaining length {length}, expected 2")
            ack_flags, code = data[start], data[start + 1]
            if ack_flags & 0xFE:
                raise MqttFrameError("CONNACK with reserved acknowledge flags set")  # 3.2.2.1
            return ConnAck(bool(ack_flags & 1), code)
        if kind == PUBACK:  # 3.4
            if length != 2:
                raise MqttFrameError(f"PUBACK remaining length {length}, expected 2")
            return PubAck((data[start] << 8) | data[start + 1])
        if kind == SUBACK:  # 3.9
            if length < 3:
                raise MqttFrameError("SUBACK without a return code")
            granted = tuple(data[start + 2:start + length])
            for code in granted:
                if code not in (0, 1, 2, 0x80):
                    raise MqttFrameError(f"SUBACK return code {code:#x}")  # 3.9.3
            return SubAck((data[start] << 8) | data[start + 1], granted)
        # PINGRESP, 3.13
        if length != 0:
            raise MqttFrameError(f"PINGRESP remaining length {length}, expected 0")
        return PingResp()


def _publish_packet_id(data: bytes, first: int, at: int) -> int:
    """The packet id of a PUBLISH at QoS 1 (3.3.2.2), whose first byte is ``first``."""
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise MqttFrameError("PUBLISH with QoS 3")  # 3.3.1.2
    if qos == 2:
        raise MqttFrameError("PUBLISH at QoS 2, which we never subscribe to")  # 3.8.4
    pid = (data[at] << 8) | data[at + 1]
    if pid == 0:
        raise MqttFrameError("PUBLISH with packet id 0")  # 2.3.1
    return pid


def _decode_topic(raw: bytes) -> str:
    try:
        topic = raw.decode()
    except UnicodeDecodeError as exc:  # 1.5.3: ill-formed UTF-8 closes the connection
        raise MqttFrameError(f"PUBLISH topic is not UTF-8: {exc}") from exc
    if "\x00" in topic:
        raise MqttFrameError("PUBLISH topic contains U+0000")  # [MQTT-1.5.3-2]
    return topic
