"""Tag presence: raw RFID reads in, arrived / moved / departed out (EdgeX's RFID inventory rules).

A tag is Unknown (never read, or forgotten after it departed), Present at one location, or
Departed. Per read:

- Unknown -> Present: ``arrived`` on its first read (a read after a departure is a first read).
- Present at A, read at B: ``moved`` only when B has read the tag at least ``min_reads_to_move``
  times and B's mean RSSI over its last ``window`` reads beats A's by an offset. The offset is
  ``rssi_offset_db`` while A is reading the tag too and shrinks linearly to 0 as the time since
  A last read it grows to ``offset_decay_s``; once A has not read it for that long, A is stale
  and B's reads alone decide. Noise at the border of two antennas therefore does not flap.
- Present -> Departed: ``departed`` (from ``tick``) when no location has read it for
  ``departed_after_s``; the tag is then forgotten.

Times are the agent's clock. A reader's clock may be off (skewed, drifting, reset): each reader
keeps an offset estimate ``received_ts - device_ts`` and a read's time is ``device_ts + offset``.
The estimate follows the smallest delay seen (the network only ever adds delay), rising by at
most ``max_drift`` seconds per second, so a backlog a reader flushes after an outage keeps its
real read times; a clock that stepped and stays stepped is adopted after ``clock_step_s``.

Pure: no I/O, the clock comes with the reads and ``tick(now)``. Hot path: tens of thousands of
reads a second, so plain attributes and no allocation per read beyond the window's float.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storeedge.errors import UsageError
from storeedge.events import TagPresence, TagRead

ARRIVED, MOVED, DEPARTED = "arrived", "moved", "departed"


@dataclass(frozen=True, slots=True)
class PresenceParams:
    """The presence rules' knobs (see the module docstring)."""

    window: int = 20
    rssi_offset_db: float = 6.0
    offset_decay_s: float = 60.0
    departed_after_s: float = 600.0
    min_reads_to_move: int = 2
    missing_rssi_dbm: float = -90.0  # stands in for a read that reported no RSSI
    max_drift: float = 0.001  # s/s a reader's clock offset estimate may rise (1000 ppm)
    clock_step_s: float = 60.0  # a reader clock off by more than this for this long: adopted

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_reads_to_move < 1:
            raise UsageError("window and min_reads_to_move must be at least 1")
        if self.min_reads_to_move > self.window:
            raise UsageError("min_reads_to_move cannot exceed the window")
        if self.offset_decay_s <= 0 or self.departed_after_s <= 0:
            raise UsageError("offset_decay_s and departed_after_s must be positive")


class _Seen:
    """One location's recent reads of one tag: a window of RSSIs with their running sum."""

    __slots__ = ("last", "rssi", "total")

    def __init__(self, window: int) -> None:
        self.rssi: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.last = 0.0


class _Tag:
    __slots__ = ("last", "location", "seen", "sku", "source", "store_id")

    def __init__(self, sku: str | None, location: str, store_id: str, source: str) -> None:
        self.sku = sku
        self.location = location
        self.store_id = store_id
        self.source = source
        self.last = 0.0
        self.seen: dict[str, _Seen] = {}


class _Clock:
    """One reader's offset estimate (agent time minus reader time)."""

    __slots__ = ("high_since", "offset", "rx")

    def __init__(self, offset: float, rx: float) -> None:
        self.offset = offset
        self.rx = rx
        self.high_since: float | None = None


class PresenceTracker:
    """Turns TagReads at locations into TagPresence changes. ``sku_of(epc)`` maps a tag to its
    SKU (None when unknown) and is asked once per arrival."""

    def __init__(self, params: PresenceParams,
                 sku_of: Callable[[str], str | None]) -> None:
        self.params = params
        self._sku_of = sku_of
        self._tags: dict[str, _Tag] = {}
        self._clocks: dict[str, _Clock] = {}
        self.reads = 0

    def observe(self, read: TagRead, location: str) -> list[TagPresence]:
        """Account one read at ``location``; return the presence changes it causes (0 or 1)."""
        self.reads += 1
        t = self._time(read)
        p = self.params
        tag = self._tags.get(read.epc)
        if tag is None:
            tag = self._tags[read.epc] = _Tag(self._sku_of(read.epc), location, read.store_id,
                                               read.source)
            change = ARRIVED
        else:
            change = None
        seen = tag.seen.get(location)
        if seen is None:
            seen = tag.seen[location] = _Seen(p.window)
        elif t - seen.last > p.departed_after_s:  # reads that old say nothing about now
            seen.rssi.clear()
            seen.total = 0.0
        rssi = p.missing_rssi_dbm if read.rssi is None else read.rssi
        window = seen.rssi
        if len(window) == p.window:
            seen.total -= window[0]
        window.append(rssi)
        seen.total += rssi
        if t > seen.last:
            seen.last = t
        if t > tag.last:
            tag.last = t
        tag.store_id, tag.source = read.store_id, read.source
        previous = None
        if change is None and location != tag.location and len(window) >= p.min_reads_to_move:
            current = tag.seen[tag.location]
            since = t - current.last
            mine = seen.total / len(window)
            if since >= p.offset_decay_s or not current.rssi:
                wins = True
            else:
                offset = p.rssi_offset_db * (1.0 - max(since, 0.0) / p.offset_decay_s)
                wins = mine > current.total / len(current.rssi) + offset
            if wins:
                change, previous = MOVED, tag.location
                tag.location = location
        if change is None:
            return []
        return [TagPresence(store_id=read.store_id, source=read.source,
                            received_ts=read.received_ts, device_ts=read.device_ts,
                            epc=read.epc, change=change, location=location, sku=tag.sku,
                            previous=previous)]

    def tick(self, now: float) -> list[TagPresence]:
        """The departures due at ``now`` (agent clock); departed tags are forgotten."""
        limit = now - self.params.departed_after_s
        gone = [epc for epc, tag in self._tags.items() if tag.last < limit]
        out = []
        for epc in gone:
            tag = self._tags.pop(epc)
            out.append(TagPresence(store_id=tag.store_id, source=tag.source, received_ts=now,
                                   epc=epc, change=DEPARTED, location=tag.location,
                                   sku=tag.sku))
        return out

    def shift(self, delta: float) -> None:
        """Move every time held by ``delta`` seconds: the agent's clock stepped (or stood still
        while it was down), and durations must not count the step."""
        for tag in self._tags.values():
            tag.last += delta
            for seen in tag.seen.values():
                seen.last += delta
        for clock in self._clocks.values():
            clock.offset += delta
            clock.rx += delta
            if clock.high_since is not None:
                clock.high_since += delta

    def present(self) -> dict[str, str]:
        """Every present tag's location."""
        return {epc: tag.location for epc, tag in self._tags.items()}

    def reader_offset(self, source: str) -> float | None:
        """The clock offset (agent minus reader, seconds) estimated for a reader."""
        clock = self._clocks.get(source)
        return None if clock is None else clock.offset

    def _time(self, read: TagRead) -> float:
        """The read's time on the agent's clock."""
        rx = read.received_ts
        dev = read.device_ts
        if dev is None:
            return rx
        sample = rx - dev
        clock = self._clocks.get(read.source)
        if clock is None:
            self._clocks[read.source] = _Clock(sample, rx)
            return rx
        if sample <= clock.offset:
            clock.offset = sample
            clock.high_since = None
        else:
            p = self.params
            rise = p.max_drift * (rx - clock.rx) if rx > clock.rx else 0.0
            if sample - clock.offset > p.clock_step_s:
                if clock.high_since is None:
                    clock.high_since = rx
                elif rx - clock.high_since >= p.clock_step_s:  # a step, not a backlog
                    rise = sample - clock.offset
            else:
                clock.high_since = None
            clock.offset = min(sample, clock.offset + rise)
        clock.rx = rx
        return dev + clock.offset

    # State that survives an agent restart

    def snapshot(self) -> dict[str, Any]:
        """The tracker's state as JSON-ready data."""
        return {
            "version": 1,
            "tags": {
                epc: {"sku": tag.sku, "location": tag.location, "last": tag.last,
                      "store_id": tag.store_id, "source": tag.source,
                      "seen": {loc: {"last": s.last, "rssi": list(s.rssi)}
                               for loc, s in tag.seen.items()}}
                for epc, tag in self._tags.items()
            },
            "clocks": {src: {"offset": c.offset, "rx": c.rx, "high_since": c.high_since}
                       for src, c in self._clocks.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Replace the state with a ``snapshot()``; UsageError when it is not one."""
        try:
            if data.get("version") != 1:
                raise UsageError(f"unknown presence snapshot version {data.get('version')!r}")
            tags: dict[str, _Tag] = {}
            window = self.params.window
            for epc, raw in data["tags"].items():
                tag = _Tag(raw["sku"], raw["location"], raw["store_id"], raw["source"])
                tag.last = float(raw["last"])
                for loc, s in raw["seen"].items():
                    seen = _Seen(window)
                    seen.rssi.extend(float(x) for x in s["rssi"])
                    seen.total = sum(seen.rssi)
                    seen.last = float(s["last"])
                    tag.seen[loc] = seen
                if tag.location not in tag.seen:
                    raise UsageError(f"tag {epc}: no reads at its location {tag.location!r}")
                tags[epc] = tag
            clocks = {}
            for src, c in data["clocks"].items():
                clock = _Clock(float(c["offset"]), float(c["rx"]))
                clock.high_since = c["high_since"]
                clocks[src] = clock
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"not a presence snapshot: {exc!r}") from exc
        self._tags, self._clocks = tags, clocks
