"""The store configuration: one YAML file per store, validated at start.

Errors name the file, the key path and what is wrong (``store.yaml:12: devices.0.port: field
required``). Secrets are never in the file: a ``*_env`` key names the environment variable that
holds them, and settings refuse to start when it is unset outside development.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.camera.config import CameraDevice
from devices.checkout.config import CheckoutDevice
from devices.rfid.config import RfidImpinjDevice, RfidSerialDevice, RfidZebraDevice
from devices.scanner.config import ScannerDevice
from devices.shelf_modbus.config import ShelfModbusDevice, check_shared_ports
from devices.shelf_mqtt.config import ShelfMqttDevice
from devices.zigbee2mqtt.config import Zigbee2MqttDevice
from storeedge.errors import ConfigError
from storeedge.yamlfile import locate, read_yaml


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSection(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    name: str = ""
    timezone: str = "Asia/Shanghai"


class BrokerSection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    client_id: str | None = None  # default: storeedge-agent-{store.id}
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class JournalSection(Strict):
    path: Path = Path("var/journal.db")
    snapshot_seconds: Annotated[float, Field(gt=0)] = 5.0


class HttpToken(Strict):
    name: str
    role: Literal["pos", "staff", "manager", "hq"]
    token_env: str
    zones: list[str] = ["*"]  # the zones whose tasks this person works; "*" = every zone


class HttpSection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    tokens: list[HttpToken] = []


class ErpSection(Strict):
    kind: Literal["tryton", "none"] = "none"
    url: str = "http://127.0.0.1:8000/"
    database: str = "storeedge"
    username: str = "admin"
    password_env: str | None = "STOREEDGE_ERP_PASSWORD"
    warehouse: str = "WH"  # code of the store's warehouse in the ERP
    customer: str = "Walk-in customer"  # party that store sales ship to
    catalog_refresh_seconds: Annotated[float, Field(gt=0)] = 300.0
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 0.5
    retry_max_seconds: Annotated[float, Field(gt=0)] = 30.0

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class TimeSeriesSection(Strict):
    enabled: bool = False
    url: str = "http://127.0.0.1:8086"
    org: str = "storeedge"
    bucket: str = "storeedge"
    token_env: str | None = None
    sample_seconds: Annotated[float, Field(gt=0)] = 10.0  # how often lane counts are sampled
    flush_seconds: Annotated[float, Field(gt=0)] = 1.0
    batch_size: Annotated[int, Field(ge=1, le=50_000)] = 5_000
    buffer_max_points: Annotated[int, Field(ge=1_000)] = 2_000_000

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None


class InventorySection(Strict):
    settle_seconds: Annotated[float, Field(ge=0)] = 1.0  # 0: every sample counts as stable
    settle_band_grams: Annotated[float, Field(gt=0)] = 3.0
    tolerance: Annotated[float, Field(gt=0, lt=0.5)] = 0.25  # of the unit weight
    # an empty lane reading less than this is drift, not an item
    retare_below_grams: Annotated[float, Field(ge=0)] = 15.0


class CatalogItem(Strict):
    """A SKU as the store needs it. Read from the ERP; the config may give it where no ERP runs."""

    sku: str
    name: str = ""
    barcode: str | None = None
    unit_grams: Annotated[float, Field(gt=0)]
    low_stock: Annotated[int, Field(ge=0)] = 2


class Lane(Strict):
    id: Annotated[str, Field(min_length=1, max_length=32)]
    sku: str
    capacity: Annotated[int, Field(ge=1)] = 20
    low_stock: Annotated[int, Field(ge=0)] | None = None  # overrides the catalog's threshold
    zone: str | None = None  # routes the lane's tasks to the staff of this zone


class Zone(Strict):
    """An area of the store; chilled zones give the temperature range their sensors keep."""

    id: str
    min_c: float | None = None
    max_c: float | None = None


class RfidSection(Strict):
    """Tag presence (see edge_agent/presence.py)."""

    departed_after_s: Annotated[float, Field(gt=0)] = 600.0
    window: Annotated[int, Field(ge=2, le=200)] = 20
    rssi_offset_db: Annotated[float, Field(ge=0)] = 6.0
    offset_decay_s: Annotated[float, Field(gt=0)] = 60.0


DEVICE_MODELS = (ShelfModbusDevice, ShelfMqttDevice, CameraDevice, ScannerDevice,
                 Zigbee2MqttDevice, RfidZebraDevice, RfidImpinjDevice, RfidSerialDevice,
                 CheckoutDevice)
Device = Annotated[
    ShelfModbusDevice | ShelfMqttDevice | CameraDevice | ScannerDevice | Zigbee2MqttDevice
    | RfidZebraDevice | RfidImpinjDevice | RfidSerialDevice | CheckoutDevice,
    Field(discriminator="type")]
DEVICE_TYPES = {m.model_fields["type"].annotation.__args__[0] for m in DEVICE_MODELS}


class RulesSection(Strict):
    """The rule library runs with the company defaults (rules/defaults.yaml); ``file`` names this
    store's overrides, relative to the store config file."""

    file: Path | None = None


class StoreConfig(Strict):
    store: StoreSection
    broker: BrokerSection = BrokerSection()
    journal: JournalSection = JournalSection()
    http: HttpSection = HttpSection()
    erp: ErpSection = ErpSection()
    timeseries: TimeSeriesSection = TimeSeriesSection()
    inventory: InventorySection = InventorySection()
    catalog: list[CatalogItem] = []
    lanes: list[Lane] = []
    zones: list[Zone] = []
    devices: list[Device] = []
    rfid: RfidSection = RfidSection()
    rules: RulesSection = RulesSection()
    source: Path | None = Field(default=None, exclude=True)  # the file this was read from

    @model_validator(mode="after")
    def _cross_checks(self) -> StoreConfig:
        lane_ids = [lane.id for lane in self.lanes]
        _no_duplicates(lane_ids, "lanes", "lane id")
        _no_duplicates([d.id for d in self.devices], "devices", "device id")
        _no_duplicates([c.sku for c in self.catalog], "catalog", "sku")
        check_shared_ports(self.devices)
        known = set(lane_ids)
        weighed_by: dict[str, str] = {}
        for i, dev in enumerate(self.devices):
            for j, lane in enumerate(_lanes_of(dev)):
                if lane not in known:
                    raise ValueError(f"devices.{i}.lanes.{j}: lane {lane!r} is not in lanes")
                if dev.type not in WEIGHING_TYPES:
                    continue  # a camera watches lanes that shelves weigh
                if lane in weighed_by:
                    raise ValueError(f"devices.{i}.lanes.{j}: lane {lane!r} is already weighed "
                                     f"by {weighed_by[lane]!r}")
                weighed_by[lane] = dev.id
        zone_ids = {z.id for z in self.zones}
        _no_duplicates([z.id for z in self.zones], "zones", "zone id")
        for i, lane in enumerate(self.lanes):
            if lane.zone is not None and zone_ids and lane.zone not in zone_ids:
                raise ValueError(f"lanes.{i}.zone: {lane.zone!r} is not in zones")
        if self.erp.kind == "none":
            skus = {c.sku for c in self.catalog}
            for i, lane in enumerate(self.lanes):
                if lane.sku not in skus:
                    raise ValueError(
                        f"lanes.{i}.sku: {lane.sku!r} is not in catalog (no ERP gives the catalog)"
                    )
        return self

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"storeedge-agent-{self.store.id}"


WEIGHING_TYPES = {"shelf_modbus", "shelf_mqtt"}


def _lanes_of(device: Any) -> list[str]:
    lanes = getattr(device, "lanes", None) or []
    return [lane if isinstance(lane, str) else lane.lane for lane in lanes]


def _no_duplicates(values: list[str], section: str, what: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{section}.{i}: duplicate {what} {value!r}")
        seen.add(value)


def load_config(path: str | os.PathLike[str]) -> StoreConfig:
    """Read and validate a store config file; raise ConfigError naming file, line and key."""
    file = str(path)
    data, raw = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(file, "<root>", "must be a mapping of sections (store, devices, ...)")
    try:
        return StoreConfig.model_validate({**data, "source": Path(path)})
    except ValidationError as exc:
        err = exc.errors()[0]
        # pydantic names a discriminated union's member (devices.0.shelf_modbus.port); the
        # file has no such key, so drop the member name.
        loc = [str(p) for p in err["loc"] if str(p) not in DEVICE_TYPES]
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
            # A cross-check names its own key path at the start of its message.
            head, sep, rest = msg.partition(": ")
            if sep and " " not in head:
                loc, msg = head.split("."), rest
        key = ".".join(loc) or "<root>"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(file, key, msg + more, locate(raw, loc)[1]) from exc
