"""The events of a store: readings from devices, facts the agent derives, alerts and ERP commands.

All are frozen dataclasses with one base class. Times are epoch seconds (float); ``device_ts`` is
the device's own clock and may be wrong, ``received_ts`` is the agent's clock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter
from typing import Any

from storeedge.ids import new_event_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Envelope every event carries. ``event_id`` (a UUIDv7, ``storeedge.ids``) is made when it
    is first read unless one is given: most readings, and the stock changes derived from them,
    are never journaled or sent, and making an id costs as much as the rest of a small event."""

    store_id: str
    source: str
    received_ts: float
    device_ts: float | None = None
    seq: int | None = None
    event_id: str = None  # type: ignore[assignment]  # None: made on first read (_LazyId)

    @property
    def event_type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with an ``event`` key naming the type (shallow and fast: ``asdict``
        deep-copies)."""
        cls = type(self)
        shape = _SHAPES.get(cls)
        if shape is None:
            names = tuple(f.name for f in fields(cls))
            shape = _SHAPES[cls] = (names, attrgetter(*names))
        names, values = shape
        data = dict(zip(names, values(self), strict=True))
        for name, value in data.items():
            if type(value) not in _LEAVES:
                data[name] = _plain(value)
        data["event"] = cls.__name__
        return data


class _LazyId:
    """The ``event_id`` slot, filled with a new id on first read when it holds None."""

    __slots__ = ("_lock", "_slot")

    def __init__(self, slot: Any) -> None:
        self._slot = slot
        self._lock = threading.Lock()

    def __get__(self, obj: Event | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self._slot.__get__(obj, owner)
        if value is None:
            with self._lock:  # two threads reading it first must see the same id
                value = self._slot.__get__(obj, owner)
                if value is None:
                    value = new_event_id()
                    self._slot.__set__(obj, value)
        return value

    def __set__(self, obj: Event, value: str) -> None:
        self._slot.__set__(obj, value)


Event.event_id = _LazyId(Event.__dict__["event_id"])  # type: ignore[assignment,misc]

_SHAPES: dict[type, tuple[tuple[str, ...], Any]] = {}
# Types ``_plain`` returns as they are; the fields of most events hold only these.
_LEAVES = {str, int, float, bool, type(None), dict, list}


def _plain(value: Any) -> Any:
    if type(value) is tuple:
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, StrEnum):
        _LEAVES.add(type(value))
    return value


# Readings (from devices)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShelfWeight(Event):
    """Net weight on one shelf lane."""

    lane: str
    grams: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus(Event):
    """A device's own report of its state (MQTT last will, status registers)."""

    online: bool
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TagRead(Event):
    """One RFID read of a tag by a reader (``source``) antenna. ``epc`` is upper-case hex.

    ``device_ts`` is when the reader last saw the tag, ``event_ts`` when the reader reported it
    (its event's timestamp); they differ when a reader reports a tag some time after reading it.
    What else a reader reports, where it does: ``reads`` (times read since its previous report),
    ``reader_mac`` and ``reader_host`` (which physical reader), ``tid`` (the TID memory bank in
    hex: the chip's own serial), ``access_results`` (the outcome of each tag access operation, as
    the reader words it, e.g. ``"SUCCESS"``)."""

    epc: str
    antenna: int | None = None
    rssi: float | None = None  # dBm
    event_ts: float | None = None
    reads: int | None = None
    reader_mac: str | None = None
    reader_host: str | None = None
    tid: str | None = None
    access_results: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan(Event):
    """A barcode scan. ``gtin`` is the 14-digit GTIN when the code carries one; ``batch``,
    ``expiry`` (ISO date) and ``serial`` come from GS1 data (AI 10, 17, 21).

    GS1 codes (element strings, their bracketed form, Digital Link URIs) also fill ``ai``, every
    Application Identifier read and its data as carried (``{"3103": "001250"}``), and
    ``ai_values``, the meaning GS1 gives that data where it gives one (ISO dates, decimals with
    the implied point applied: ``{"3103": "1.250"}``, amounts with currency as ``"978 12.50"``).
    ``gs1_errors`` names each AI that could not be read; the rest of the scan stands."""

    code: str
    symbology: str | None = None
    gtin: str | None = None
    batch: str | None = None
    expiry: str | None = None
    serial: str | None = None
    ai: dict[str, str] | None = None
    ai_values: dict[str, str] | None = None
    gs1_errors: tuple[str, ...] = ()


class CheckoutKind(StrEnum):
    STARTED = "started"
    ITEM_SCANNED = "item_scanned"
    BAGGING_WEIGHT = "bagging_weight"
    VOIDED = "voided"
    PAID = "paid"
    CANCELLED = "cancelled"
    ASSISTANCE = "assistance"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutEvent(Event):
    """A self-checkout kiosk's session event. Which optional fields are set depends on ``kind``:
    item_scanned/voided: sku or barcode, qty, expected_grams, unit_price; bagging_weight: grams
    (the bagging-area scale's total); paid: amount."""

    kiosk: str
    session: str
    kind: CheckoutKind
    txn_id: str | None = None  # paid: the kiosk's transaction id, when it gives one
    reason: str | None = None  # assistance: why
    sku: str | None = None
    barcode: str | None = None
    qty: int = 1
    expected_grams: float | None = None
    unit_price: float | None = None
    grams: float | None = None
    amount: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShelfImage(Event):
    """Occupancy per lane (0 = empty .. 1 = full) measured from one camera frame."""

    occupancy: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Climate(Event):
    """A fridge/freezer sensor sample (Zigbee2MQTT and the like).

    ``rejected`` lists the fields of the device's message that were mistyped or out of range,
    each as ``"field ...why"``; they are None here and everything else the message said is kept.
    """

    temperature: float | None = None  # degrees Celsius
    humidity: float | None = None  # percent
    battery: float | None = None  # percent
    linkquality: int | None = None
    pressure: float | None = None  # hPa
    voltage: float | None = None  # volts (battery or supply)
    contact: bool | None = None  # a door contact: True closed, False open
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PosLine:
    sku: str
    qty: int
    unit_price: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PosTransaction(Event):
    """A completed POS transaction."""

    txn_id: str
    lines: tuple[PosLine, ...]


# Store facts (derived by the agent)


class StockCause(StrEnum):
    PICK = "pick"
    RESTOCK = "restock"
    AMBIGUOUS = "ambiguous"
    TARE = "tare"
    INITIAL = "initial"
    RECOUNT = "recount"  # a lane reported ambiguous reads a whole number of units again


@dataclass(frozen=True, slots=True, kw_only=True)
class StockChanged(Event):
    """A lane's unit count changed between two stable weights."""

    sku: str
    location: str
    before: int
    after: int
    cause: StockCause


@dataclass(frozen=True, slots=True, kw_only=True)
class Sale(Event):
    sku: str
    qty: int
    txn_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TagPresence(Event):
    """A tag's presence changed: ``change`` is arrived, moved or departed. ``location`` is where
    it is now (for departed: where it was last seen); ``previous`` is set for moved."""

    epc: str
    change: str  # arrived | moved | departed
    location: str
    sku: str | None = None
    previous: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspectItem(Event):
    """A checkout session's bagging area weighs more than its scanned items explain."""

    kiosk: str
    session: str
    unexplained_grams: float
    message: str


class HealthState(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceHealth(Event):
    """A device's health changed; ``reason`` says why (last will, silence, error rate, port)."""

    device: str
    state: HealthState
    reason: str = ""


# Rule output


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    CLEARED = "cleared"
    ESCALATED = "escalated"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(Event):
    """One transition of an alert. ``subject`` with ``rule`` identifies the alert's condition."""

    alert_id: str
    rule: str
    severity: Severity
    subject: str
    message: str
    state: AlertState
    sku: str | None = None
    location: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# Bridge output: ERP commands, each with an idempotency key


@dataclass(frozen=True, slots=True, kw_only=True)
class ErpLine:
    sku: str
    qty: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StockMovement(Event):
    """Goods leaving or entering the store's stock. ``key`` makes delivery idempotent."""

    key: str
    lines: tuple[ErpLine, ...]
    from_location: str
    to_location: str
    reason: str
    reference: str = ""
