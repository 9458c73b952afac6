"""The websocket guide's flow end to end against a real server: POST /api/generate, /ws, images on disk."""
from __future__ import annotations

import httpx
from PIL import Image

from app.pipeline.png import read_png_metadata
from tests.ws_client import WsClient, for_session, is_terminal

GUIDE_BODY = {
    "prompt": "A serene mountain landscape at sunset",
    "negative_prompt": "blurry, low quality",
    "num_inference_steps": 30,
    "guidance_scale": 7.5,
    "num_images": 1,
}


async def test_guide_flow_progress_then_complete(server):
    async with WsClient(server.ws_url) as ws:
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            response = await http.post("/api/generate", json=GUIDE_BODY)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["status"] == "queued" and body["position"] >= 1
            session_id = body["session_id"]
            subscribed = await ws.subscribe(session_id)
            assert subscribed["type"] == "subscribed" and subscribed["session_id"] == session_id
            messages = await ws.recv_until(for_session(session_id, is_terminal))

            complete = messages[-1]
            assert complete["type"] == "generation_complete", complete
            progress = [m for m in messages if m["type"] == "generation_progress"]
            steps = [m["step"] for m in progress]
            assert steps == sorted(steps) and steps[-1] == 30 and len(steps) >= 2
            assert all(m["total_steps"] == 30 and m["message"].startswith("Generating...") for m in progress)
            assert progress[-1]["message"] == "Generating... 100%"
            seqs = [m["seq"] for m in messages if "seq" in m]
            assert seqs == sorted(set(seqs)), "seq grows by message within a session"

            metadata = complete["metadata"]
            assert metadata["prompt"] == GUIDE_BODY["prompt"]
            assert metadata["negative_prompt"] == GUIDE_BODY["negative_prompt"]
            assert metadata["num_inference_steps"] == 30 and metadata["guidance_scale"] == 7.5
            assert metadata["created_at"] and metadata["duration_seconds"] > 0
            (path,) = complete["image_paths"]
            (url,) = complete["image_urls"]
            with Image.open(path) as image:
                assert image.size == (metadata["width"], metadata["height"])
            parameters, stored = read_png_metadata(path)
            assert parameters.startswith(GUIDE_BODY["prompt"] + "\nNegative prompt: blurry, low quality\n")
            assert f"Seed: {metadata['seed']}" in parameters and "Steps: 30" in parameters
            assert stored is not None and stored.seed == metadata["seed"]
            served = await http.get(url)
            assert served.status_code == 200 and served.headers["content-type"] == "image/png"
            assert served.content == open(path, "rb").read()

            job = (await http.get(f"/api/jobs/{session_id}")).json()
            assert job["status"] == "completed" and job["step"] == 30 and job["image_urls"] == [url]
            gallery = (await http.get("/api/gallery")).json()
            assert url in [item["url"] for item in gallery["items"]]


async def test_two_sessions_are_kept_apart(server):
    async with WsClient(server.ws_url) as first, WsClient(server.ws_url) as second, httpx.AsyncClient(
        base_url=server.base_url
    ) as http:
        ids = []
        for prompt in ("a red circle", "a blue square"):
            response = await http.post("/api/generate", json={"prompt": prompt, "num_inference_steps": 4, "seed": 7})
            ids.append(response.json()["session_id"])
        await first.subscribe(ids[0])
        await second.subscribe(ids[1])
        first_messages = await first.recv_until(for_session(ids[0], is_terminal))
        second_messages = await second.recv_until(for_session(ids[1], is_terminal))
        assert {m["session_id"] for m in first_messages if "session_id" in m} == {ids[0]}
        assert {m["session_id"] for m in second_messages if "session_id" in m} == {ids[1]}
        assert first_messages[-1]["metadata"]["prompt"] == "a red circle"
        assert second_messages[-1]["metadata"]["prompt"] == "a blue square"


async def test_many_images_in_one_job_have_consecutive_seeds(server):
    async with WsClient(server.ws_url) as ws, httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post(
            "/api/generate", json={"prompt": "a green triangle", "num_inference_steps": 2, "num_images": 3, "seed": 41}
        )
        session_id = response.json()["session_id"]
        await ws.subscribe(session_id)
        complete = (await ws.recv_until(for_session(session_id, is_terminal)))[-1]
        assert complete["type"] == "generation_complete"
        assert len(complete["image_paths"]) == 3 and complete["metadata"]["seed"] == 41
        gallery = (await http.get("/api/gallery", params={"limit": 200})).json()["items"]
        mine = [item for item in gallery if item["session_id"] == session_id]
        assert sorted(item["index"] for item in mine) == [0, 1, 2]


async def test_rest_reports_the_eta_that_ws_sent_for_the_same_step(server):
    """One ETA for every face: computed once per step, stored, and reported as it was sent."""
    async with WsClient(server.ws_url) as ws, httpx.AsyncClient(base_url=server.base_url) as http:
        session_id = (await http.post("/api/generate", json={"prompt": "a slow one", "num_inference_steps": 60})).json()[
            "session_id"
        ]
        await ws.subscribe(session_id)
        sent: dict[int, float | None] = {}
        reported: dict[int, float | None] = {}
        while True:
            message = await ws.recv()
            if message.get("session_id") != session_id:
                continue
            if message["type"] == "generation_progress":
                sent[message["step"]] = message["eta_seconds"]
                job = (await http.get(f"/api/jobs/{session_id}")).json()
                if job["status"] == "running" and job["step"] > 0:
                    reported[job["step"]] = job["eta_seconds"]
            if is_terminal(message):
                break
        assert message["type"] == "generation_complete"
        compared = {step: eta for step, eta in reported.items() if step in sent}
        assert len(compared) >= 5, f"too few steps seen on both faces: {sorted(compared)}"
        assert compared == {step: sent[step] for step in compared}
        assert all(eta is not None and eta >= 0 for eta in compared.values())
        assert (await http.get(f"/api/jobs/{session_id}")).json()["eta_seconds"] is None  # finished: no ETA
