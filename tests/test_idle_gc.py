"""Full garbage collections happen while the worker is idle, not while a job runs (app/idle_gc.py)."""
from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from app.web.idle_gc import RARER, IdleCollector


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """One entry per generation-2 collection started while the test runs; restores the thresholds."""
    seen: list[int] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(info["generation"])

    gc.callbacks.append(on_gc)
    threshold = gc.get_threshold()
    yield seen
    gc.callbacks.remove(on_gc)
    gc.set_threshold(*threshold)


async def test_collects_only_while_idle_and_only_when_objects_were_promoted(full_collections):
    idle = asyncio.Event()
    collector = IdleCollector(idle.is_set)
    gc.collect(1)  # young objects promoted to the old generation since the last full collection
    assert gc.get_count()[2] > 0

    assert not collector.collect_if_idle()  # a job runs
    assert full_collections == []

    idle.set()
    assert collector.collect_if_idle()
    assert len(full_collections) == 1
    assert collector.last_pause_ms is not None and collector.last_pause_ms >= 0
    assert not collector.collect_if_idle()  # nothing promoted since: nothing to do


async def test_the_running_collector_makes_automatic_ones_rarer_and_collects_once_idle(full_collections):
    young, middle, old = gc.get_threshold()
    idle = asyncio.Event()
    collector = IdleCollector(idle.is_set, quiet_seconds=0.01)
    collected = asyncio.get_running_loop().create_future()

    def on_full_collection(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2 and not collected.done():
            collected.set_result(None)

    task = asyncio.get_running_loop().create_task(collector.run())
    gc.callbacks.append(on_full_collection)
    try:
        await asyncio.sleep(0)  # let it start
        assert gc.get_threshold() == (young, middle, old * RARER)
        assert collector.last_pause_ms is None  # busy: nothing collected
        gc.collect(1)
        idle.set()  # the worker has no job
        await asyncio.wait_for(collected, 10)
        assert collector.last_pause_ms is not None
    finally:
        gc.callbacks.remove(on_full_collection)
        task.cancel()
