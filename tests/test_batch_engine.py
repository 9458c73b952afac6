"""An engine stopped while a batch runs puts every job of the batch back in the queue (without using up
an attempt), as it does with a job run alone."""
from __future__ import annotations

import asyncio

import pytest

from app.config import ModelSettings, QueueSettings, Settings, StorageSettings
from app.engine import Engine
from app.engine.events import EventBus
from app.engine.store import Store
from app.protocol import GenerateRequest, GenerationProgress, SessionEvent

pytestmark = pytest.mark.slow  # an engine of its own


async def test_stopping_during_a_batch_requeues_every_job_of_it(model_dir, tmp_path):
    settings = Settings(
        model=ModelSettings(base_model=str(model_dir), cpu_threads=1),
        storage=StorageSettings(data_dir=tmp_path / "data"),
        queue=QueueSettings(max_batch=4),
    )
    engine = Engine(settings, EventBus())
    await engine.start()
    stopped = False
    try:
        assert await engine.wait_for_model() is None
        blocker, _ = engine.submit(GenerateRequest(prompt="another size", num_inference_steps=150, width=96, height=96))
        batch = [engine.submit(GenerateRequest(prompt=f"job {i}", num_inference_steps=150, seed=i))[0] for i in range(3)]
        running = asyncio.get_running_loop().create_future()

        def on_event(event: SessionEvent, _text: str) -> None:
            if isinstance(event, GenerationProgress) and not running.done():
                running.set_result(None)

        engine.events.add_listener(batch[-1], on_event)
        engine.cancel(blocker)
        await asyncio.wait_for(running, 120)
        assert engine.health().queue.running == 3
        await engine.stop()
        stopped = True
    finally:
        if not stopped:
            await engine.stop()
    store = Store(tmp_path / "data" / "ai-artist.sqlite3")
    try:
        jobs = [store.get_job(session_id) for session_id in batch]
        assert [(job.status, job.attempts) for job in jobs if job is not None] == [("queued", 0)] * 3
    finally:
        store.close()
