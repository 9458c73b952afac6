"""The test suite's fixtures live in tests/fixtures/ and are registered here as plugins."""
pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.families"]
