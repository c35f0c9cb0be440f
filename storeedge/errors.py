"""The storeedge error tree. Every error a driver, codec, bridge or the agent raises is one of
these; library exceptions (serial, HTTP, SQLite, MQTT) are translated at the boundary with
``raise ... from``.

    StoreEdgeError
    ├── ConfigError          a config file is wrong: names the file, the key and what is wrong
    │   └── ConfigErrors     several problems of one file, all found in one pass
    ├── UsageError           we called something wrongly (a bug of ours, never the peer's fault)
    ├── PeerError            something outside sent garbage; the rest flows on
    │   ├── FrameError       device bytes that do not decode (bad CRC, bad length, unknown function)
    │   ├── PayloadError     JSON from MQTT or HTTP that does not fit the schema
    │   ├── ConflictError    an id reused with different content (a POS txn_id)
    │   └── ErpRejected      the ERP refused a command for good (retrying cannot help)
    └── Unavailable          something outside is not there right now; retry later
        ├── DeviceUnavailable    a serial port vanished, a device stopped answering
        ├── BrokerUnavailable    the MQTT broker cannot be reached
        ├── ErpUnavailable       the ERP is down or timed out
        ├── TimeSeriesUnavailable
        └── JournalUnavailable   the agent's own disk cannot take a write (full, I/O error)
"""

from __future__ import annotations

from collections.abc import Sequence


class StoreEdgeError(Exception):
    """Base of every storeedge error."""


class ConfigError(StoreEdgeError):
    """A configuration file is invalid. ``str()`` reads ``file: key: what is wrong``."""

    def __init__(self, file: str, key: str, problem: str, line: int | None = None) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        self.line = line
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {key}: {problem}")

    @property
    def problems(self) -> tuple[ConfigError, ...]:
        """Every problem found; this one alone for a plain ConfigError."""
        return (self,)


class ConfigErrors(ConfigError):
    """Several problems of one file, found in one pass so a person fixes them all at once.
    Its own ``file``, ``key``, ``problem`` and ``line`` are the first problem's; ``str()`` has
    one line per problem."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if not errors:
            raise UsageError("ConfigErrors needs at least one problem")
        first = errors[0]
        super().__init__(first.file, first.key, first.problem, first.line)
        self.errors = tuple(errors)
        self.args = ("\n".join(str(e) for e in self.errors),)

    @property
    def problems(self) -> tuple[ConfigError, ...]:
        return self.errors


class UsageError(StoreEdgeError):
    """We misused an API of ours (wrong state, wrong argument)."""


class PeerError(StoreEdgeError):
    """A peer (device, broker client, POS, ERP) sent something we cannot accept."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class FrameError(PeerError):
    """Device bytes that do not decode."""


class PayloadError(PeerError):
    """A JSON payload that does not fit its schema."""


class ConflictError(PeerError):
    """An id the peer used before now comes with different content."""


class ErpRejected(PeerError):
    """The ERP refused a command for a reason retrying cannot fix."""


class Unavailable(StoreEdgeError):
    """Something outside us is not reachable now; the caller retries later."""


class DeviceUnavailable(Unavailable):
    """A device or its port is not there."""


class BrokerUnavailable(Unavailable):
    """The MQTT broker cannot be reached."""


class ErpUnavailable(Unavailable):
    """The ERP is down, slow or returned a transient error."""


class TimeSeriesUnavailable(Unavailable):
    """The time-series server is down or refused a batch transiently."""


class JournalUnavailable(Unavailable):
    """The journal cannot write now (disk full, I/O error); what is pending waits for it."""
