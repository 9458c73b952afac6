"""Helpers for the tests of the imitated APIs: the real client packages against a real server, calls that
block (A1111's txt2img, OpenAI's generations) run in a thread, and waits on the server's state."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import webuiapi
from openai import OpenAI

from tests.server_process import ServerProcess

SMALL = {"width": 64, "height": 64}
"""webuiapi sends 512x512 unless told; the test model makes 32 to 256."""


def a1111_client(server: ServerProcess, **auth: str) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, **auth)


def openai_client(server: ServerProcess, api_key: str = "unused", **options: Any) -> OpenAI:
    """No retries unless asked: a test sees the first answer."""
    return OpenAI(base_url=f"{server.base_url}/v1", api_key=api_key, **{"max_retries": 0, **options})


class InThread:
    """Run a blocking client call in a thread; `result()` waits for it and re-raises what it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._result = call()
        except BaseException as error:  # handed to the test thread
            self._error = error

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 180) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the call did not return in {timeout}s"
        if self._error is not None:
            raise self._error
        return self._result


def wait_for(condition: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (a state of the server), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not reached in {timeout}s")


def job_with_prompt(server: ServerProcess, prompt: str, statuses: tuple[str, ...] = ("running",)) -> dict | None:
    """The newest job with `prompt` in one of `statuses`, as GET /api/jobs shows it."""
    items = httpx.get(f"{server.base_url}/api/jobs", params={"limit": 200}).json()["items"]
    return next((job for job in items if job["request"]["prompt"] == prompt and job["status"] in statuses), None)


def running_step(server: ServerProcess, prompt: str, at_least: int = 1) -> dict | None:
    job = job_with_prompt(server, prompt)
    return job if job is not None and job["step"] >= at_least else None
