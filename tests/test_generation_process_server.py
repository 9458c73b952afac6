"""The model runs in its own process: the server survives that process dying mid-job, tells the
job's subscribers why, loads the model again and runs the waiting jobs; stopping the server stops it."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.server_jobs import submit
from tests.ws_client import WsClient, for_session, is_terminal


def process_exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_killed_generation_process_fails_its_job_with_the_reason_and_the_next_job_runs(start_server):
    server = start_server()
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        first_pid = (await http.get("/api/health")).json()["model"]["process_id"]
        assert first_pid not in (None, server.process.pid)
        assert process_exists(first_pid)

        doomed = await submit(http, num_inference_steps=100)
        waiting = await submit(http, num_inference_steps=3, seed=5)
        for session_id in (doomed, waiting):
            assert (await ws.subscribe(session_id))["type"] == "subscribed"
        await ws.recv_until(for_session(doomed, lambda m: m["type"] == "generation_progress"))
        os.kill(first_pid, signal.SIGKILL)

        failed = (await ws.recv_until(for_session(doomed, is_terminal)))[-1]
        assert failed["type"] == "generation_error", failed
        assert "the generation process was killed by SIGKILL" in failed["error"]
        assert "loaded again" in failed["error"]
        done = (await ws.recv_until(for_session(waiting, is_terminal)))[-1]
        assert done["type"] == "generation_complete", done  # the waiting job was not lost

        health = (await http.get("/api/health")).json()
        assert health["model"]["state"] == "ready"
        assert health["model"]["process_id"] not in (None, first_pid)
        job = (await http.get(f"/api/jobs/{doomed}")).json()
        assert job["status"] == "failed" and job["error"] == failed["error"]


async def test_stopping_the_server_stops_its_generation_process(start_server):
    server = start_server()
    pid = httpx.get(f"{server.base_url}/api/health").json()["model"]["process_id"]
    assert process_exists(pid)
    server.stop()
    assert server.process.returncode is not None
    assert not process_exists(pid)


async def test_stopping_the_server_while_its_model_loads_shuts_down_cleanly(start_server):
    server = start_server(wait_for_model=False)
    server.wait_until(lambda health: health["model"]["state"] == "loading")
    server.stop()
    assert server.process.returncode in (0, -15), server.output()  # uvicorn re-raises SIGTERM after shut-down
    for trouble in ("Application shutdown failed", "Traceback"):
        assert trouble not in server.output(), server.output()
