"""MQTT decoder benchmark: what a socket read costs the sans-I/O codec, without a broker.

    .venv/bin/python bench/mqtt_codec.py [--big-mb 8] [--read-kb 64] [--messages 200000]

1. one large PUBLISH arriving in many reads (a packet split over ``--read-kb`` reads): the time
   to decode it, and the same for one twice as large (equal seconds per MB = linear);
2. one above the decoder's limit, skipped: the time and the bytes held;
3. ``--messages`` readings of 100 bytes at QoS 0, fed in 256 KB reads through ``feed_batch``
   (the agent's hot path): messages/s.
Nothing is asserted on speed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import machine_line  # noqa: E402
from devices.mqtt.protocol import Decoder, encode_publish  # noqa: E402
from storeedge.errors import FrameError  # noqa: E402


def feed_in_reads(decoder: Decoder, data: bytes, read: int) -> tuple[float, int, int]:
    """Seconds to feed ``data`` in reads of ``read`` bytes, packets out, most bytes held."""
    view = memoryview(data)
    out = held = 0
    started = time.perf_counter()
    for i in range(0, len(data), read):
        out += len(decoder.feed(view[i:i + read]))  # type: ignore[arg-type]
        held = max(held, decoder.pending)
    return time.perf_counter() - started, out, held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-mb", type=int, default=8)
    ap.add_argument("--read-kb", type=int, default=64)
    ap.add_argument("--messages", type=int, default=200_000)
    args = ap.parse_args()
    read = args.read_kb * 1024
    print(machine_line())
    for mb in (args.big_mb, 2 * args.big_mb):
        packet = encode_publish("store/s1/dev/cam-1/image", bytes(mb << 20), qos=1, packet_id=1)
        seconds, out, _ = feed_in_reads(Decoder(max_packet_size=64 << 20), packet, read)
        assert out == 1
        print(f"{mb:3d} MB PUBLISH in {args.read_kb} KB reads: {seconds * 1000:8.1f} ms "
              f"({seconds * 1000 / mb:.2f} ms per MB)")
        try:
            seconds, out, held = feed_in_reads(Decoder(max_packet_size=1 << 20), packet, read)
        except FrameError as exc:  # what a decoder that cannot skip does
            print(f"{mb:3d} MB PUBLISH over a 1 MB limit:  refused: {exc}")
            continue
        print(f"{mb:3d} MB PUBLISH over a 1 MB limit:  {seconds * 1000:8.1f} ms, "
              f"{held:,} bytes held at most")

    one = encode_publish("store/s1/dev/shelf-01/weight",
                         b'{"lane":"A1-3","grams":1234.5,"seq":17,"ts":1764160000123}'.ljust(100))
    data = one * args.messages
    decoder = Decoder()
    view = memoryview(data)
    started = time.perf_counter()
    count = 0
    for i in range(0, len(data), 262_144):
        count += len(decoder.feed_batch(view[i:i + 262_144])[0])  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    assert count == args.messages
    print(f"{count:,} readings of {len(one)} bytes in 256 KB reads: "
          f"{count / seconds:12,.0f} messages/s ({seconds / count * 1e6:.2f} us each)")


if __name__ == "__main__":
    main()
