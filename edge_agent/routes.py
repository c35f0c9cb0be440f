"""Which MQTT topic feeds which device, and through which decoder: an exact match per message
(the hot path), built once from the store's config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge_agent import device_kinds
from edge_agent.config import StoreConfig

Decoder = Callable[..., list[Any]]


class _StatusDecoder:
    """A third-party availability decoder (one status per payload) as a route's decoder."""

    def __init__(self, decode: Callable[..., Any]) -> None:
        self._decode = decode

    def __call__(self, payload: bytes, **kwargs: Any) -> list[Any]:
        return [self._decode(payload, **kwargs)]


class Routes:
    def __init__(self, config: StoreConfig) -> None:
        store_id = config.store.id
        self._prefix = f"store/{store_id}/"
        #: topic -> (device, decoder) for every MQTT-fed device.
        self.decoders: dict[str, tuple[Any, Decoder]] = {}
        #: our own devices' status topics (retained last wills) -> device id.
        self.status: dict[str, str] = {}
        for device in config.devices:
            feed = device_kinds.KINDS[device.type]
            if isinstance(feed, device_kinds.MqttFeed):
                topic = device_kinds.topic_of(device, store_id)
                self.decoders[topic] = (device, device_kinds.load(feed.decoder))
                if feed.availability is not None:
                    status = _StatusDecoder(device_kinds.load(feed.availability[1]))
                    self.decoders[getattr(device, feed.availability[0])] = (device, status)
            self.status[f"{self._prefix}dev/{device.id}/status"] = device.id

    def subscriptions(self) -> list[str]:
        """The store's device subtree, plus topics third-party devices already publish on."""
        return [f"{self._prefix}dev/+/+",
                *sorted(t for t in self.decoders if not t.startswith(self._prefix))]
