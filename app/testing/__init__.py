"""Helpers for tests of AI Artist and of programs built on it (like `starlette.testclient`)."""
