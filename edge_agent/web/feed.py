"""The live alert fan-out behind ``/api/alerts/stream``: every committed transition to every
subscribed handheld, each subscriber bounded (one that falls behind gets a resync)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from storeedge.errors import UsageError
from storeedge.events import Alert

log = logging.getLogger(__name__)


# Live alert fan-out


class Resync:
    """Marker a subscriber receives in place of transitions it fell too far behind to get."""

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = Resync()


@dataclass(eq=False)
class _Subscriber:
    """One live stream's backlog: the transitions it has not read yet, in publish order."""

    pending: deque[Alert] = field(default_factory=deque)
    resync: bool = False
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Subscription:
    """Async iterator over one subscriber's alert transitions, in publish order: each step
    gives every transition published since the last one (a list, at least one), or ``RESYNC``;
    it ends when the feed closes."""

    def __init__(self, subscriber: _Subscriber) -> None:
        self._sub = subscriber

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[Alert] | Resync:
        sub = self._sub
        while True:
            if sub.closed:
                raise StopAsyncIteration
            if sub.resync:
                sub.resync = False
                return RESYNC
            if sub.pending:
                batch = list(sub.pending)
                sub.pending.clear()
                return batch
            sub.wake.clear()
            await sub.wake.wait()


class AlertFeed:
    """Fans alert transitions out to live subscribers (the handhelds' streams).

    The agent publishes each loop turn's transitions at once, and a subscriber reads all that
    arrived since its last read as one batch, so an alert storm costs one stream event per
    turn, not one per transition. ``publish`` never blocks and never grows memory: a
    subscriber holds at most ``max_pending`` unread transitions, and one that falls further
    behind has its backlog replaced by a single ``RESYNC``, on which it re-reads the current
    alerts. Use it from the event loop that serves the app.
    """

    def __init__(self, max_pending: int = 65_536) -> None:
        if max_pending < 1:
            raise UsageError("max_pending must leave room for one transition")
        self._max_pending = max_pending
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def publish(self, alerts: Sequence[Alert]) -> None:
        """Hand one turn's transitions to every subscriber, without waiting for any."""
        if not alerts:
            return
        for sub in self._subscribers:
            if len(sub.pending) + len(alerts) > self._max_pending:
                sub.pending.clear()
                if not sub.resync:
                    sub.resync = True
                    log.warning("store %s: an alert subscriber fell %d transitions behind; "
                                "it will re-read the snapshot", alerts[0].store_id,
                                self._max_pending)
            else:
                sub.pending.extend(alerts)
            sub.wake.set()

    def close(self) -> None:
        """End every subscription, open or future. Call it when the agent stops, before the
        HTTP server: an open stream would otherwise hold the server's graceful shutdown."""
        self._closed = True
        for sub in self._subscribers:
            sub.pending.clear()
            sub.closed = True
            sub.wake.set()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Receive transitions published from now on, until the block exits or the feed closes."""
        sub = _Subscriber(closed=self._closed)
        self._subscribers.add(sub)
        try:
            yield Subscription(sub)
        finally:
            self._subscribers.discard(sub)
