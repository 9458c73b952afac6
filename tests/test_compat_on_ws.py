"""A job from each imitated API is a job like any other: a /ws subscriber follows it to its end."""
from __future__ import annotations

import asyncio

from tests.compat_clients import SMALL, InThread, a1111_client, job_with_prompt, openai_client
from tests.ws_client import WsClient, for_session, is_terminal


async def follow_on_ws(server, prompt: str) -> list[dict]:
    """Find the job by its prompt once it is queued or running, subscribe, collect up to its terminal message."""
    async with asyncio.timeout(120):
        while (job := job_with_prompt(server, prompt, ("queued", "running", "completed"))) is None:
            await asyncio.sleep(0.05)
    async with WsClient(server.ws_url) as ws:
        subscribed = await ws.subscribe(job["session_id"])
        assert subscribed["type"] == "subscribed", subscribed
        return await ws.recv_until(for_session(job["session_id"], is_terminal))


async def test_an_a1111_job_reaches_a_ws_subscriber(server):
    prompt = "an a1111 job watched on /ws"
    api = a1111_client(server)
    call = InThread(lambda: api.txt2img(prompt=prompt, steps=40, seed=3, **SMALL))
    messages = await follow_on_ws(server, prompt)
    result = await asyncio.to_thread(call.result)
    complete = messages[-1]
    assert complete["type"] == "generation_complete" and complete["session_id"] == result.info["session_ids"][0]
    assert complete["metadata"]["seed"] == 3 and complete["metadata"]["scheduler"] == "euler_a"  # webuiapi's default


async def test_an_openai_job_reaches_a_ws_subscriber(server):
    prompt = "an openai job watched on /ws"
    client = openai_client(server)
    call = InThread(lambda: client.images.generate(prompt=prompt, size="64x64", n=2))
    messages = await follow_on_ws(server, prompt)
    response = await asyncio.to_thread(call.result)
    complete = messages[-1]
    assert complete["type"] == "generation_complete"
    served = [item.url.rsplit("/", 1)[-1] for item in response.data]
    assert [url.rsplit("/", 1)[-1] for url in complete["image_urls"]] == served
