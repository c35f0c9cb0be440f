"""How each device kind reaches the agent: MQTT messages on a topic through a decoder, or a
driver task that owns a serial port or a video stream. Modules are imported only for the kinds
a store has (a camera driver pulls in OpenCV; a store without cameras should not pay for it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MqttFeed:
    stream: str  # the default topic is store/{sid}/dev/{id}/{stream}
    decoder: str  # "module:function", decode(payload, *, device, store_id, received_ts)
    # A third-party device's own availability topic: (device attribute naming the topic,
    # decoder giving a DeviceStatus). Ours use store/{sid}/dev/{id}/status.
    availability: tuple[str, str] | None = None


@dataclass(frozen=True)
class DriverFeed:
    driver: str  # "module:Class", Class(device, store_id, on_events, on_status, clock=)
    # Devices that share a bus (RS-485): one driver per port, given the list of its devices.
    shares_port: bool = False


KINDS: dict[str, MqttFeed | DriverFeed] = {
    "shelf_modbus": DriverFeed("devices.shelf_modbus.driver:ShelfModbusDriver", shares_port=True),
    "shelf_mqtt": MqttFeed("weight", "devices.shelf_mqtt.protocol:decode"),
    "camera": DriverFeed("devices.camera.driver:CameraDriver"),
    "scanner": DriverFeed("devices.scanner.driver:ScannerDriver"),
    "rfid_zebra": MqttFeed("tags", "devices.rfid.zebra:decode"),
    "rfid_impinj": MqttFeed("tags", "devices.rfid.impinj:decode"),
    "rfid_serial": DriverFeed("devices.rfid.driver:RfidSerialDriver"),
    "checkout": MqttFeed("session", "devices.checkout.protocol:decode"),
    "zigbee2mqtt": MqttFeed("state", "devices.zigbee2mqtt.protocol:decode", availability=(
        "availability_topic", "devices.zigbee2mqtt.protocol:decode_availability_status")),
}


def load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def topic_of(device: Any, store_id: str) -> str:
    feed = KINDS[device.type]
    assert isinstance(feed, MqttFeed)
    return (getattr(device, "state_topic", None) or getattr(device, "topic", None)
            or f"store/{store_id}/dev/{device.id}/{feed.stream}")


def drivers(devices: Iterable[Any], store_id: str, on_events: Callable[[list[Any]], None],
            on_status: Callable[[Any], None], clock: Callable[[], float]) -> list[tuple[str, Any]]:
    """(task name, driver) of every driver-fed device: one per device, or one per port for kinds
    whose devices share a bus, so that one task owns each port."""
    out: list[tuple[str, Any]] = []
    buses: dict[tuple[str, str], list[Any]] = {}
    for device in devices:
        feed = KINDS[device.type]
        if not isinstance(feed, DriverFeed):
            continue
        if feed.shares_port:
            buses.setdefault((device.type, device.port), []).append(device)
            continue
        out.append((f"{device.type}:{device.id}",
                    load(feed.driver)(device, store_id, on_events, on_status, clock=clock)))
    for (kind, port), group in buses.items():
        feed = KINDS[kind]
        assert isinstance(feed, DriverFeed)
        out.append((f"{kind}:{port}",
                    load(feed.driver)(group, store_id, on_events, on_status, clock=clock)))
    return out
