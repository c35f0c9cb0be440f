"""One supervisor for the agent's background tasks (drivers, the ERP outbox, the time-series
sink, catalog refresh, snapshots, the tick, the MQTT connections).

Each task is a named coroutine factory run in one TaskGroup. A task that raises, or ends when it
should run forever, is logged and started again after a capped, jittered, growing delay (the
delay starts over once a run lasted ``stable_after`` seconds). Every task's state, restarts and
last error are kept for ``/readyz`` and the metrics: a task waiting to restart, or one that
failed ``crash_limit`` times within ``crash_window`` seconds and has not run ``stable_after``
seconds since, makes the agent not ready at once. Cancelling ``run`` ends every task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from storeedge.errors import UsageError

log = logging.getLogger(__name__)

Factory = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class TaskState:
    """What is known of one supervised task."""

    name: str
    state: str = "starting"  # starting | running | restarting | stopped
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # wall clock, for people
    running_since: float | None = None  # monotonic
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=16))  # monotonic

    def crash_looping(self, now: float, sup: Supervisor) -> bool:
        """Failed ``crash_limit`` times within ``crash_window``, and not running steadily
        (for ``stable_after``) since."""
        if (self.state == "running" and self.running_since is not None
                and now - self.running_since >= sup.stable_after):
            return False
        return sum(1 for t in self.failures if now - t <= sup.crash_window) >= sup.crash_limit

    def view(self, now: float, sup: Supervisor) -> dict[str, Any]:
        return {"state": self.state, "restarts": self.restarts, "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "crash_looping": self.crash_looping(now, sup)}


class Supervisor:
    def __init__(self, store_id: str, *, initial_delay: float = 1.0, max_delay: float = 60.0,
                 stable_after: float = 30.0, crash_window: float = 300.0, crash_limit: int = 3,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.store_id = store_id
        self.initial_delay, self.max_delay = initial_delay, max_delay
        self.stable_after = stable_after
        self.crash_window, self.crash_limit = crash_window, crash_limit
        self._monotonic, self._wall = monotonic, wall
        self._factories: dict[str, Factory] = {}
        self.tasks: dict[str, TaskState] = {}
        self._group: asyncio.TaskGroup | None = None

    def add(self, name: str, factory: Factory) -> None:
        """Supervise ``factory()`` under ``name`` (started now when the supervisor runs)."""
        if name in self._factories:
            raise UsageError(f"a task named {name!r} is supervised already")
        self._factories[name] = factory
        self.tasks[name] = TaskState(name)
        if self._group is not None:
            self._group.create_task(self._keep(name, factory), name=name)

    async def run(self) -> None:
        """Run every task until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self._group = tg
            for name, factory in self._factories.items():
                tg.create_task(self._keep(name, factory), name=name)
            try:
                await asyncio.Future()  # until cancelled
            finally:
                self._group = None

    async def _keep(self, name: str, factory: Factory) -> None:
        state = self.tasks[name]
        delay = self.initial_delay
        try:
            while True:
                state.state = "running"
                state.running_since = started = self._monotonic()
                try:
                    await factory()
                    error = "ended"
                    log.error("task %s ended on its own (store %s); restarting", name,
                              self.store_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    log.exception("task %s failed (store %s)", name, self.store_id)
                now = self._monotonic()
                if now - started >= self.stable_after:
                    delay = self.initial_delay
                state.failures.append(now)
                state.last_error, state.last_error_at = error, self._wall()
                state.state = "restarting"
                wait = delay * (0.5 + random.random() / 2)  # jitter: restarts do not align
                log.warning("task %s restarts in %.1fs (store %s)", name, wait, self.store_id)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.max_delay)
                state.restarts += 1
        finally:
            state.state = "stopped"

    def view(self) -> dict[str, dict[str, Any]]:
        now = self._monotonic()
        return {name: s.view(now, self) for name, s in self.tasks.items()}

    def unhealthy(self) -> list[str]:
        """The tasks that are down now or crash-looping."""
        now = self._monotonic()
        return [name for name, s in self.tasks.items()
                if s.state == "restarting" or s.crash_looping(now, self)]
