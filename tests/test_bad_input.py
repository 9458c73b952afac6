"""Bad input gets a clear error naming the problem, over REST and /ws; the connection stays open."""
from __future__ import annotations

import httpx
import pytest

from tests.ws_client import WsClient

BAD_BODIES = [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"prompt": "ok", "num_inference_steps": 0}, "num_inference_steps"),
    ({"prompt": "ok", "num_inference_steps": 151}, "num_inference_steps"),
    ({"prompt": "ok", "guidance_scale": -1}, "guidance_scale"),
    ({"prompt": "ok", "guidance_scale": 30.5}, "guidance_scale"),
    ({"prompt": "ok", "num_images": 9}, "num_images"),
    ({"prompt": "ok", "num_images": 0}, "num_images"),
    ({"prompt": "ok", "width": 100}, "width"),
    ({"prompt": "ok", "height": 4096}, "height"),
    ({"prompt": "ok", "seed": -5}, "seed"),
    ({"prompt": "ok", "steps": 20}, "steps"),
    ({}, "prompt"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_generate_bodies_get_422_naming_the_field(server, body, field):
    response = httpx.post(f"{server.base_url}/api/generate", json=body)
    assert response.status_code == 422, response.text
    fields = [error["loc"][-1] for error in response.json()["detail"]]
    assert field in fields


def test_several_bad_fields_are_all_named(server):
    response = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "", "num_inference_steps": 999})
    assert response.status_code == 422
    assert {"prompt", "num_inference_steps"} <= {e["loc"][-1] for e in response.json()["detail"]}


def test_unknown_ids_are_404(server):
    assert httpx.get(f"{server.base_url}/api/jobs/nope").status_code == 404
    response = httpx.post(f"{server.base_url}/api/jobs/nope/cancel")
    assert response.status_code == 404 and "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    ["/images/../ai-artist.sqlite3", "/images/..%2Fai-artist.sqlite3", "/images/%2e%2e/%2e%2e/etc/passwd",
     "/images/logs/ai-artist.log", "/images/missing.png", "/images/..%2F..%2Fconfig.yaml"],
)
def test_images_route_serves_only_output_files(server, path):
    response = httpx.get(f"{server.base_url}{path}")
    assert response.status_code == 404
    assert b"SQLite" not in response.content and b"root:" not in response.content


def test_job_list_filters_and_pages(start_server):
    server = start_server(env={"AI_ARTIST_QUEUE__MAX_BATCH": "1"})  # the newest job must still be waiting
    jobs = f"{server.base_url}/api/jobs"
    response = httpx.get(jobs, params={"status": "bogus"})
    assert response.status_code == 422 and "status" in response.text
    submitted = [
        httpx.post(f"{server.base_url}/api/generate", json={"prompt": prompt, "num_inference_steps": 2}).json()
        for prompt in ("a red circle", "a blue square", "a green triangle")
    ]
    newest = submitted[-1]["session_id"]
    assert httpx.post(f"{jobs}/{newest}/cancel").json()["status"] == "cancelled"  # still queued: at once
    server.wait_until(lambda health: health["queue"]["pending"] == 0 and health["queue"]["running"] == 0)

    completed = httpx.get(jobs, params={"status": "completed"}).json()
    assert completed["total"] == 2 and {job["status"] for job in completed["items"]} == {"completed"}
    assert [job["session_id"] for job in completed["items"]] == [submitted[1]["session_id"], submitted[0]["session_id"]]
    cancelled = httpx.get(jobs, params={"status": "cancelled"}).json()
    assert [job["session_id"] for job in cancelled["items"]] == [newest] and cancelled["total"] == 1
    assert httpx.get(jobs, params={"status": "failed"}).json() == {"items": [], "total": 0, "offset": 0, "limit": 50}

    first = httpx.get(jobs, params={"limit": 1}).json()
    assert first["limit"] == 1 and first["total"] == 3 and [job["session_id"] for job in first["items"]] == [newest]
    second = httpx.get(jobs, params={"limit": 1, "offset": 1}).json()
    assert [job["session_id"] for job in second["items"]] == [submitted[1]["session_id"]]


async def test_ws_errors_keep_the_connection_open(server):
    async with WsClient(server.ws_url) as ws:
        await ws.send("{not json")
        error = await ws.recv()
        assert error["type"] == "error" and "malformed JSON" in error["error"]

        await ws.send({"type": "dance"})
        error = await ws.recv()
        assert error["type"] == "error" and "'dance'" in error["error"] and "subscribe" in error["error"]

        await ws.send({"type": "subscribe"})
        error = await ws.recv()
        assert error["type"] == "error" and "session_id" in error["error"]

        await ws.send({"type": "subscribe", "session_id": "no-such-session"})
        error = await ws.recv()
        assert error["type"] == "error" and "no-such-session" in error["error"]

        await ws.send({"type": "cancel", "session_id": "no-such-session"})
        assert (await ws.recv())["type"] == "error"

        await ws.send([1, 2])
        assert (await ws.recv())["type"] == "error"

        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"


async def test_full_queue_answers_429(start_server):
    server = start_server(env={"AI_ARTIST_QUEUE__MAX_PENDING": "2"})
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        statuses = []
        ids = []
        for _ in range(6):
            response = await http.post("/api/generate", json={"prompt": "a red circle", "num_inference_steps": 150})
            statuses.append(response.status_code)
            if response.status_code == 200:
                ids.append(response.json()["session_id"])
            else:
                assert "queue is full" in response.json()["detail"] and response.headers["retry-after"]
        assert 429 in statuses and statuses.count(200) <= 3  # 2 waiting + at most 1 already running
        for session_id in ids:
            await http.post(f"/api/jobs/{session_id}/cancel")
