"""Simulated RFID readers that speak the real wire formats with our codecs.

- ``ZebraReaderSim``: a Zebra fixed reader publishing IoT Connector tag data events over MQTT for
  tags placed at its antennas (move them between antennas, remove them), with RSSI noise, a
  skewed clock, batching (several events in one message), duplicates and reordering.
- ``M100Sim``: an M100 UHF module on a pseudo-terminal answering inventory commands with tag
  notices; corrupt bytes, unplug and replug.

Faults come as a ``firmware_sim.faults.Faults``: ``clock_skew_s``, ``duplicate_rate`` and
``reorder_rate`` apply to the Zebra reader, ``corrupt_rate`` to the module; RSSI noise is
``rssi_noise_db`` (dB, gaussian standard deviation).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from devices.rfid import m100, zebra
from devices.rfid.config import tags_topic
from firmware_sim.faults import Faults, FaultyPublisher
from firmware_sim.login import NO_LOGIN, BrokerLogin
from firmware_sim.pty_port import ServingPtySim
from storeedge.errors import BrokerUnavailable, UsageError

log = logging.getLogger(__name__)


def zebra_time(ts: float) -> str:
    """A time as Zebra readers print it: ``2021-03-31T12:44:01.484+0000``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class _Field:
    """Tags in a reader's field: epc -> {antenna: mean RSSI}; thread-safe."""

    def __init__(self, rssi_noise_db: float, seed: int | None) -> None:
        self.rssi_noise_db = rssi_noise_db
        self._tags: dict[str, dict[int, float]] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def place(self, epc: str, antenna: int, rssi: float = -50.0,
              bleed: dict[int, float] | None = None) -> None:
        """Put (or move) a tag at ``antenna``; ``bleed`` adds weaker reads at other antennas."""
        bytes.fromhex(epc)  # a typo in a test should fail here, not in the codec
        with self._lock:
            self._tags[epc.upper()] = {antenna: rssi, **(bleed or {})}

    def remove(self, epc: str) -> None:
        """Take a tag out of the field."""
        with self._lock:
            self._tags.pop(epc.upper(), None)

    def reads(self) -> list[tuple[str, int, float]]:
        """One read per tag and antenna now: (epc, antenna, rssi with noise)."""
        with self._lock:
            out: list[tuple[str, int, float]] = []
            for epc, antennas in self._tags.items():
                for antenna, rssi in antennas.items():
                    if self.rssi_noise_db:
                        rssi += self._random.gauss(0.0, self.rssi_noise_db)
                    out.append((epc, antenna, round(rssi)))
            return out


class ZebraReaderSim(_Field):
    """A Zebra fixed reader: every ``period_s`` it reports each tag in its field once per
    antenna that sees it, ``batch`` events per MQTT message, on ``topic`` (default
    ``store/{store_id}/dev/{device_id}/tags``). Each event names the reader by MAC and host
    name, as the MAC and HOSTNAME tag metadata do (a locally administered MAC made from the
    device id, the host name an FX9600's: model and the MAC's last three bytes)."""

    def __init__(
        self,
        store_id: str,
        device_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        topic: str | None = None,
        period_s: float = 0.2,
        batch: int = 1,
        rssi_noise_db: float = 0.0,
        faults: Faults | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        login: BrokerLogin = NO_LOGIN,
    ) -> None:
        super().__init__(rssi_noise_db, seed)
        self.device_id = device_id
        self.host, self.port = host, port
        self.topic = topic or tags_topic(store_id, device_id)
        self.period_s = period_s
        self.batch = batch
        self.faults = faults or Faults()
        self.published = 0  # tag events
        self._clock = self.faults.device_clock(clock)
        self._event_num = 0
        digest = hashlib.sha256(device_id.encode()).digest()
        self.mac = ":".join(f"{b:02X}" for b in (0x02, *digest[:5]))
        self.host_name = "FX9600" + self.mac.replace(":", "")[6:]
        self._halt = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"zebra-sim-{store_id}-{device_id}")
        login.apply(self._client)
        self._client.on_connect = lambda *args: self._connected.set()
        self._publish = FaultyPublisher(self._raw_publish, self.faults,
                                        random.Random(None if seed is None else seed + 1))

    def start(self, timeout: float = 5.0) -> None:
        """Connect and start reporting; BrokerUnavailable when the broker is not there."""
        if self._thread is not None:
            raise UsageError(f"{self.device_id}: simulator already started")
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(f"{self.device_id}: cannot reach {self.host}:{self.port}: "
                                    f"{exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise BrokerUnavailable(f"{self.device_id}: no CONNACK from {self.host}:{self.port}")
        self._halt.clear()
        self._thread = threading.Thread(target=self._run, name=f"zebra-sim-{self.device_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reporting and disconnect (idempotent)."""
        if self._thread is None:
            return
        self._halt.set()
        self._thread.join()
        self._thread = None
        self._publish.flush()
        self._client.disconnect()
        self._client.loop_stop()

    def report(self) -> int:
        """Publish one round of reads now; returns the events sent."""
        events = []
        ts = zebra_time(self._clock())
        for epc, antenna, rssi in self.reads():
            self._event_num += 1
            events.append(zebra.encode(epc, antenna=antenna, rssi=rssi,
                                       event_num=self._event_num, ts=ts, mac=self.mac,
                                       host_name=self.host_name))
        for i in range(0, len(events), self.batch):
            self._publish(self.topic, b"".join(events[i:i + self.batch]))
        self.published += len(events)
        return len(events)

    def _raw_publish(self, topic: str, payload: bytes, qos: int = 0,
                     retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:  # paho reports by return code, never by raising
            log.warning("zebra sim %s: publish failed: %s", self.device_id,
                        mqtt.error_string(info.rc))
        return info

    def _run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.report()


def gen2_crc16(data: bytes) -> int:
    """The CRC-16 a Gen2 tag keeps over PC + EPC (CCITT polynomial, preset 0xFFFF, inverted)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc ^ 0xFFFF


MULTI_INVENTORY_CAP = 50  # rounds answered per 0x27, so a huge count cannot flood a test


class M100Sim(_Field, ServingPtySim):
    """An M100 module behind ``link_path`` (a pty). Tags are placed at antenna 1 (the module
    has one). ``start()`` plugs it in and answers on a thread; ``stop()`` unplugs it."""

    kind = "m100 sim"
    _log = log

    def __init__(
        self,
        device_id: str,
        link_path: str | os.PathLike[str],
        *,
        framing: m100.Framing | str = m100.Framing.BB7E,
        rssi_noise_db: float = 0.0,
        faults: Faults | None = None,
        seed: int | None = None,
    ) -> None:
        _Field.__init__(self, rssi_noise_db, seed)
        self.framing = m100.Framing(framing)
        ServingPtySim.__init__(self, device_id, link_path, faults, random.Random(seed),
                               m100.FrameParser(self.framing))
        self.commands = 0
        self._silent = False

    def mute(self, silent: bool = True) -> None:
        """Stop (or resume) answering, as a hung module does."""
        self._silent = silent

    def _handle(self, master: int, frame: object) -> None:
        if isinstance(frame, m100.Frame) and frame.type == m100.FrameType.COMMAND:
            self.commands += 1
            if not self._silent:
                for reply in self._answer(frame):
                    self._send(master, reply)

    def _answer(self, cmd: m100.Frame) -> list[bytes]:
        f = self.framing
        if cmd.command == m100.Command.SINGLE_INVENTORY:
            return self._inventory() or [m100.ErrorResponse(m100.ErrorCode.NO_TAG).encode(f)]
        if cmd.command == m100.Command.MULTI_INVENTORY and len(cmd.payload) == 3:
            rounds = min(int.from_bytes(cmd.payload[1:], "big"), MULTI_INVENTORY_CAP)
            return [frame for _ in range(rounds) for frame in self._inventory()]
        if cmd.command == m100.Command.STOP_MULTI_INVENTORY:
            return [m100.Frame(m100.FrameType.RESPONSE, cmd.command, b"\x00").encode(f)]
        if cmd.command == m100.Command.GET_MODULE_INFO and len(cmd.payload) == 1:
            info = (b"M100 26dBm V1.0", b"V2.3.1", b"MagicRF")[min(cmd.payload[0], 2)]
            return [m100.Frame(m100.FrameType.RESPONSE, cmd.command, cmd.payload + info).encode(f)]
        return [m100.ErrorResponse(m100.ErrorCode.COMMAND_ERROR).encode(f)]

    def _inventory(self) -> list[bytes]:
        out = []
        for epc, _antenna, rssi in self.reads():
            raw = bytes.fromhex(epc)
            pc = (len(raw) // 2) << 11
            crc = gen2_crc16(pc.to_bytes(2, "big") + raw)
            out.append(m100.TagNotice(max(-128, min(127, int(rssi))), pc, epc, crc)
                       .encode(self.framing))
        return out
