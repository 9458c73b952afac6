"""Helpers for end-to-end tests that run jobs on a real server: submit, follow on /ws, read the PNG."""
from __future__ import annotations

from typing import Any

import httpx
import numpy as np
from PIL import Image

from tests.ws_client import Message, WsClient, for_session, is_terminal


async def submit(http: httpx.AsyncClient, **body: Any) -> str:
    response = await http.post("/api/generate", json={"prompt": "a painting of a cat", **body})
    assert response.status_code == 200, response.text
    return response.json()["session_id"]


async def run_job(http: httpx.AsyncClient, ws: WsClient, previews: bool = False, **body: Any) -> list[Message]:
    """Submit, subscribe and collect every message up to the terminal one.

    Previews are rendered only while someone watches a job, so with `previews` the job is watched from its
    first step: it is queued behind a job that cannot share its run (other steps), subscribed to, and then
    that job is cancelled."""
    blocker = None
    if previews:
        other_steps = 150 if body.get("num_inference_steps") != 150 else 149
        blocker = await submit(http, **{**body, "prompt": "holds the worker", "num_inference_steps": other_steps})
    session_id = await submit(http, **body)
    subscribed = await ws.subscribe(session_id, previews=previews)
    assert subscribed["type"] == "subscribed", subscribed
    if blocker is not None:
        cancelled = await http.post(f"/api/jobs/{blocker}/cancel")
        assert cancelled.status_code in (200, 409), cancelled.text  # 409: it had already ended
    return await ws.recv_until(for_session(session_id, is_terminal))


def pixels(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
