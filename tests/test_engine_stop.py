"""Stopping an engine embedded in a longer-lived process ends every generation process it started."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from app.config import ModelSettings, Settings, StorageSettings
from app.engine import Engine
from app.engine.events import EventBus
from app.protocol import GenerateRequest, GenerationProgress, SessionEvent

pytestmark = pytest.mark.slow  # servers (or an engine) of its own


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")  # a zombie has exited


async def test_stop_during_a_model_switch_closes_the_old_generation_process(model_dir, tmp_path):
    settings = Settings(
        model=ModelSettings(base_model=str(model_dir), cpu_threads=1),
        storage=StorageSettings(data_dir=tmp_path / "data"),
    )
    engine = Engine(settings, EventBus())
    await engine.start()
    stopped = False
    try:
        assert await engine.wait_for_model() is None
        session_id, _ = engine.submit(GenerateRequest(prompt="a long one", num_inference_steps=150))
        running = asyncio.get_running_loop().create_future()

        def on_event(event: SessionEvent, _text: str) -> None:
            if isinstance(event, GenerationProgress) and not running.done():
                running.set_result(None)

        engine.events.add_listener(session_id, on_event)
        await asyncio.wait_for(running, 60)
        old_pid = engine.health().model.process_id
        assert old_pid is not None and process_exists(old_pid)

        engine.switch_model(str(model_dir))  # the old model still finishes its job: the switch waits
        assert engine.health().model.state == "loading"
        await engine.stop()
        stopped = True

        assert not process_exists(old_pid), "the previous model's generation process outlived engine.stop()"
    finally:
        if not stopped:
            await engine.stop()
