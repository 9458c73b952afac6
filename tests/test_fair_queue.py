"""Round-robin fairness per client and model routing of the job queue, alone and in a running engine."""
from __future__ import annotations

import asyncio

import pytest

from app.config import ModelSettings, Settings, StorageSettings
from app.engine import Engine
from app.engine.events import EventBus
from app.engine.queue import JobQueue, QueuedJob
from app.protocol import GenerateRequest, GenerationQueued, GenerationStarted, SessionEvent


def test_one_clients_many_jobs_do_not_starve_anothers_one():
    queue = JobQueue(100)
    for index in range(1, 6):
        queue.put(f"a{index}", client="alice")
    queue.put("b1", client="bob")
    queue.put("c1", client="carol")
    assert queue.waiting() == ["a1", "b1", "c1", "a2", "a3", "a4", "a5"]
    assert queue.take_now(lambda _: True).session_id == "a1"
    assert queue.waiting() == ["b1", "c1", "a2", "a3", "a4", "a5"]  # alice was served last
    assert queue.position("b1") == 1 and queue.position("a2") == 3
    assert [queue.take_now(lambda _: True).session_id for _ in range(3)] == ["b1", "c1", "a2"]
    queue.put("b2", client="bob")
    assert queue.waiting() == ["b2", "a3", "a4", "a5"]  # bob was served before alice's a2


def test_a_worker_takes_only_jobs_for_the_model_it_holds():
    queue = JobQueue(100)
    queue.put("for-a", model="model-a")
    queue.put("for-b", model="model-b")
    queue.put("any", model=None)

    def holds(model: str):
        return lambda job: job.model in (None, model)

    assert queue.take_now(holds("model-b")).session_id == "for-b"  # ahead of the earlier job for model-a
    assert queue.take_now(holds("model-c")).session_id == "any"
    assert queue.take_now(holds("model-c")) is None  # model-a's job waits for a worker that has model-a
    assert queue.take_now(holds("model-a")) == QueuedJob("for-a", "", "model-a")


async def test_a_waiting_worker_is_woken_for_a_job_of_its_model_only():
    queue = JobQueue(100)
    taker = asyncio.ensure_future(queue.take(lambda job: job.model == "model-b"))
    queue.put("for-a", model="model-a")
    queue.put("for-b", model="model-b")
    assert (await asyncio.wait_for(taker, 5)).session_id == "for-b"
    assert queue.waiting() == ["for-a"]


@pytest.mark.slow
async def test_the_engine_runs_jobs_round_robin_per_client(model_dir, tmp_path):
    settings = Settings(
        model=ModelSettings(base_model=str(model_dir), cpu_threads=1),
        storage=StorageSettings(data_dir=tmp_path / "data"),
    )
    engine = Engine(settings, EventBus())
    await engine.start()
    try:
        assert await engine.wait_for_model() is None
        started: list[str] = []
        finished = asyncio.get_running_loop().create_future()
        names: dict[str, str] = {}
        positions: dict[str, int] = {}

        def on_event(event: SessionEvent, _text: str) -> None:
            if isinstance(event, GenerationStarted):
                started.append(names[event.session_id])
                if len(started) == len(names) and not finished.done():
                    finished.set_result(None)
            elif isinstance(event, GenerationQueued):
                positions[names.get(event.session_id, "?")] = event.position

        engine.events.add_global_listener(on_event)
        for name in ("a1", "a2", "a3", "a4"):
            session_id, _ = engine.submit(GenerateRequest(prompt=name, num_inference_steps=3), client="alice")
            names[session_id] = name
        session_id, position = engine.submit(GenerateRequest(prompt="b1", num_inference_steps=3), client="bob")
        names[session_id] = "b1"
        await asyncio.wait_for(finished, 120)
        assert started[:2] == ["a1", "b1"], started
        assert sorted(started) == ["a1", "a2", "a3", "a4", "b1"]
        assert position == 2  # all five were queued before the worker looked: a1, then bob's b1
        await engine.wait_until_idle()
    finally:
        await engine.stop()
