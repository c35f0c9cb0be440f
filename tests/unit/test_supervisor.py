"""The supervisor: a task that raises or ends is restarted after a growing, capped delay; its
state, restarts and last error are shown; a crash loop makes it unhealthy."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from edge_agent.supervisor import Supervisor
from storeedge.errors import UsageError
from tests.waiting import until


async def test_a_task_that_raises_is_restarted_and_shown() -> None:
    runs = 0
    steady = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"boom {runs}")
        steady.set()
        await asyncio.Event().wait()

    sup = Supervisor("s1", initial_delay=0.01, max_delay=0.05, crash_limit=5)
    sup.add("flaky", flaky)
    runner = asyncio.create_task(sup.run())
    try:
        async with asyncio.timeout(5):
            await steady.wait()
        view = sup.view()["flaky"]
        assert view["state"] == "running"
        assert view["restarts"] == 2
        assert view["last_error"] == "RuntimeError: boom 2"
        assert not view["crash_looping"] and sup.unhealthy() == []
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert sup.view()["flaky"]["state"] == "stopped"


async def test_a_crash_loop_and_a_task_that_ends_are_unhealthy() -> None:
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def broken() -> None:
        starts.append(loop.time())
        raise ValueError("cannot convert")

    async def ends() -> None:
        return None

    sup = Supervisor("s1", initial_delay=0.01, max_delay=0.04, crash_limit=3)
    sup.add("broken", broken)
    sup.add("ends", ends)
    runner = asyncio.create_task(sup.run())
    try:
        await until(lambda: len(starts) >= 6)
        assert set(sup.unhealthy()) == {"broken", "ends"}
        view = sup.view()
        assert view["broken"]["crash_looping"] and view["broken"]["restarts"] >= 5
        assert view["broken"]["last_error"] == "ValueError: cannot convert"
        assert view["ends"]["last_error"] == "ended"
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(gap >= 0.005 for gap in gaps)  # jitter keeps a delay above half of it
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner


def test_a_name_is_supervised_once() -> None:
    sup = Supervisor("s1")

    async def idle() -> None:
        await asyncio.sleep(0)

    sup.add("tick", idle)
    with pytest.raises(UsageError, match="tick"):
        sup.add("tick", idle)
