"""The Python API of the websocket guide: ArtworkGenerator with a session_id, and the connection manager."""
from __future__ import annotations

import asyncio
import threading
import time

import torch
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient

from app.config import load_config
from app.engine.events import bus
from app.generator import ArtworkGenerator, GenerationCancelledError
from app.pipeline.progress_sink import set_session_progress_sink
from app.protocol import GenerationProgress
from app.web.server import publish_library_progress
from app.web.websocket import ConnectionManager


def test_generator_from_config_like_the_guide(model_dir, monkeypatch):
    monkeypatch.setenv("AI_ARTIST_MODEL__BASE_MODEL", str(model_dir))
    monkeypatch.setenv("AI_ARTIST_MODEL__DEVICE", "cpu")
    config = load_config()
    generator = ArtworkGenerator(model_id=config["model"]["base_model"], device=config["model"]["device"])
    generator.load_model()
    torch.set_num_threads(1)
    images = generator.generate(prompt="A beautiful sunset", num_inference_steps=2, seed=3)
    assert len(images) == 1 and images[0].size == (generator.size_limits.default_width,) * 2
    again = generator.generate(prompt="A beautiful sunset", num_inference_steps=2, seed=3)
    assert again[0].tobytes() == images[0].tobytes(), "same seed, same image"


async def test_session_id_sends_progress_to_that_sessions_subscribers_on_the_loop(model_dir):
    """In the server's process, through the progress sink the server installs (app/web/server.py)."""
    torch.set_num_threads(1)
    bus.attach_loop(asyncio.get_running_loop())
    received: list[tuple[GenerationProgress, int]] = []
    other: list[object] = []

    def listener(event, _text):
        received.append((event, threading.get_ident()))

    def other_listener(event, _text):
        other.append(event)

    bus.add_listener("my-session-123", listener)
    bus.add_listener("someone-else", other_listener)
    set_session_progress_sink(publish_library_progress)
    try:
        generator = ArtworkGenerator(model_id=str(model_dir), device="cpu")
        images = await asyncio.to_thread(
            generator.generate, prompt="A beautiful sunset", num_inference_steps=4, session_id="my-session-123"
        )
        await asyncio.sleep(0)  # let the callbacks queued with call_soon_threadsafe run
    finally:
        set_session_progress_sink(None)
        bus.remove_listener("my-session-123", listener)
        bus.remove_listener("someone-else", other_listener)
    assert images
    steps = [event.step for event, _ in received]
    assert steps == [1, 2, 3, 4] and all(event.total_steps == 4 for event, _ in received)
    assert {thread for _, thread in received} == {threading.get_ident()}, "listeners run on the event loop"
    assert [event.seq for event, _ in received] == [1, 2, 3, 4]
    assert other == []


def test_should_stop_interrupts_a_generation(model_dir):
    torch.set_num_threads(1)
    generator = ArtworkGenerator(model_id=str(model_dir), device="cpu")
    steps: list[int] = []
    try:
        generator.generate(
            prompt="a red circle", num_inference_steps=20,
            on_step=lambda step, total, latents: steps.append(step), should_stop=lambda: len(steps) >= 2,
        )
    except GenerationCancelledError:
        pass
    else:
        raise AssertionError("expected GenerationCancelledError")
    assert steps == [1, 2]


def test_custom_websocket_handler_from_the_guide():
    manager = ConnectionManager()
    app = FastAPI()

    @app.websocket("/my/custom/ws")
    async def my_websocket(websocket: WebSocket):
        await manager.connect(websocket)
        try:
            while True:
                data = await websocket.receive_json()
                await manager.broadcast({"type": "custom", "data": data})
        except WebSocketDisconnect:
            manager.disconnect(websocket)

    with TestClient(app) as client:
        with client.websocket_connect("/my/custom/ws") as first, client.websocket_connect("/my/custom/ws") as second:
            first.send_json({"hello": "world"})
            assert first.receive_json() == {"type": "custom", "data": {"hello": "world"}}
            assert second.receive_json() == {"type": "custom", "data": {"hello": "world"}}
            assert len(manager.connections) == 2
        wait_until(lambda: len(manager.connections) == 0)  # both clients left: disconnect() forgot them
        with client.websocket_connect("/my/custom/ws") as third:
            third.send_json({"n": 1})
            assert third.receive_json() == {"type": "custom", "data": {"n": 1}}
            assert len(manager.connections) == 1
        wait_until(lambda: len(manager.connections) == 0)


def wait_until(condition, timeout: float = 30) -> None:
    """The server side handles a client's close on its own thread: wait for the state, not a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_compile_option_compiles_the_denoiser_in_place(model_dir):
    from app.pipeline.values import ModelOptions

    generator = ArtworkGenerator(model_id=str(model_dir), device="cpu", options=ModelOptions(compile=True))
    generator.load_model()
    denoiser = generator.pipeline.unet
    assert getattr(denoiser, "_compiled_call_impl", None) is not None, "unet.compile() was applied"
    assert denoiser.config.sample_size, "the pipeline keeps its own module and config"
    plain = ArtworkGenerator(model_id=str(model_dir), device="cpu")
    plain.load_model()
    assert getattr(plain.pipeline.unet, "_compiled_call_impl", None) is None


def test_each_job_gets_its_own_unstepped_scheduler(model_dir):
    generator = ArtworkGenerator(str(model_dir), device="cpu", cpu_threads=1)
    generator.load_model()
    first = generator.generate(prompt="a lighthouse", num_inference_steps=3, seed=5, scheduler="dpmpp_2m")
    used = generator.pipeline.scheduler
    generator.generate(prompt="a lighthouse", num_inference_steps=2, seed=6, scheduler="dpmpp_2m")
    assert generator.pipeline.scheduler is not used, "a job must not step the previous job's scheduler"
    again = generator.generate(prompt="a lighthouse", num_inference_steps=3, seed=5, scheduler="dpmpp_2m")
    assert again[0].tobytes() == first[0].tobytes()
    assert type(generator.pipeline.scheduler).__name__ == "DPMSolverMultistepScheduler"
