"""Shared fixtures. Each real service is started per session on free loopback ports by its own
fixture module under tests/fixtures, and stopped after. No test leaves a task, process or port."""

pytest_plugins = [
    "tests.fixtures.mosquitto",
    "tests.fixtures.victoria",
    "tests.fixtures.tryton",
    "tests.fixtures.postgres",
    "tests.fixtures.chromium",
]
