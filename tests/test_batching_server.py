"""Dynamic batching through a real server: compatible waiting jobs run as one pipeline call, each with its
own session (progress, previews, images, metadata), the same images as alone; cancelling one of a batch
ends only it; a job that cannot share is not held back; `queue.max_batch: 1` runs one job at a time;
image-to-image jobs from different pictures share a run."""
from __future__ import annotations

import base64
import io

import httpx
import numpy as np
from PIL import Image, ImageDraw

from tests.server_jobs import pixels, submit
from tests.ws_client import Message, WsClient, for_session, is_terminal

STEPS = 40
OTHER_SIZE = {"width": 96, "height": 96}  # the embedded model's default is 64×64: these cannot share a run


def of_type(kind: str):
    return lambda message: message["type"] == kind


def index_of(messages: list[Message], session_id: str, kind: str) -> int:
    return next(i for i, m in enumerate(messages) if m.get("session_id") == session_id and m["type"] == kind)


async def start_blocker(http: httpx.AsyncClient, ws: WsClient) -> str:
    """A long job of another size that keeps the worker busy while the test queues the jobs it watches."""
    blocker = await submit(http, prompt="keeps the worker busy", num_inference_steps=150, **OTHER_SIZE)
    await ws.subscribe(blocker)
    await ws.recv_until(for_session(blocker, of_type("generation_progress")))
    return blocker


async def test_compatible_jobs_share_a_run_each_with_its_own_session_and_solo_images(start_server):
    server = start_server(env={"AI_ARTIST_QUEUE__MAX_BATCH": "3", "AI_ARTIST_PREVIEWS__MIN_INTERVAL_MS": "0"})
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        blocker = await start_blocker(http, ws)
        first = await submit(http, prompt="a red apple", num_inference_steps=STEPS, seed=11, num_images=2)
        other_size = await submit(http, prompt="a wide field", num_inference_steps=STEPS, seed=5, **OTHER_SIZE)
        second = await submit(http, prompt="a blue lake", negative_prompt="", num_inference_steps=STEPS, seed=22)
        dropped = await submit(http, prompt="cancelled in the batch", num_inference_steps=STEPS, seed=33)
        after = await submit(http, prompt="queued after the other size", num_inference_steps=STEPS, seed=44)
        await ws.subscribe(first, previews=True)
        for session_id in (other_size, second, dropped, after):
            await ws.subscribe(session_id)
        await http.post(f"/api/jobs/{blocker}/cancel")
        await ws.recv_until(for_session(dropped, of_type("generation_progress")))
        assert (await http.get("/api/health")).json()["queue"]["running"] == 3, "first, second and dropped run"
        assert (await http.post(f"/api/jobs/{dropped}/cancel")).json()["status"] == "running"  # until its next step
        ends = {}
        while len(ends) < 5:
            message = await ws.recv()
            if is_terminal(message) and message["session_id"] != blocker:
                ends[message["session_id"]] = message
        messages = ws.received  # everything, from the first subscription on

    assert ends[dropped]["type"] == "generation_cancelled"
    assert index_of(messages, dropped, "generation_cancelled") < index_of(messages, first, "generation_complete")
    batch = (first, second, dropped)
    # One run: all three started before any of them ended; the job of another size ran right after it,
    # before the compatible job queued behind it.
    last_start = max(index_of(messages, job, "generation_started") for job in batch)
    assert last_start < min(index_of(messages, job, "generation_complete") for job in (first, second))
    assert index_of(messages, other_size, "generation_started") > index_of(messages, second, "generation_complete")
    assert index_of(messages, other_size, "generation_started") < index_of(messages, after, "generation_started")
    for job in (first, second):
        steps = [m["step"] for m in messages if m.get("session_id") == job and m["type"] == "generation_progress"]
        assert steps == sorted(steps) and steps[-1] == STEPS
        seqs = [m["seq"] for m in messages if m.get("session_id") == job and "seq" in m]
        assert seqs == sorted(seqs)
    dropped_steps = [m["step"] for m in messages if m.get("session_id") == dropped and m["type"] == "generation_progress"]
    assert dropped_steps and max(dropped_steps) < STEPS
    previews = {m["session_id"] for m in messages if m["type"] == "generation_preview"}
    assert previews == {first}, "only the job someone watches gets previews, of its own rows"
    assert len(ends[first]["image_paths"]) == 2 and len(ends[second]["image_paths"]) == 1
    assert ends[first]["metadata"]["prompt"] == "a red apple" and ends[second]["metadata"]["seed"] == 22

    # The same jobs alone (the worker is idle: each runs by itself) give the same images within 1/255.
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        gallery = (await http.get("/api/gallery")).json()["items"]
        assert sum(1 for item in gallery if item["session_id"] in (first, second)) == 3
        for job, body in ((first, {"prompt": "a red apple", "seed": 11, "num_images": 2}),
                          (second, {"prompt": "a blue lake", "seed": 22})):
            alone = await submit(http, num_inference_steps=STEPS, **body)
            await ws.subscribe(alone)
            done = (await ws.recv_until(for_session(alone, is_terminal)))[-1]
            for path_alone, path_batched in zip(done["image_paths"], ends[job]["image_paths"], strict=True):
                difference = np.abs(pixels(path_alone).astype(int) - pixels(path_batched).astype(int))
                assert difference.max() <= 1, f"off by {difference.max()}/255"


async def test_max_batch_1_runs_one_job_at_a_time(start_server):
    server = start_server(env={"AI_ARTIST_QUEUE__MAX_BATCH": "1"})
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        blocker = await start_blocker(http, ws)
        jobs = [await submit(http, prompt=f"job {index}", num_inference_steps=4, seed=index) for index in range(3)]
        for session_id in jobs:
            await ws.subscribe(session_id)
        await http.post(f"/api/jobs/{blocker}/cancel")
        messages = await ws.recv_until(for_session(jobs[-1], is_terminal))
    for earlier, later in zip(jobs, jobs[1:]):
        assert index_of(messages, earlier, "generation_complete") < index_of(messages, later, "generation_started")


def data_url(colour: str) -> str:
    picture = Image.new("RGB", (64, 64), colour)
    ImageDraw.Draw(picture).ellipse((12, 12, 52, 52), fill="white")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def test_image_to_image_jobs_from_different_pictures_share_a_run(start_server):
    server = start_server(env={"AI_ARTIST_QUEUE__MAX_BATCH": "4"})
    image_job = {"num_inference_steps": 20, "strength": 0.5}
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        blocker = await start_blocker(http, ws)
        red = await submit(http, prompt="a red apple", init_image=data_url("red"), seed=1, **image_job)
        blue = await submit(http, prompt="a blue lake", init_image=data_url("blue"), seed=2, **image_job)
        stronger = await submit(http, prompt="another strength", init_image=data_url("red"), seed=3,
                                num_inference_steps=20, strength=0.8)
        for session_id in (red, blue, stronger):
            await ws.subscribe(session_id)
        await http.post(f"/api/jobs/{blocker}/cancel")
        await ws.recv_until(for_session(blue, of_type("generation_progress")))
        assert (await http.get("/api/health")).json()["queue"]["running"] == 2, "red and blue run together"
        await ws.recv_until(for_session(stronger, is_terminal))
        messages = ws.received
        ends = {job: next(m for m in messages if m.get("session_id") == job and is_terminal(m)) for job in (red, blue)}

        assert max(index_of(messages, job, "generation_started") for job in (red, blue)) < min(
            index_of(messages, job, "generation_complete") for job in (red, blue))
        assert index_of(messages, stronger, "generation_started") > index_of(messages, blue, "generation_complete")
        for job, colour, seed in ((red, "red", 1), (blue, "blue", 2)):
            assert ends[job]["type"] == "generation_complete" and ends[job]["metadata"]["mode"] == "img2img"
            alone = await submit(http, prompt=ends[job]["metadata"]["prompt"], init_image=data_url(colour), seed=seed,
                                 **image_job)
            await ws.subscribe(alone)
            done = (await ws.recv_until(for_session(alone, is_terminal)))[-1]
            batched = pixels(ends[job]["image_paths"][0]).astype(int)
            difference = np.abs(pixels(done["image_paths"][0]).astype(int) - batched)
            assert difference.max() <= 1, f"off by {difference.max()}/255"
