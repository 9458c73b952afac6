"""The test suite's fixtures live in tests/fixtures/ and are registered here as plugins.

Markers (pyproject.toml): `browser` (drives Debian's chromium), `bench` (runs benchmark code) and `slow`
(starts servers or an engine of its own, a browser or a benchmark, or downloads a model: seconds each;
a test that asks for `start_server` is marked here). `pytest -m "not slow"` is the quick
part; the README's test command runs everything.
"""
from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.servers", "tests.fixtures.families", "tests.fixtures.family_servers", "tests.fixtures.browser",
    "tests.fixtures.redis",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "start_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)  # a server of its own: the shared one serves the quick tests
