"""The Zebra reader simulator against a real Mosquitto, read back with our codec into presence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiomqtt
import pytest

from devices.rfid import zebra
from devices.rfid.config import RfidZebraDevice, tags_topic
from edge_agent.services import Service
from firmware_sim.faults import Faults
from firmware_sim.rfid import ZebraReaderSim
from rules.trackers.presence import PresenceParams, PresenceTracker
from storeedge.events import TagPresence, TagRead

EPC1 = "3074257BF7194E4000001A85"
EPC2 = "3074257BF7194E4000001A86"


@pytest.fixture
async def client(mosquitto: Service) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        yield c


@pytest.fixture
def device() -> RfidZebraDevice:
    return RfidZebraDevice(type="rfid_zebra", id="fx-1", antennas={1: "A1", 2: "A2"})


@pytest.fixture
def sim(mosquitto: Service, store_id: str) -> Iterator[ZebraReaderSim]:
    reader = ZebraReaderSim(store_id, "fx-1", port=mosquitto.port, period_s=0.02, batch=3,
                            rssi_noise_db=2.0, seed=1,
                            faults=Faults(clock_skew_s=-120.0, duplicate_rate=0.1))
    yield reader
    reader.stop()


async def pump(c: aiomqtt.Client, device: RfidZebraDevice, store_id: str,
               tracker: PresenceTracker, out: list[TagPresence], reads: list[TagRead],
               until: object, within: float = 10.0) -> None:
    """Decode messages into the tracker until ``until()`` holds."""
    async with asyncio.timeout(within):
        async for msg in c.messages:
            assert isinstance(msg.payload, bytes)
            batch = zebra.decode(msg.payload, device=device, store_id=store_id,
                                 received_ts=time.time())
            reads += batch
            for read in batch:
                location = device.location_of(read.antenna)
                assert location is not None
                out += tracker.observe(read, location)
            if until():  # type: ignore[operator]
                return


async def test_reads_become_presence(sim: ZebraReaderSim, client: aiomqtt.Client,
                                     device: RfidZebraDevice, store_id: str) -> None:
    await client.subscribe(tags_topic(store_id, "fx-1"))
    tracker = PresenceTracker(PresenceParams(departed_after_s=30.0), {EPC1: "SKU-1"}.get)
    out: list[TagPresence] = []
    reads: list[TagRead] = []
    sim.place(EPC1, 1, rssi=-50.0, bleed={2: -70.0})
    sim.place(EPC2, 2, rssi=-55.0)
    sim.start()
    await pump(client, device, store_id, tracker, out, reads,
               lambda: tracker.present() == {EPC1: "A1", EPC2: "A2"} and len(reads) > 60)
    assert sorted((e.change, e.epc, e.location, e.sku) for e in out) == [
        ("arrived", EPC1, "A1", "SKU-1"), ("arrived", EPC2, "A2", None)]
    # Several events per message, each with the reader's (skewed) clock and its event number.
    assert {r.antenna for r in reads} == {1, 2}
    assert all(r.device_ts is not None and r.device_ts < r.received_ts - 100 for r in reads)
    assert tracker.reader_offset("fx-1") == pytest.approx(120.0, abs=1.0)
    # The reader names itself in every event, as the MAC and HOSTNAME metadata do.
    assert {(r.reader_mac, r.reader_host, r.reads) for r in reads} == {(sim.mac, sim.host_name, 1)}

    # Carry EPC1 to antenna 2: it moves once, without flapping on the way.
    sim.place(EPC1, 2, rssi=-45.0, bleed={1: -75.0})
    await pump(client, device, store_id, tracker, out, reads,
               lambda: tracker.present()[EPC1] == "A2")
    moves = [(e.change, e.location, e.previous) for e in out if e.change == "moved"]
    assert moves == [("moved", "A2", "A1")]

    # Take EPC2 away: it departs once unread for departed_after_s (agent clock, skew corrected).
    sim.remove(EPC2)

    def epc1_read_long_after_epc2() -> bool:
        last = {r.epc: r.device_ts or 0.0 for r in reads}
        return last[EPC1] - last[EPC2] > 2.0

    await pump(client, device, store_id, tracker, out, reads, epc1_read_long_after_epc2)
    offset = tracker.reader_offset("fx-1")
    assert offset is not None
    last_epc2 = max(r.device_ts or 0.0 for r in reads if r.epc == EPC2) + offset
    assert tracker.tick(last_epc2 + 29.0) == []
    [gone] = tracker.tick(last_epc2 + 30.5)
    assert (gone.change, gone.epc, gone.location) == ("departed", EPC2, "A2")
