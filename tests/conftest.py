"""Shared fixtures. Each real service is started per session on free loopback ports by its own
fixture module under tests/fixtures, and stopped after. No test leaves a task, process or port."""

pytest_plugins = [
    "tests.fixtures.mosquitto",
    "tests.fixtures.victoria",
    "tests.fixtures.tryton",
    "tests.fixtures.postgres",
    "tests.fixtures.chromium",
    "tests.fixtures.rest_erp",
]

from hypothesis import settings  # noqa: E402

# Speed is measured in bench/, not asserted: a property test's example that runs long on a busy
# machine is no failure (hypothesis' default deadline is 200 ms per example).
settings.register_profile("storeedge", deadline=None)
settings.load_profile("storeedge")
