"""What the HQ broker says about each store right now, from the bridged topics (see
``hq.bridge``): agent online or offline (its retained state and last will), the bridge link, open
alerts (retained ``state/alerts/{id}``), device health (retained ``state/devices/{id}``).

``ChainLive`` is the pure state, fed one message at a time; ``follow_broker`` keeps it fed from
the HQ broker, reconnecting after a random, capped, growing delay.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson

log = logging.getLogger(__name__)

ACTIVE_ALERT_STATES = ("open", "claimed", "escalated")
UNCLAIMED_STATES = ("open", "escalated")


@dataclass
class StoreLive:
    """One store as the HQ broker last told it."""

    agent: str | None = None  # "online", "offline" (its last will) or None: never heard
    bridge: str | None = None  # "1" linked, "0" the bridge's last will, None: never heard
    last_message: float | None = None  # when anything of the store's last arrived live
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # active alerts by id
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # health by device id

    @property
    def online(self) -> bool:
        return self.agent == "online" and self.bridge != "0"

    def devices_offline(self) -> list[str]:
        return sorted(dev for dev, health in self.devices.items()
                      if health.get("state") != "online")


class ChainLive:
    """The chain's stores as the HQ broker tells them; messages of unknown stores are counted
    and otherwise ignored."""

    def __init__(self, store_ids: Iterable[str]) -> None:
        self.stores: dict[str, StoreLive] = {sid: StoreLive() for sid in store_ids}
        self.connected = False
        self.unknown_store_messages = 0
        self.bad_payloads = 0
        self.version = 0  # grows with every change, for pages that poll

    def handle(self, topic: str, payload: bytes, retained: bool, now: float) -> None:
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != "store":
            return
        store = self.stores.get(parts[1])
        if store is None:
            self.unknown_store_messages += 1
            return
        if not retained:
            store.last_message = now
        self.version += 1
        kind = parts[2:]
        if kind == ["state", "agent"]:
            store.agent = payload.decode(errors="replace") or None
        elif kind == ["state", "bridge"]:
            store.bridge = payload.decode(errors="replace") or None
        elif len(kind) == 3 and kind[:2] == ["state", "alerts"]:
            self._keep(store.alerts, kind[2], payload, _active_alert)
        elif len(kind) == 3 and kind[:2] == ["state", "devices"]:
            self._keep(store.devices, kind[2], payload, _any)

    def _keep(self, into: dict[str, dict[str, Any]], key: str, payload: bytes,
              wanted: Callable[[dict[str, Any]], bool]) -> None:
        if not payload:  # an empty retained message deletes the entry
            into.pop(key, None)
            return
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self.bad_payloads += 1
            log.warning("HQ broker: ignoring a payload that is not a JSON object under %s", key)
            return
        if wanted(body):
            into[key] = body
        else:
            into.pop(key, None)


def _active_alert(body: dict[str, Any]) -> bool:
    return body.get("state") in ACTIVE_ALERT_STATES


def _any(body: dict[str, Any]) -> bool:
    return True


TOPICS = ("store/+/state/#", "store/+/alerts")


async def follow_broker(live: ChainLive, host: str, port: int, *, client_id: str,
                        username: str | None = None, password: str | None = None,
                        ca_file: str | None = None) -> None:
    """Feed ``live`` from the HQ broker until cancelled. A clean session each time: the
    retained state is the truth on every (re)connect, and alerts missed meanwhile are in the
    time series."""
    delay = 0.5
    tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
    while True:
        try:
            async with aiomqtt.Client(host, port, identifier=client_id, username=username,
                                      password=password, tls_context=tls, clean_session=True,
                                      keepalive=30) as client:
                for topic in TOPICS:
                    await client.subscribe(topic, qos=1)
                live.connected = True
                delay = 0.5
                log.info("HQ broker %s:%d: subscribed", host, port)
                async for message in client.messages:
                    payload = message.payload
                    live.handle(message.topic.value,
                                payload if isinstance(payload, bytes) else str(payload).encode(),
                                bool(message.retain), time.time())
        except aiomqtt.MqttError as exc:
            log.warning("HQ broker %s:%d unreachable: %s; retrying in %.1f s", host, port, exc,
                        delay)
        finally:
            live.connected = False
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 30.0)
