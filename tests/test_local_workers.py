"""Several local workers (`workers.local: 2`): two jobs run at the same time, each on its own generation
process, and `GET /api/workers`, `/api/health`, job views and `generation_started` name the workers."""
from __future__ import annotations

import shutil
from datetime import datetime

import httpx

from tests.server_jobs import submit
from tests.ws_client import WsClient, for_session, is_terminal

TWO_WORKERS = {"AI_ARTIST_WORKERS__LOCAL": "2"}


async def test_two_local_workers_run_two_jobs_at_the_same_time(start_server):
    server = start_server(env=TWO_WORKERS)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        health = (await http.get("/api/health")).json()
        assert health["workers"] == {"total": 2, "idle": 2, "busy": 0, "loading": 0, "gone": 0}, health
        workers = (await http.get("/api/workers")).json()
        assert sorted(worker["name"] for worker in workers) == ["local-1", "local-2"]
        assert {worker["state"] for worker in workers} == {"idle"}

        first = await submit(http, num_inference_steps=40, seed=1)
        second = await submit(http, num_inference_steps=40, seed=2)
        third = await submit(http, num_inference_steps=2, seed=3)
        for session_id in (first, second, third):
            await ws.subscribe(session_id)
        await ws.recv_until(for_session(first, lambda m: m.get("step", 0) >= 1))
        await ws.recv_until(for_session(second, lambda m: m.get("step", 0) >= 1))
        busy = (await http.get("/api/workers")).json()
        assert {worker["session_id"] for worker in busy} == {first, second}
        assert {worker["state"] for worker in busy} == {"busy"}
        health = (await http.get("/api/health")).json()
        assert health["queue"] == {"pending": 1, "running": 2} and health["workers"]["busy"] == 2
        third_view = (await http.get(f"/api/jobs/{third}")).json()
        assert third_view["status"] == "queued" and third_view["position"] == 1

        for session_id in (first, second, third):
            if not any(is_terminal(m) and m["session_id"] == session_id for m in ws.received):
                await ws.recv_until(for_session(session_id, is_terminal), timeout=180)

        views = [(await http.get(f"/api/jobs/{session_id}")).json() for session_id in (first, second, third)]
        assert [view["status"] for view in views] == ["completed"] * 3
        one, two = views[0], views[1]
        assert {one["worker"], two["worker"]} == {"local-1", "local-2"}
        start = {view["session_id"]: datetime.fromisoformat(view["started_at"]) for view in views}
        finish = {view["session_id"]: datetime.fromisoformat(view["finished_at"]) for view in views}
        assert start[second] < finish[first] and start[first] < finish[second], "the two jobs did not overlap"
        started = {m["session_id"]: m["worker"] for m in ws.received if m["type"] == "generation_started"}
        assert started[first] == one["worker"] and started[second] == two["worker"]
        assert started[third] in ("local-1", "local-2")
        done = (await http.get("/api/workers")).json()
        assert sum(worker["jobs_done"] for worker in done) == 3
        gallery = (await http.get("/api/gallery")).json()
        assert gallery["total"] == 3


async def test_a_switch_moves_idle_workers_at_once_and_busy_ones_after_their_job(start_server, model_dir, tmp_path):
    data_dir = tmp_path / "data"
    other = data_dir / "models" / "tiny-copy"
    shutil.copytree(model_dir, other)
    server = start_server(data_dir=data_dir, env=TWO_WORKERS)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        long_job = await submit(http, num_inference_steps=150, num_images=4, seed=1)
        await ws.subscribe(long_job)
        await ws.recv_until(for_session(long_job, lambda m: m.get("step", 0) >= 1))
        busy_worker = (await http.get(f"/api/jobs/{long_job}")).json()["worker"]

        switched = await http.post("/api/model", json={"model": str(other)})
        assert switched.status_code == 202, switched.text
        new_model = switched.json()["model"]
        health = server.wait_until(lambda h: h["workers"]["idle"] == 1 and h["workers"]["busy"] == 1, 120)
        workers = {worker["name"]: worker for worker in (await http.get("/api/workers")).json()}
        idle_worker = next(name for name in workers if name != busy_worker)
        assert workers[idle_worker]["model"] == new_model and workers[idle_worker]["state"] == "idle"
        assert workers[busy_worker]["model"] == str(model_dir.resolve()), health  # finishes on the old model
        assert workers[busy_worker]["state"] == "busy" and workers[busy_worker]["session_id"] == long_job

        quick = await submit(http, num_inference_steps=2, seed=2)  # for the new model: the idle worker has it
        await ws.subscribe(quick)
        done = (await ws.recv_until(for_session(quick, is_terminal), timeout=120))[-1]
        assert done["type"] == "generation_complete" and done["metadata"]["model"] == "tiny-copy"
        assert (await http.get(f"/api/jobs/{quick}")).json()["worker"] == idle_worker
        assert (await http.get(f"/api/jobs/{long_job}")).json()["status"] == "running"  # still on the old model

        await http.post(f"/api/jobs/{long_job}/cancel")
        await ws.recv_until(for_session(long_job, is_terminal), timeout=120)
        server.wait_until(lambda h: h["workers"]["idle"] == 2 and h["model"]["state"] == "ready", 120)
        assert {worker["model"] for worker in (await http.get("/api/workers")).json()} == {new_model}
