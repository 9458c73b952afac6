"""Full garbage collections happen while the worker is idle, not while a job runs (app/web/idle_gc.py)."""
from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from app.web.idle_gc import DEFAULT_FULL_COLLECTION_THRESHOLD, RARER, IdleCollector


@pytest.fixture(autouse=True)
def thresholds_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)


def test_collects_only_while_idle_and_only_when_objects_were_promoted():
    idle = False
    collector = IdleCollector(lambda: idle)
    gc.collect(1)  # young objects promoted to the old generation since the last full collection
    assert gc.get_count()[2] > 0

    assert not collector.collect_if_idle()  # a job runs
    assert collector.collections == 0 and collector.last_pause_ms is None

    idle = True
    assert collector.collect_if_idle()
    assert collector.collections == 1 and collector.last_pause_ms is not None
    assert gc.get_count()[2] == 0  # the old generation was really collected
    assert not collector.collect_if_idle()  # nothing promoted since: nothing to do
    assert collector.collections == 1


def test_automatic_full_collections_are_made_rarer_from_a_fixed_base_however_often_the_app_starts():
    young, middle, _ = gc.get_threshold()
    for _ in range(5):  # the NiceGUI User tests start the app many times in one process
        IdleCollector.make_automatic_full_collections_rarer()
    assert gc.get_threshold() == (young, middle, DEFAULT_FULL_COLLECTION_THRESHOLD * RARER)


async def until(condition, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_the_running_collector_waits_while_busy_and_collects_once_idle():
    idle = asyncio.Event()
    collector = IdleCollector(idle.is_set, quiet_seconds=0.01)
    task = asyncio.get_running_loop().create_task(collector.run())
    try:
        gc.collect(1)
        await until(lambda: collector.looks >= 5)  # several looks while a job runs
        assert collector.collections == 0
        idle.set()  # the worker has no job
        await until(lambda: collector.collections == 1)
    finally:
        task.cancel()
