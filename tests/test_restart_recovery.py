"""A crash (kill -9) loses nothing: queued jobs run, the interrupted job runs again once, the gallery stays."""
from __future__ import annotations

import httpx

from tests.ws_client import WsClient, for_session, is_terminal


async def run_to_completion(server, http: httpx.AsyncClient, **body) -> dict:
    response = await http.post("/api/generate", json={"prompt": "a red circle", **body})
    session_id = response.json()["session_id"]
    async with WsClient(server.ws_url) as ws:
        await ws.subscribe(session_id)
        return (await ws.recv_until(for_session(session_id, is_terminal)))[-1]


async def start_and_crash_mid_job(server, session_id: str) -> int:
    """Follow a job until it is a few steps in, then kill the server; returns the last seq seen."""
    async with WsClient(server.ws_url) as ws:
        await ws.subscribe(session_id)
        seen = await ws.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2))
    server.kill()
    return max(m["seq"] for m in seen if "seq" in m)


async def test_kill_mid_job_then_restart_completes_it_and_keeps_the_gallery(start_server, tmp_path):
    data_dir = tmp_path / "data"
    first = start_server(data_dir=data_dir)
    async with httpx.AsyncClient(base_url=first.base_url) as http:
        earlier = await run_to_completion(first, http, num_inference_steps=2)
        running = (await http.post("/api/generate", json={"prompt": "a sun", "num_inference_steps": 150})).json()
        queued = (await http.post("/api/generate", json={"prompt": "a moon", "num_inference_steps": 3})).json()
    last_seq = await start_and_crash_mid_job(first, running["session_id"])

    second = start_server(data_dir=data_dir)
    async with httpx.AsyncClient(base_url=second.base_url) as http, WsClient(second.ws_url) as ws:
        await ws.subscribe(running["session_id"], after_seq=last_seq)
        await ws.subscribe(queued["session_id"])
        await ws.recv_until(for_session(running["session_id"], is_terminal), timeout=180)
        mine = [m for m in ws.received if m.get("session_id") == running["session_id"] and "seq" in m]
        assert all(m["seq"] > last_seq for m in mine), "seq keeps growing across the restart"
        assert mine[-1]["type"] == "generation_complete"
        assert any(m["type"] == "generation_started" for m in mine), [(m["type"], m["seq"]) for m in mine]
        await ws.recv_until(for_session(queued["session_id"], is_terminal), timeout=180)

        job = (await http.get(f"/api/jobs/{running['session_id']}")).json()
        assert job["status"] == "completed" and job["attempts"] == 2
        assert (await http.get(f"/api/jobs/{queued['session_id']}")).json()["status"] == "completed"
        urls = [item["url"] for item in (await http.get("/api/gallery", params={"limit": 200})).json()["items"]]
        assert earlier["image_urls"][0] in urls
        assert (await http.get(earlier["image_urls"][0])).status_code == 200


async def test_a_job_interrupted_twice_fails_with_a_reason(start_server, tmp_path):
    data_dir = tmp_path / "data"
    first = start_server(data_dir=data_dir)
    async with httpx.AsyncClient(base_url=first.base_url) as http:
        job = (await http.post("/api/generate", json={"prompt": "a star", "num_inference_steps": 150})).json()
    await start_and_crash_mid_job(first, job["session_id"])
    second = start_server(data_dir=data_dir)
    await start_and_crash_mid_job(second, job["session_id"])

    third = start_server(data_dir=data_dir)
    async with WsClient(third.ws_url) as ws:
        subscribed = await ws.subscribe(job["session_id"])
        assert subscribed["status"] == "failed"
        error = await ws.recv()
        assert error["type"] == "generation_error" and "interrupted" in error["error"]
    view = httpx.get(f"{third.base_url}/api/jobs/{job['session_id']}").json()
    assert view["status"] == "failed" and view["attempts"] == 2 and "restart" in view["error"]


async def test_an_orderly_stop_requeues_the_running_job_without_using_an_attempt(start_server, tmp_path):
    data_dir = tmp_path / "data"
    first = start_server(data_dir=data_dir)
    async with httpx.AsyncClient(base_url=first.base_url) as http:
        job = (await http.post("/api/generate", json={"prompt": "a tree", "num_inference_steps": 150})).json()
    async with WsClient(first.ws_url) as ws:
        await ws.subscribe(job["session_id"])
        await ws.recv_until(for_session(job["session_id"], lambda m: m.get("step", 0) >= 2))
    first.stop()  # SIGTERM: shut-down handlers run
    assert first.process.returncode is not None

    second = start_server(data_dir=data_dir)
    async with WsClient(second.ws_url) as ws:
        await ws.subscribe(job["session_id"])
        final = (await ws.recv_until(for_session(job["session_id"], is_terminal), timeout=180))[-1]
    assert final["type"] == "generation_complete"
    view = httpx.get(f"{second.base_url}/api/jobs/{job['session_id']}").json()
    assert view["status"] == "completed" and view["attempts"] == 1
