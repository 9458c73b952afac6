"""The bus keeps only the most recently finished sessions in memory (a long-running server grew with every
job: the 10-minute soak measured +11 % RSS); an older one is rebuilt from the job store on subscribe."""
from __future__ import annotations

import asyncio

import pytest

from app.config import ModelSettings, Settings, StorageSettings
from app.engine import Engine
from app.engine.events import EventBus
from app.protocol import (
    GenerateRequest,
    GenerationCancelled,
    GenerationComplete,
    GenerationError,
    GenerationProgress,
    GenerationStarted,
    SessionEvent,
)


def test_only_the_most_recently_finished_sessions_stay_in_memory():
    bus = EventBus(max_finished_sessions=2)
    for session_id in ("a", "b", "c"):
        bus.publish(GenerationStarted(session_id=session_id, total_steps=1, model="m"))
    bus.publish(GenerationProgress(session_id="a", step=1, total_steps=1, message="step 1/1"))
    for session_id in ("b", "c"):
        bus.publish(GenerationError(session_id=session_id, error="failed"))
    assert bus.known("a") and bus.known("b") and bus.known("c")  # two finished: all kept
    bus.publish(GenerationCancelled(session_id="a"))
    assert not bus.known("b") and bus.known("c") and bus.known("a")  # the oldest finished one went


@pytest.mark.slow
async def test_a_finished_session_forgotten_by_the_bus_is_replayed_from_the_store(model_dir, tmp_path):
    settings = Settings(
        model=ModelSettings(base_model=str(model_dir), cpu_threads=1),
        storage=StorageSettings(data_dir=tmp_path / "data"),
    )
    engine = Engine(settings, EventBus(max_finished_sessions=1))
    await engine.start()
    try:
        assert await engine.wait_for_model() is None
        ended: dict[str, SessionEvent] = {}
        both = asyncio.get_running_loop().create_future()

        def on_event(event: SessionEvent, _text: str) -> None:
            if isinstance(event, GenerationComplete):
                ended[event.session_id] = event
                if len(ended) == 2 and not both.done():
                    both.set_result(None)

        engine.events.add_global_listener(on_event)
        first, _ = engine.submit(GenerateRequest(prompt="a red circle", num_inference_steps=2))
        engine.submit(GenerateRequest(prompt="a blue square", num_inference_steps=2))
        await asyncio.wait_for(both, 120)
        assert not engine.events.known(first)
        assert engine.ensure_session(first) == "completed"
        replayed = engine.events.replay(first, after_seq=0)
        assert replayed[-1].type == "generation_complete" and replayed[-1].seq == ended[first].seq
        assert replayed[-1].image_urls == ended[first].image_urls
    finally:
        await engine.stop()
