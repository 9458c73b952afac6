"""Previews are rendered only while someone watches the job: a /ws subscriber with `previews: true` (or a
studio tab showing it). Checked through a real server: its generation process renders none for a job
nobody watches (no preview stored, none counted in GET /api/health), and starts when a watcher arrives."""
from __future__ import annotations

import httpx

from tests.server_jobs import submit
from tests.ws_client import WsClient, for_session, is_terminal

EVERY_STEP = {"AI_ARTIST_PREVIEWS__MIN_INTERVAL_MS": "0"}


def is_step(at_least: int):
    return lambda message: message["type"] == "generation_progress" and message["step"] >= at_least


async def test_a_job_nobody_watches_renders_no_previews_and_a_watcher_arriving_mid_job_gets_them(start_server):
    server = start_server(env=EVERY_STEP)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as plain:
        # Nobody watches: progress flows, no preview is rendered at any step.
        unwatched = await submit(http, num_inference_steps=12, seed=5)
        await plain.subscribe(unwatched)
        messages = await plain.recv_until(for_session(unwatched, is_terminal))
        assert messages[-1]["type"] == "generation_complete"
        assert [m for m in messages if m["type"] == "generation_progress"], "progress still flows"
        assert (await http.get(f"/api/jobs/{unwatched}/preview.jpg")).status_code == 404
        health = (await http.get("/api/health")).json()
        assert health["previews"] == {"rendered": 0, "watched_jobs": 0}

        # A watcher arrives while the job runs: previews from then on, to it.
        watched = await submit(http, num_inference_steps=150, seed=6)
        await plain.subscribe(watched)
        await plain.recv_until(for_session(watched, is_step(3)))
        assert (await http.get("/api/health")).json()["previews"]["rendered"] == 0
        async with WsClient(server.ws_url) as watcher:
            await watcher.subscribe(watched, previews=True)
            preview = (await watcher.recv_until(for_session(watched, lambda m: m["type"] == "generation_preview")))[-1]
            assert preview["step"] > 3
            health = (await http.get("/api/health")).json()
            assert health["previews"]["rendered"] >= 1 and health["previews"]["watched_jobs"] == 1
            assert (await http.get(preview["image_url"])).status_code == 200
            await watcher.send({"type": "unsubscribe", "session_id": watched})
            await watcher.recv_until(lambda m: m["type"] == "unsubscribed")
        # Its only watcher left: the job stops rendering (the count stops growing) and still runs.
        assert (await http.get("/api/health")).json()["previews"]["watched_jobs"] == 0
        left_at = (await http.get(f"/api/jobs/{watched}")).json()["step"]
        await plain.recv_until(for_session(watched, is_step(left_at + 3)))
        stopped_at = (await http.get("/api/health")).json()["previews"]["rendered"]
        latest = (await plain.recv_until(for_session(watched, is_step(left_at + 13))))[-1]
        assert (await http.get("/api/health")).json()["previews"]["rendered"] == stopped_at
        assert latest["step"] < 150
        await http.post(f"/api/jobs/{watched}/cancel")
        assert (await plain.recv_until(for_session(watched, is_terminal)))[-1]["type"] == "generation_cancelled"
