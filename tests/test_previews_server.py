"""Live previews through a real server: only to subscribers that asked, throttled, served by URL while running."""
from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from tests.server_jobs import submit
from tests.ws_client import WsClient, for_session, is_terminal

EVERY_STEP = {"AI_ARTIST_PREVIEWS__MIN_INTERVAL_MS": "0"}


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


async def test_previews_go_only_to_subscribers_that_asked_and_are_served_while_running(start_server):
    server = start_server(env=EVERY_STEP)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(
        server.ws_url
    ) as watcher, WsClient(server.ws_url) as plain:
        session_id = await submit(http, num_inference_steps=150, seed=3)
        await watcher.subscribe(session_id, previews=True)
        await plain.subscribe(session_id)
        first = (await watcher.recv_until(for_session(session_id, lambda m: m["type"] == "generation_preview")))[-1]

        image = decode_data_url(first["image"])
        assert image.format == "JPEG" and image.size == (first["width"], first["height"])
        assert first["image_url"].startswith(f"/api/jobs/{session_id}/preview.jpg")
        served = await http.get(first["image_url"])
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(served.content)).size == image.size

        await http.post(f"/api/jobs/{session_id}/cancel")
        watched = await watcher.recv_until(for_session(session_id, is_terminal))
        plain_messages = await plain.recv_until(for_session(session_id, is_terminal))
        assert watched[-1]["type"] == "generation_cancelled"
        assert not [m for m in plain_messages if m["type"] == "generation_preview"]
        assert [m for m in plain_messages if m["type"] == "generation_progress"], "progress still flows"
        kept = await http.get(first["image_url"])  # a page asking just as the job ends still gets it
        assert kept.status_code == 200 and kept.headers["content-type"] == "image/jpeg"


async def test_every_n_steps_throttles_previews_and_disabled_sends_none(start_server):
    every_third = start_server(env={**EVERY_STEP, "AI_ARTIST_PREVIEWS__EVERY_N_STEPS": "3"})
    disabled = start_server(env={"AI_ARTIST_PREVIEWS__ENABLED": "false"})
    for server, expected in ((every_third, [3, 6, 9]), (disabled, [])):
        async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
            # Previews are rendered only while watched: subscribe while the job still waits behind another
            # (of another size, so the two never share a run), so it is watched from its first step.
            blocker = await submit(http, num_inference_steps=150, width=96, height=96)
            session_id = await submit(http, num_inference_steps=10, seed=1)
            await ws.subscribe(session_id, previews=True)
            await http.post(f"/api/jobs/{blocker}/cancel")
            messages = await ws.recv_until(for_session(session_id, is_terminal))
        assert messages[-1]["type"] == "generation_complete"
        assert [m["step"] for m in messages if m["type"] == "generation_preview"] == expected


async def test_unknown_session_preview_is_404(server):
    response = httpx.get(f"{server.base_url}/api/jobs/not-a-session/preview.jpg")
    assert response.status_code == 404
