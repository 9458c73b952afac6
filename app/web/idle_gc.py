"""When the server's garbage collector may take its long pauses: at start-up, and while no job runs.

A full (generation-2) collection walks every object the collector tracks, in one block of the event
loop: with several studio tabs open that is a stall every tab sees (tens of milliseconds or more;
bench/bench_ui.py measures it, docs/ui.md has the figures). Python starts one whenever enough
long-lived objects pile up, mid-job or not. So:
- everything alive once the app has started is frozen out of the collector's sight (`gc.freeze`);
- automatic full collections become `RARER` times rarer than Python's default (a safety net for a
  server never idle);
- and one runs once the worker has had no job at two looks `QUIET_SECONDS` apart, if young objects
  were promoted since the last one. Collections of generations 0 and 1 (young objects) stay automatic.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

QUIET_SECONDS = 1.0
RARER = 100
DEFAULT_FULL_COLLECTION_THRESHOLD = 10  # CPython's default third threshold (gc.get_threshold()[2])


def exempt_startup_objects() -> None:
    """Collect once, then move every surviving object (modules, NiceGUI, FastAPI, pydantic, the
    engine as built so far) out of the collector's sight for good."""
    gc.collect()
    gc.freeze()


class IdleCollector:
    """Runs full collections while no job runs instead of whenever Python happens to start one."""

    def __init__(self, is_idle: Callable[[], bool], quiet_seconds: float = QUIET_SECONDS) -> None:
        self.is_idle = is_idle
        self.quiet_seconds = quiet_seconds
        self.last_pause_ms: float | None = None
        self.collections = 0  # full collections this collector ran
        self.looks = 0  # times it looked whether the worker was idle
        self._idle_before = False

    @staticmethod
    def make_automatic_full_collections_rarer() -> None:
        """Set from a fixed base, not from the current threshold: a process that starts the app several
        times (tests, an embedding program) must not multiply it each time until it overflows."""
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, DEFAULT_FULL_COLLECTION_THRESHOLD * RARER)

    def collect_if_idle(self) -> bool:
        """A full collection now, if no job runs and generation 1 was collected since the last one."""
        if not self.is_idle() or gc.get_count()[2] == 0:
            return False
        began = time.perf_counter()
        gc.collect()
        self.last_pause_ms = (time.perf_counter() - began) * 1000
        self.collections += 1
        log.debug("full garbage collection while idle: %.1f ms", self.last_pause_ms)
        return True

    async def run(self) -> None:
        """Look every `quiet_seconds`; collect when the worker was idle at this look and the last."""
        self.make_automatic_full_collections_rarer()
        while True:
            await asyncio.sleep(self.quiet_seconds)
            idle_now = self.is_idle()
            self.looks += 1
            if idle_now and self._idle_before:  # idle for a while, not between two queued jobs
                self.collect_if_idle()
            self._idle_before = idle_now
