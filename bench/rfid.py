"""RFID presence benchmark: raw tag reads into presence events on one core.

    .venv/bin/python bench/rfid.py [--reads 300000] [--tags 2000] [--locations 8]

Builds Zebra IoT Connector payloads for ``--tags`` tags seen by ``--locations`` antennas (with
RSSI noise and a tag moving now and then), then times, separately:
1. presence: ``PresenceTracker.observe`` on ready TagReads (the tracker alone);
2. decode + presence: ``zebra.decode`` of each payload (20 events per message) and ``observe``.
Prints reads/s with the machine and the commit; nothing is asserted on speed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import machine_line  # noqa: E402
from devices.rfid import zebra  # noqa: E402
from devices.rfid.config import RfidZebraDevice  # noqa: E402
from devices.rfid.epc import encode_sgtin96  # noqa: E402
from firmware_sim.rfid import zebra_time  # noqa: E402
from rules.trackers.presence import PresenceParams, PresenceTracker  # noqa: E402

BATCH = 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=300_000)
    ap.add_argument("--tags", type=int, default=2_000)
    ap.add_argument("--locations", type=int, default=8)
    args = ap.parse_args()

    rng = random.Random(1)
    device = RfidZebraDevice(type="rfid_zebra", id="fx-1",
                             antennas={a: f"L{a}" for a in range(1, args.locations + 1)})
    epcs = [encode_sgtin96("80614141123458", s, company_prefix_digits=7)
            for s in range(args.tags)]
    home = {epc: rng.randrange(1, args.locations + 1) for epc in epcs}
    t0 = 1_700_000_000.0
    events: list[tuple[str, int, int, float]] = []
    for i in range(args.reads):
        epc = epcs[i % args.tags]
        if rng.random() < 0.0005:  # now and then a tag is carried elsewhere
            home[epc] = rng.randrange(1, args.locations + 1)
        near = rng.random() < 0.8
        antenna = home[epc] if near else rng.randrange(1, args.locations + 1)
        rssi = round((-50 if antenna == home[epc] else -68) + rng.gauss(0, 3))
        events.append((epc, antenna, rssi, t0 + i * 0.0001))

    payloads = []
    for i in range(0, len(events), BATCH):
        chunk = events[i:i + BATCH]
        payloads.append((b"".join(zebra.encode(e, antenna=a, rssi=r, event_num=i + k,
                                               ts=zebra_time(t))
                                  for k, (e, a, r, t) in enumerate(chunk)), chunk[-1][3]))
    reads = [r for p, ts in payloads
             for r in zebra.decode(p, device=device, store_id="bench", received_ts=ts + 0.05)]
    where = {a: device.location_of(a) or "?" for a in device.antennas}
    params = PresenceParams(departed_after_s=600.0)

    tracker = PresenceTracker(params, lambda epc: "SKU")
    started = time.perf_counter()
    changes = 0
    for read in reads:
        changes += len(tracker.observe(read, where[read.antenna]))  # type: ignore[index]
    presence_s = time.perf_counter() - started

    tracker = PresenceTracker(params, lambda epc: "SKU")
    started = time.perf_counter()
    for payload, ts in payloads:
        for read in zebra.decode(payload, device=device, store_id="bench", received_ts=ts):
            tracker.observe(read, where[read.antenna])  # type: ignore[index]
    both_s = time.perf_counter() - started

    print(machine_line())
    print(f"{len(reads)} reads of {args.tags} tags at {args.locations} locations: "
          f"{changes} presence changes")
    print(f"presence alone:    {len(reads) / presence_s:10,.0f} reads/s")
    print(f"decode + presence: {len(reads) / both_s:10,.0f} reads/s "
          f"({BATCH} Zebra events per message)")


if __name__ == "__main__":
    main()
