"""A simulated kiosk through a real Mosquitto, decoded and reconciled: the planted scan
avoidance is found, the honest sessions are sold as paid."""

from __future__ import annotations

import asyncio
import time

import aiomqtt

from devices.checkout.config import CheckoutDevice
from devices.checkout.protocol import decode, session_topic
from edge_agent.services import Service
from firmware_sim.kiosk import KioskSim
from rules.trackers.checkout import CheckoutReconciler, CheckoutSale
from storeedge.events import Event, SuspectItem

CATALOG = [("MILK", "7300011000017", 1030.0, 0.99), ("PEN", "4006381333931", 20.0, 1.5),
           ("RICE", "6291041500213", 5000.0, 9.0), ("SOAP", "8904000210037", 250.0, 2.25)]


async def test_scan_avoidance_is_found(mosquitto: Service, store_id: str) -> None:
    device = CheckoutDevice(type="checkout", id="K1", settle_seconds=0.1)
    rec = CheckoutReconciler(device.tolerance, device.min_unexplained_grams,
                             {barcode: sku for sku, barcode, _, _ in CATALOG}.get,
                             settle_seconds=device.settle_seconds)
    out: list[Event] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as agent:
        await agent.subscribe(session_topic(store_id, "K1"), qos=1)

        async def consume(sales: int) -> None:
            async for msg in agent.messages:
                now = time.time()
                out.extend(rec.tick(now))
                assert isinstance(msg.payload, bytes)
                for event in decode(msg.payload, device=device, store_id=store_id,
                                    received_ts=now):
                    out.extend(rec.observe(event))
                if sum(isinstance(e, CheckoutSale) for e in out) == sales:
                    return

        async with KioskSim(store_id, "K1", "127.0.0.1", mosquitto.port, CATALOG,
                            noise_grams=1.0, seed=7) as kiosk:
            async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
                consumer = tg.create_task(consume(3))
                honest = await kiosk.shop([("MILK", 1), ("PEN", 2)], void="PEN")
                theft = await kiosk.shop([("RICE", 1), ("SOAP", 2), ("PEN", 1)],
                                         skip_scan="SOAP")
                honest2 = await kiosk.shop([("SOAP", 1), ("MILK", 2)])
                await consumer

    sales = [e for e in out if isinstance(e, CheckoutSale)]
    assert [s.txn_id for s in sales] == [honest.txn_id, theft.txn_id, honest2.txn_id]
    for sale, receipt in zip(sales, (honest, theft, honest2), strict=True):
        assert {ln.sku: ln.qty for ln in sale.lines} == dict(receipt.units)
        assert sale.amount == receipt.amount and sale.unmapped == ()
    assert theft.units == {"RICE": 1, "SOAP": 1, "PEN": 1}

    [suspect] = [e for e in out if isinstance(e, SuspectItem)]
    assert (suspect.kiosk, suspect.session) == ("K1", theft.session)
    assert abs(suspect.unexplained_grams - 250) < 10
