"""Late subscribers get a snapshot, reconnecting ones resume with after_seq, and cancel works queued or running."""
from __future__ import annotations

import httpx

from tests.ws_client import WsClient, for_session, is_terminal


async def submit(http: httpx.AsyncClient, **body) -> str:
    response = await http.post("/api/generate", json={"prompt": "a red circle", **body})
    assert response.status_code == 200, response.text
    return response.json()["session_id"]


async def test_late_subscriber_gets_the_terminal_message(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as watcher:
        session_id = await submit(http, num_inference_steps=3)
        await watcher.subscribe(session_id)
        finished = (await watcher.recv_until(for_session(session_id, is_terminal)))[-1]
        async with WsClient(server.ws_url) as late:
            subscribed = await late.subscribe(session_id)
            assert subscribed["status"] == "completed" and subscribed["last_seq"] == finished["seq"]
            snapshot = await late.recv()
            assert snapshot == finished


async def test_subscriber_joining_mid_run_gets_latest_progress(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as watcher:
        session_id = await submit(http, num_inference_steps=60)
        await watcher.subscribe(session_id)
        seen = await watcher.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 3))
        async with WsClient(server.ws_url) as late:
            await late.subscribe(session_id)
            snapshot = await late.recv()
            assert snapshot["type"] == "generation_progress" and snapshot["step"] >= seen[-1]["step"]
        await http.post(f"/api/jobs/{session_id}/cancel")
        await watcher.recv_until(for_session(session_id, is_terminal))


async def test_resume_after_disconnect_with_after_seq(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        session_id = await submit(http, num_inference_steps=25)
        async with WsClient(server.ws_url) as first:
            await first.subscribe(session_id)
            before = await first.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2))
        last_seen = max(m["seq"] for m in before if "seq" in m)
        async with WsClient(server.ws_url) as watcher:  # wait for the end without the resuming client
            await watcher.subscribe(session_id)
            final = (await watcher.recv_until(for_session(session_id, is_terminal)))[-1]
        async with WsClient(server.ws_url) as resumed:
            await resumed.subscribe(session_id, after_seq=last_seen)
            replay = await resumed.recv_until(for_session(session_id, is_terminal))
        seqs = [m["seq"] for m in replay]
        assert all(seq > last_seen for seq in seqs) and seqs == sorted(set(seqs))
        assert replay[-1] == final
        assert any(m["type"] == "generation_progress" and m["step"] == 25 for m in replay)


async def test_cancel_queued_and_running_jobs(server):
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        running_id = await submit(http, num_inference_steps=150)
        queued_id = await submit(http, num_inference_steps=150)
        await ws.subscribe(running_id)
        await ws.subscribe(queued_id)
        # Every message is kept: the running job's progress may all arrive while we wait on the other job.
        messages = await ws.recv_until(for_session(running_id, lambda m: m["type"] == "generation_progress"))

        response = await http.post(f"/api/jobs/{queued_id}/cancel")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        messages += await ws.recv_until(for_session(queued_id, lambda m: m["type"] == "generation_cancelled"))

        await ws.send({"type": "cancel", "session_id": running_id})
        messages += await ws.recv_until(for_session(running_id, is_terminal))
        assert messages[-1]["type"] == "generation_cancelled"
        running_steps = [m["step"] for m in messages if m.get("type") == "generation_progress" and m["session_id"] == running_id]
        last_step = max(running_steps)
        assert last_step < 150
        job = (await http.get(f"/api/jobs/{running_id}")).json()
        assert job["status"] == "cancelled" and job["image_urls"] == []

        again = await http.post(f"/api/jobs/{running_id}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
        # The worker goes on with the next job.
        next_id = await submit(http, num_inference_steps=2)
        await ws.subscribe(next_id)
        assert (await ws.recv_until(for_session(next_id, is_terminal)))[-1]["type"] == "generation_complete"
