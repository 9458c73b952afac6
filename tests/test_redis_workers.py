"""Remote workers over a real Redis: `python -m app worker` processes take jobs from a server started with
`queue.backend: redis` and no local worker; a killed worker's job is taken over, cancel reaches a remote
worker, and Redis going away makes submissions 503 until it is back."""
from __future__ import annotations

import asyncio

import httpx

from tests.server_jobs import submit
from tests.ws_client import WsClient, for_session, is_terminal

HEARTBEAT = "3"


def redis_env(redis_url: str) -> dict[str, str]:
    return {
        "AI_ARTIST_WORKERS__LOCAL": "0",
        "AI_ARTIST_QUEUE__BACKEND": "redis",
        "AI_ARTIST_QUEUE__REDIS_URL": redis_url,
        "AI_ARTIST_QUEUE__HEARTBEAT_TIMEOUT": HEARTBEAT,
    }


def idle_workers(count: int):
    return lambda health: health["workers"]["idle"] == count


async def wait_for_workers(http: httpx.AsyncClient, condition, timeout: float = 30) -> dict[str, dict]:
    """Poll GET /api/workers until `condition(workers by name)` holds (the registry follows heartbeats)."""
    async with asyncio.timeout(timeout):
        while True:
            workers = {worker["name"]: worker for worker in (await http.get("/api/workers")).json()}
            if condition(workers):
                return workers
            await asyncio.sleep(0.1)


def start_cluster(start_server, start_worker, redis_server, names=("w1",), **server_options):
    server = start_server(env=redis_env(redis_server.url), wait_for_model=False, **server_options)
    workers = {name: start_worker(redis_server.url, name, {"AI_ARTIST_QUEUE__HEARTBEAT_TIMEOUT": HEARTBEAT})
               for name in names}
    try:
        server.wait_until(idle_workers(len(names)), 120)
    except TimeoutError:
        raise TimeoutError("\n".join(worker.output() for worker in workers.values())) from None
    return server, workers


async def test_a_remote_worker_runs_a_job_and_the_server_stores_its_images(start_server, start_worker, redis_server):
    server, workers = start_cluster(start_server, start_worker, redis_server)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        health = (await http.get("/api/health")).json()
        assert health["model"]["state"] == "ready" and health["workers"]["total"] == 1
        session_id = await submit(http, num_inference_steps=4, num_images=2)
        await ws.subscribe(session_id, previews=True)
        messages = await ws.recv_until(for_session(session_id, is_terminal), timeout=120)
        types = [message["type"] for message in messages]
        assert types[-1] == "generation_complete", messages[-1]
        started = next(message for message in messages if message["type"] == "generation_started")
        assert started["worker"] == "w1"
        steps = [message["step"] for message in messages if message["type"] == "generation_progress"]
        assert steps and steps[-1] == 4
        seqs = [message["seq"] for message in messages if "seq" in message]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        view = (await http.get(f"/api/jobs/{session_id}")).json()
        assert view["status"] == "completed" and view["worker"] == "w1" and len(view["image_urls"]) == 2
        for url in view["image_urls"]:
            image = await http.get(url)
            assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        listed = await wait_for_workers(http, lambda workers: workers["w1"]["jobs_done"] == 1)
        assert listed["w1"]["host"] and listed["w1"]["state"] == "idle"
    assert workers["w1"].stop() == 0  # SIGTERM: a clean exit
    server.wait_until(lambda health: health["workers"]["total"] == 0, 30)


async def test_a_killed_worker_s_job_is_taken_over_by_another(start_server, start_worker, redis_server):
    server, workers = start_cluster(start_server, start_worker, redis_server, names=("w1", "w2"))
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        session_id = await submit(http, num_inference_steps=40, seed=7)
        await ws.subscribe(session_id)
        seen = await ws.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2), timeout=120)
        first = next(m["worker"] for m in seen if m["type"] == "generation_started")
        workers[first].kill()
        done = await ws.recv_until(for_session(session_id, is_terminal), timeout=120)
        assert done[-1]["type"] == "generation_complete", done[-1]
        again = [m["worker"] for m in done if m["type"] == "generation_started"]
        assert again and again[-1] != first
        view = (await http.get(f"/api/jobs/{session_id}")).json()
        assert view["attempts"] == 2 and view["worker"] == again[-1]
        gallery = (await http.get("/api/gallery")).json()
        assert [item["session_id"] for item in gallery["items"]] == [session_id]
        assert (await http.get(gallery["items"][0]["url"])).status_code == 200
        await wait_for_workers(http, lambda workers: workers[first]["state"] == "gone")


async def test_cancel_reaches_a_remote_worker(start_server, start_worker, redis_server):
    server, _ = start_cluster(start_server, start_worker, redis_server)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        session_id = await submit(http, num_inference_steps=150)
        await ws.subscribe(session_id)
        await ws.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2), timeout=120)
        answer = await http.post(f"/api/jobs/{session_id}/cancel")
        assert answer.status_code == 200
        done = await ws.recv_until(for_session(session_id, is_terminal), timeout=60)
        assert done[-1]["type"] == "generation_cancelled"
        at_cancel = answer.json()["step"]  # the step the server had stored when it sent the cancel
        view = (await http.get(f"/api/jobs/{session_id}")).json()
        assert view["step"] <= at_cancel + 3, (at_cancel, view["step"])  # the step running, and those on their way
        assert view["status"] == "cancelled" and view["step"] < 150
        server.wait_until(idle_workers(1), 30)
        quick = await submit(http, num_inference_steps=2)  # the worker goes on with the next job
        await ws.subscribe(quick)
        assert (await ws.recv_until(for_session(quick, is_terminal)))[-1]["type"] == "generation_complete"


async def test_redis_down_answers_503_then_everything_resumes(start_server, start_worker, redis_server):
    server, _ = start_cluster(start_server, start_worker, redis_server)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        redis_server.stop()
        refused = await http.post("/api/generate", json={"prompt": "a cat"})
        while refused.status_code == 200:  # the server notices within its next look at Redis
            await ws.recv_until(for_session(refused.json()["session_id"], lambda m: True), timeout=10)
            refused = await http.post("/api/generate", json={"prompt": "a cat"})
        assert refused.status_code == 503 and "Redis" in refused.json()["detail"]
        assert "unreachable" in refused.json()["detail"]

        redis_server.start()
        server.wait_until(idle_workers(1), 60)
        session_id = await submit(http, num_inference_steps=2)
        await ws.subscribe(session_id)
        done = await ws.recv_until(for_session(session_id, is_terminal), timeout=120)
        assert done[-1]["type"] == "generation_complete"


async def test_sigterm_hands_the_running_job_back_to_another_worker(start_server, start_worker, redis_server):
    server, workers = start_cluster(start_server, start_worker, redis_server, names=("w1", "w2"))
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        session_id = await submit(http, num_inference_steps=40)
        await ws.subscribe(session_id)
        seen = await ws.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2), timeout=120)
        first = next(m["worker"] for m in seen if m["type"] == "generation_started")
        assert workers[first].stop() == 0
        done = await ws.recv_until(for_session(session_id, is_terminal), timeout=120)
        assert done[-1]["type"] == "generation_complete", done[-1]
        assert [m["worker"] for m in done if m["type"] == "generation_started"][-1] != first
        assert (await http.get(f"/api/jobs/{session_id}")).json()["attempts"] == 1  # handed back: not counted


async def test_a_job_on_a_remote_worker_lands_after_a_server_kill_and_restart(
    start_server, start_worker, redis_server, tmp_path
):
    data_dir = tmp_path / "server-data"
    server, _ = start_cluster(start_server, start_worker, redis_server, data_dir=data_dir)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        session_id = await submit(http, num_inference_steps=60)
        await ws.subscribe(session_id)
        await ws.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2), timeout=120)
    server.kill()

    again = start_server(data_dir=data_dir, env=redis_env(redis_server.url), wait_for_model=False)
    async with httpx.AsyncClient(base_url=again.base_url) as http, WsClient(again.ws_url) as ws:
        await ws.subscribe(session_id)
        done = await ws.recv_until(for_session(session_id, is_terminal), timeout=120)
        assert done[-1]["type"] == "generation_complete", done[-1]
        view = (await http.get(f"/api/jobs/{session_id}")).json()
        assert view["status"] == "completed" and view["attempts"] == 1 and view["worker"] == "w1"
        gallery = (await http.get("/api/gallery")).json()
        assert [item["session_id"] for item in gallery["items"]] == [session_id]
        assert (await http.get(gallery["items"][0]["url"])).status_code == 200


async def test_a_job_whose_workers_keep_dying_fails_after_max_attempts(start_server, start_worker, redis_server):
    server = start_server(env={**redis_env(redis_server.url), "AI_ARTIST_QUEUE__MAX_ATTEMPTS": "1"},
                          wait_for_model=False)
    workers = {name: start_worker(redis_server.url, name, {"AI_ARTIST_QUEUE__HEARTBEAT_TIMEOUT": HEARTBEAT})
               for name in ("w1", "w2")}
    server.wait_until(idle_workers(2), 120)
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        session_id = await submit(http, num_inference_steps=40)
        await ws.subscribe(session_id)
        seen = await ws.recv_until(for_session(session_id, lambda m: m.get("step", 0) >= 2), timeout=120)
        workers[next(m["worker"] for m in seen if m["type"] == "generation_started")].kill()
        done = (await ws.recv_until(for_session(session_id, is_terminal), timeout=120))[-1]
        assert done["type"] == "generation_error" and "max_attempts" in done["error"], done
        view = (await http.get(f"/api/jobs/{session_id}")).json()
        assert view["status"] == "failed" and view["attempts"] == 1
        server.wait_until(idle_workers(1), 30)  # the other worker goes on taking jobs
        quick = await submit(http, num_inference_steps=2)
        await ws.subscribe(quick)
        assert (await ws.recv_until(for_session(quick, is_terminal)))[-1]["type"] == "generation_complete"


async def test_a_worker_started_while_redis_is_down_joins_when_it_is_back(start_server, start_worker, redis_server):
    redis_server.stop()
    worker = start_worker(redis_server.url, "early", {"AI_ARTIST_QUEUE__HEARTBEAT_TIMEOUT": HEARTBEAT})
    async with asyncio.timeout(120):  # its model is loaded and it waits for Redis
        while "); retrying" not in worker.output():
            assert worker.process.poll() is None, worker.output()
            await asyncio.sleep(0.1)
    redis_server.start()
    server = start_server(env=redis_env(redis_server.url), wait_for_model=False)
    try:
        server.wait_until(idle_workers(1), 120)
    except TimeoutError:
        raise TimeoutError(worker.output()) from None
    assert worker.process.poll() is None
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        session_id = await submit(http, num_inference_steps=2)
        await ws.subscribe(session_id)
        assert (await ws.recv_until(for_session(session_id, is_terminal)))[-1]["type"] == "generation_complete"
