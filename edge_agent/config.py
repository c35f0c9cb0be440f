"""The store configuration: one YAML file per store, validated at start.

Every problem of a file is found in one pass (the checks across sections, such as a lane no
device weighs, once every section is valid) and each names the file, the line, the key path
and what is wrong, with the device's id where it is a device's and the nearest known key where
a key is mistyped (``store.yaml:12: devices.1.prot: unknown key; did you mean 'port'?
(device shelf-a2)``). Secrets are never in the file: a ``*_env`` key names the environment
variable that holds them; ``missing_secrets`` lists those unset, which ``storeedge check`` and
the agent refuse.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
import zoneinfo
from functools import cache, cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cloud_bridge.rest.mapping import RestMapping
from devices.camera.config import CameraDevice
from devices.checkout.config import CheckoutDevice
from devices.rfid.config import RfidImpinjDevice, RfidSerialDevice, RfidZebraDevice
from devices.scanner.config import ScannerDevice
from devices.shelf_modbus.config import ShelfModbusDevice, check_shared_ports
from devices.shelf_mqtt.config import ShelfMqttDevice
from devices.zigbee2mqtt.config import Zigbee2MqttDevice
from rules.trackers.inventory import Settling
from storeedge.errors import ConfigError, ConfigErrors
from storeedge.yamlfile import locate, read_yaml


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSection(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]
    name: str = ""
    timezone: str = "Asia/Shanghai"
    # Tags on every time-series point of the store, for HQ to group stores by.
    region: Annotated[str, Field(max_length=64)] = ""
    city: Annotated[str, Field(max_length=64)] = ""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in _timezones():
            near = difflib.get_close_matches(value, _timezones(), n=1)
            hint = f"; the nearest is {near[0]!r}" if near else ""
            raise ValueError(f"unknown timezone {value!r}: an IANA name such as Asia/Shanghai "
                             f"(all of China){hint}")
        return value


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class BrokerSection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password_env: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    client_id: str | None = None  # default: storeedge-agent-{store.id}
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    # A bigger message from the broker is skipped unread, acknowledged, counted and logged.
    max_packet_bytes: Annotated[int, Field(ge=1024, le=268_435_455)] = 1024 * 1024

    def password(self) -> SecretStr | None:
        return _secret(self.password_env)


class BackupSection(Strict):
    """Backups the agent takes itself (as ``storeedge backup`` does, while it runs)."""

    to: Path  # the directory backups are made in (best on another disk)
    every_hours: Annotated[float, Field(gt=0)] = 24.0
    keep: Annotated[int, Field(ge=1)] = 7  # the newest this many are kept


class JournalSection(Strict):
    path: Path = Path("var/journal.db")
    snapshot_seconds: Annotated[float, Field(gt=0)] = 5.0
    # Facts, alert transitions and sales older than this are pruned, except what the ERP has
    # not taken yet and the transitions of alerts still active; None keeps everything.
    retention_days: Annotated[float, Field(gt=0)] | None = 90.0
    backup: BackupSection | None = None
    trend_sample_seconds: Annotated[float, Field(ge=10)] = 300.0  # lane counts for the trends


ProblemCategory = Literal["device_broken", "wrong_price_or_label", "product_damaged",
                          "system_wrong", "other"]


class ProblemsSection(Strict):
    """Response-time targets of staff problem reports, minutes per category (halved for high
    priority): unclaimed that long, a report escalates (edge_agent.problems)."""

    targets_minutes: dict[ProblemCategory, Annotated[float, Field(gt=0)]] = {
        "device_broken": 30, "wrong_price_or_label": 60, "product_damaged": 60,
        "system_wrong": 15, "other": 120}


class HttpToken(Strict):
    name: str
    role: Literal["pos", "staff", "manager", "hq"]
    token_env: str
    zones: list[str] = ["*"]  # the zones whose tasks this person works; "*" = every zone


class HttpSection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    tokens: list[HttpToken] = []
    # HTTPS when both are given (PEM files; `storeedge certs` makes them).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Failed sign-ins (a wrong token anywhere) per client and per account before 429; each
    # further failure doubles the wait from backoff_seconds up to 15 minutes.
    sign_in_attempts: Annotated[int, Field(ge=1, le=1000)] = 5
    sign_in_window_seconds: Annotated[float, Field(gt=0)] = 300.0
    sign_in_backoff_seconds: Annotated[float, Field(gt=0)] = 2.0
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    # Without a manager's or HQ's token: the API's schema and docs, Prometheus metrics, health
    # detail (a scraper on the store's network may be allowed).
    public_docs: bool = False
    public_metrics: bool = False
    public_health_detail: bool = False
    # The language the store's pages open in, until a person picks the other one on the page.
    language: Literal["zh-CN", "en-US"] = "zh-CN"

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("http.tls_cert_file: give both tls_cert_file and tls_key_file")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


class ErpSection(Strict):
    kind: Literal["tryton", "rest", "none"] = "none"
    url: str = "http://127.0.0.1:8000/"
    rest: RestMapping | None = None  # kind rest: the ERP's endpoints, fields and signing
    database: str = "storeedge"
    username: str = "admin"
    password_env: str | None = "STOREEDGE_ERP_PASSWORD"
    warehouse: str = "WH"  # code of the store's warehouse in the ERP
    customer: str = "Walk-in customer"  # party that store sales ship to
    catalog_refresh_seconds: Annotated[float, Field(gt=0)] = 300.0
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 0.5
    retry_max_seconds: Annotated[float, Field(gt=0)] = 30.0
    ca_file: Path | None = None  # the CA that signed the ERP's certificate (default: the system's)
    # sales are booked as one ERP document per window (0: one per receipt); see cloud_bridge
    summary_window_seconds: Annotated[int, Field(ge=0, le=86_400)] = 60
    # While the ERP is behind, closed windows join the newest unsent summary up to this span
    # (one document per hour of an outage instead of one per window); 0: never.
    summary_merge_seconds: Annotated[float, Field(ge=0)] = 3600.0
    # the undelivered backlog's bound: beyond it new POS sales are refused with HTTP 503
    outbox_max_items: Annotated[int, Field(ge=100)] = 100_000
    outbox_max_bytes: Annotated[int, Field(ge=1_000_000)] = 64 * 1024 * 1024
    quarantine_after: Annotated[int, Field(ge=1)] = 5  # identical failures before the dead letter
    # a count and the ERP's quantity differing by more units than this is a count proposal
    count_tolerance_units: Annotated[int, Field(ge=0)] = 0
    # store orders (cloud_bridge.orders): the chain's distribution centre, and the policy
    supply_warehouse: str = "DC"  # its warehouse code in the ERP
    order_lead_days: Annotated[float, Field(ge=0, le=60)] = 1.0
    order_cover_days: Annotated[float, Field(gt=0, le=90)] = 3.0
    demand_window_days: Annotated[float, Field(gt=0, le=90)] = 7.0

    def password(self) -> SecretStr | None:
        return _secret(self.password_env)

    def app_secret(self) -> SecretStr | None:
        return _secret(self.rest.app_secret_env if self.rest is not None else None)


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
    ca_file: Path | None = None  # the CA that signed the server's certificate (default: system's)
    # Ids and texts (txn_id, alert_id, message) as string fields: only for a server that keeps
    # strings (InfluxDB); VictoriaMetrics turns each into an all-zero series.
    string_fields: bool = False

    def token(self) -> SecretStr | None:
        return _secret(self.token_env)


class InventorySection(Strict):
    settle_seconds: Annotated[float, Field(ge=0)] = 1.0  # 0: every sample counts as stable
    settle_band_grams: Annotated[float, Field(gt=0)] = 3.0
    tolerance: Annotated[float, Field(gt=0, lt=0.5)] = 0.25  # of the unit weight
    # an empty lane reading less than this is drift, not an item
    retare_below_grams: Annotated[float, Field(ge=0)] = 15.0
    # a lane whose stable weight is no whole number of units this long is reported ambiguous
    ambiguous_seconds: Annotated[float, Field(ge=0)] = 30.0
    # a stock task resolved as restocked opens again if its lane has not risen by then; 0: never
    verify_restock_seconds: Annotated[float, Field(ge=0)] = 300.0

    @cached_property
    def settling(self) -> Settling:
        return Settling(self.settle_seconds, self.settle_band_grams, self.tolerance,
                        self.retare_below_grams, self.ambiguous_seconds)


class CatalogItem(Strict):
    """A SKU as the store needs it. Read from the ERP; the config may give it where no ERP runs."""

    sku: str
    name: str = ""
    barcode: str | None = None
    unit_grams: Annotated[float, Field(gt=0)]
    low_stock: Annotated[int, Field(ge=0)] = 2
    price: Annotated[float, Field(ge=0)] | None = None  # the shelf price the tills should charge
    stop_sell: bool = False  # withdrawn from sale (a recall, a delisting)


class Lane(Strict):
    id: Annotated[str, Field(min_length=1, max_length=32)]
    sku: str
    capacity: Annotated[int, Field(ge=1)] = 20
    low_stock: Annotated[int, Field(ge=0)] | None = None  # overrides the catalog's threshold
    zone: str | None = None  # routes the lane's tasks to the staff of this zone


class Zone(Strict):
    """An area of the store; chilled zones give the temperature range their sensors keep."""

    id: str
    name: str = ""  # what the pages call it (default: its id)
    min_c: float | None = None
    max_c: float | None = None


class RfidSection(Strict):
    """Tag presence (see rules/trackers/presence.py)."""

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
DEVICE_TYPES = {get_args(m.model_fields["type"].annotation)[0] for m in DEVICE_MODELS}


class RulesSection(Strict):
    """The rule library runs with the company defaults (rules/defaults.yaml); ``file`` names this
    store's overrides, relative to the store config file."""

    file: Path | None = None


class StoreConfig(Strict):
    store: StoreSection
    broker: BrokerSection = BrokerSection()
    journal: JournalSection = JournalSection()
    problems: ProblemsSection = ProblemsSection()
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
        problems = self._problems()
        if problems:
            # One line per problem, each starting with its key path; load_config splits them.
            raise ValueError("\n".join(problems))
        return self

    def _problems(self) -> list[str]:
        """What the sections say of each other: ``key.path: what is wrong`` each."""
        out: list[str] = []
        lane_ids = [lane.id for lane in self.lanes]
        out += _duplicates(lane_ids, "lanes", "lane id")
        out += _duplicates([d.id for d in self.devices], "devices", "device id")
        out += _duplicates([c.sku for c in self.catalog], "catalog", "sku")
        try:
            check_shared_ports(self.devices)
        except ValueError as exc:
            out.append(str(exc))
        known = set(lane_ids)
        weighed_by: dict[str, str] = {}
        for i, dev in enumerate(self.devices):
            for j, lane in enumerate(_lanes_of(dev)):
                if lane not in known:
                    out.append(f"devices.{i}.lanes.{j}: lane {lane!r} is not in lanes")
                elif dev.type not in WEIGHING_TYPES:
                    continue  # a camera watches lanes that shelves weigh
                elif lane in weighed_by:
                    out.append(f"devices.{i}.lanes.{j}: lane {lane!r} is already weighed by "
                               f"{weighed_by[lane]!r}")
                else:
                    weighed_by[lane] = dev.id
        zone_ids = {z.id for z in self.zones}
        out += _duplicates([z.id for z in self.zones], "zones", "zone id")
        for i, ln in enumerate(self.lanes):
            if ln.zone is not None and zone_ids and ln.zone not in zone_ids:
                out.append(f"lanes.{i}.zone: {ln.zone!r} is not in zones")
        lane_zones = {ln.zone for ln in self.lanes if ln.zone}
        for i, token in enumerate(self.http.tokens):
            for j, zone in enumerate(token.zones):
                if zone != "*" and zone not in zone_ids | lane_zones:
                    out.append(f"http.tokens.{i}.zones.{j}: {token.name} works zone {zone!r}, "
                               "which no zone or lane defines")
        if self.erp.kind == "rest" and self.erp.rest is None:
            out.append("erp.rest: required for kind rest: the ERP's endpoints, fields and "
                       "signing (docs/erp.md)")
        if self.erp.kind != "tryton":
            skus = {c.sku for c in self.catalog}
            for i, ln in enumerate(self.lanes):
                if ln.sku not in skus:
                    out.append(f"lanes.{i}.sku: {ln.sku!r} is not in catalog (no ERP gives "
                               "the catalog)")
        return out

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"storeedge-agent-{self.store.id}"


WEIGHING_TYPES = {"shelf_modbus", "shelf_mqtt"}


def _secret(env: str | None) -> SecretStr | None:
    """The secret in environment variable ``env``; it prints as ``**********`` until revealed."""
    value = os.environ.get(env) if env else None
    return SecretStr(value) if value else None


def reveal(secret: SecretStr | None) -> str | None:
    """The secret's text, for the one call that sends it."""
    return secret.get_secret_value() if secret is not None else None


def _lanes_of(device: Any) -> list[str]:
    lanes = getattr(device, "lanes", None) or []
    return [lane if isinstance(lane, str) else lane.lane for lane in lanes]


def _duplicates(values: list[str], section: str, what: str) -> list[str]:
    seen: set[str] = set()
    out = []
    for i, value in enumerate(values):
        if value in seen:
            out.append(f"{section}.{i}: duplicate {what} {value!r}")
        seen.add(value)
    return out


def missing_secrets(config: StoreConfig) -> list[str]:
    """``key: ...`` for each ``*_env`` key of a part in use whose variable is unset or empty."""
    wanted: list[tuple[str, str | None]] = [("broker.password_env", config.broker.password_env)]
    if config.erp.kind == "tryton":
        wanted.append(("erp.password_env", config.erp.password_env))
    if config.erp.rest is not None and config.erp.kind == "rest":
        wanted.append(("erp.rest.app_secret_env", config.erp.rest.app_secret_env))
    if config.timeseries.enabled:
        wanted.append(("timeseries.token_env", config.timeseries.token_env))
    wanted += [(f"http.tokens.{i}.token_env", t.token_env)
               for i, t in enumerate(config.http.tokens)]
    return [f"{key}: environment variable {name} is not set" for key, name in wanted
            if name and not os.environ.get(name)]


def load_config(path: str | os.PathLike[str], *, secrets: bool = False) -> StoreConfig:
    """Read and validate a store config file; raise ConfigError (ConfigErrors when there are
    several) naming file, line and key of every problem. With ``secrets``, an unset secret
    variable of a part in use is a problem too (what the agent and ``check`` ask)."""
    file = str(path)
    data, raw = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(file, "<root>", "must be a mapping of sections (store, devices, ...)")
    try:
        config = StoreConfig.model_validate({**data, "source": Path(path)})
    except ValidationError as exc:
        raise _errors([p for err in exc.errors() for p in _problems(err, data)], file,
                      raw, data) from exc
    if secrets:
        missing = [_split(line) for line in missing_secrets(config)]
        if missing:
            raise _errors(missing, file, raw, data)
    return config


def _errors(problems: list[tuple[list[str], str]], file: str, raw: Any,
            data: dict[str, Any]) -> ConfigError:
    errors = []
    for loc, msg in problems:
        device = _device_named(data, loc)
        errors.append(ConfigError(file, ".".join(loc) or "<root>",
                                  msg + (f" (device {device})" if device else ""),
                                  locate(raw, loc)[1]))
    errors.sort(key=lambda e: e.line or 0)
    return errors[0] if len(errors) == 1 else ConfigErrors(errors)


def _problems(err: Any, data: dict[str, Any]) -> list[tuple[list[str], str]]:
    """One pydantic error as (key path, plain words) problems: a cross-check's several lines
    become one problem each."""
    # pydantic names a discriminated union's member (devices.0.shelf_modbus.port); the file has
    # no such key, so drop the member name.
    loc = [str(p) for p in err["loc"] if str(p) not in DEVICE_TYPES]
    kind, msg = err["type"], err["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if not loc:  # the cross-checks: each line starts with its own key path
            return [_split(line) for line in msg.splitlines()]
        return [(loc, msg)]
    if kind == "missing":
        return [(loc, "required, but missing")]
    if kind == "extra_forbidden":
        near = difflib.get_close_matches(loc[-1], _keys_at(loc[:-1], data), n=1, cutoff=0.6)
        return [(loc, "unknown key" + (f"; did you mean {near[0]!r}?" if near else ""))]
    return [(loc, msg)]


def _split(line: str) -> tuple[list[str], str]:
    head, sep, rest = line.partition(": ")
    return (head.split("."), rest) if sep and " " not in head else ([], line)


def _device_named(data: dict[str, Any], loc: list[str]) -> str | None:
    if len(loc) < 2 or loc[0] != "devices" or not loc[1].isdigit():
        return None
    devices = data.get("devices")
    if not isinstance(devices, list) or int(loc[1]) >= len(devices):
        return None
    device = devices[int(loc[1])]
    return str(device["id"]) if isinstance(device, dict) and "id" in device else None


def _keys_at(loc: list[str], data: Any) -> list[str]:
    """The keys the config allows at ``loc`` (for a mistyped key's nearest match)."""
    annotation: Any = StoreConfig
    for part in loc:
        annotation = _unwrap(annotation, data)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(part)
            if field is None:
                return []
            annotation, data = field.annotation, (data or {}).get(part)
        elif typing.get_origin(annotation) is list and part.isdigit():
            annotation = typing.get_args(annotation)[0]
            data = data[int(part)] if isinstance(data, list) and int(part) < len(data) else None
        else:
            return []
    annotation = _unwrap(annotation, data)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any, data: Any) -> Any:
    """Through Annotated and Optional to a model or a list; a device kind's model is chosen by
    the ``type`` the data gives."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            kind = data.get("type") if isinstance(data, dict) else None
            chosen = [m for m in members if kind is not None and kind in typing.get_args(
                getattr(m, "model_fields", {}).get("type", Field()).annotation or Any)]
            if len(members) == 1:
                annotation = members[0]
            elif len(chosen) == 1:
                annotation = chosen[0]
            else:
                return None
        else:
            return annotation
