"""HQ's config (``hq.yaml``): the chain's stores, HQ's users, the HQ broker, the time-series
server and, optionally, the ERP. Mistakes are reported by file, line and key, as for a store's
config. Secrets never live in the file: a ``*_env`` key names the environment variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from storeedge.errors import ConfigError
from storeedge.yamlfile import locate, read_yaml

StoreId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainSection(Strict):
    name: str = "storeedge"
    timezone: str = "UTC"  # where "today" starts for sales today

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class HttpSection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8090
    # HTTPS when both are given (PEM files; `storeedge certs` makes them).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Failed sign-ins per client and per account before 429, doubling the wait from
    # backoff_seconds up to 15 minutes.
    sign_in_attempts: Annotated[int, Field(ge=1, le=1000)] = 5
    sign_in_window_seconds: Annotated[float, Field(gt=0)] = 300.0
    sign_in_backoff_seconds: Annotated[float, Field(gt=0)] = 2.0
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    public_docs: bool = False  # the API's schema and docs without signing in
    # Every HQ user's action and every refused access, append-only (none: kept in memory).
    audit_file: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("http.tls_cert_file: give both tls_cert_file and tls_key_file")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


class HqUser(Strict):
    """A person (or system) at HQ. Every HQ user sees every store; store tokens mean nothing
    here."""

    name: str
    token_env: str

    def token(self) -> SecretStr | None:
        value = os.environ.get(self.token_env)
        return SecretStr(value) if value else None


class BrokerSection(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password_env: str | None = None
    ca_file: Path | None = None  # TLS when given
    client_id: str = "storeedge-hq"

    def password(self) -> SecretStr | None:
        value = os.environ.get(self.password_env) if self.password_env else None
        return SecretStr(value) if value else None


class TimeseriesSection(Strict):
    """A server answering the Prometheus query API (VictoriaMetrics, single or cluster ``select``).
    Queries use MetricsQL's ``count_le_over_time`` where PromQL has no exact equivalent."""

    url: str = "http://127.0.0.1:8428"
    timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    sample_seconds: Annotated[float, Field(gt=0)] = 10.0  # the stores' timeseries.sample_seconds
    # A lane or agent sample older than this is not "now" (a store that stopped reporting).
    stale_seconds: Annotated[float, Field(gt=0)] = 300.0
    # How often the overview's figures are read (one query for the whole chain).
    refresh_seconds: Annotated[float, Field(gt=0)] = 5.0


class ErpSection(Strict):
    kind: Literal["tryton", "none"] = "none"
    url: str = "http://127.0.0.1:8000/"
    database: str = "storeedge"
    username: str = "admin"
    password_env: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    ca_file: Path | None = None  # the CA that signed the ERP's certificate (default: the system's)

    def password(self) -> SecretStr | None:
        value = os.environ.get(self.password_env) if self.password_env else None
        return SecretStr(value) if value else None


class StoreEntry(Strict):
    id: StoreId
    name: str = ""
    warehouse: str | None = None  # the store's warehouse code in the ERP (stock accuracy)


class HqConfig(Strict):
    chain: ChainSection = ChainSection()
    http: HttpSection = HttpSection()
    users: list[HqUser] = []  # none: open, for development only
    broker: BrokerSection = BrokerSection()
    timeseries: TimeseriesSection = TimeseriesSection()
    erp: ErpSection = ErpSection()
    stores: Annotated[list[StoreEntry], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> HqConfig:
        seen: set[str] = set()
        for i, store in enumerate(self.stores):
            if store.id in seen:
                raise ValueError(f"stores.{i}.id: store {store.id!r} is listed twice")
            seen.add(store.id)
        names = [u.name for u in self.users]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"users.{i}.name: user {name!r} is listed twice")
        return self


def load_config(path: str | os.PathLike[str]) -> HqConfig:
    """Read and validate an HQ config file; raise ConfigError naming file, line and key."""
    file = str(path)
    data, raw = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(file, "<root>", "must be a mapping of sections (chain, stores, ...)")
    try:
        return HqConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        head, sep, rest = msg.partition(": ")
        if sep and " " not in head and "." in head:
            loc, msg = head.split("."), rest  # a cross-check names its own key path
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(file, ".".join(loc) or "<root>", msg + more,
                          locate(raw, loc)[1]) from exc
