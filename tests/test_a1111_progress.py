"""A1111's progress, interrupt and skip through the real `webuiapi` package while a job runs: they refer to
the asking client's own run (same address), else to the oldest running job."""
from __future__ import annotations

import base64
import io
import time

import httpx
from PIL import Image

from tests.compat_clients import SMALL, InThread, a1111_client, job_with_prompt, running_step, wait_for


def client_at(address: str, server) -> httpx.Client:
    """An HTTP client whose requests come from another loopback address: another A1111 client to the server."""
    return httpx.Client(base_url=server.base_url, transport=httpx.HTTPTransport(local_address=address), timeout=300)


def test_progress_polled_from_a_thread_during_a_job_shows_steps_eta_and_preview(server):
    api = a1111_client(server)
    call = InThread(lambda: api.txt2img(prompt="progress seen from outside", steps=40, n_iter=2, seed=9, **SMALL))
    seen = []
    while not call.done:
        seen.append(api.get_progress())
        time.sleep(0.05)  # a client's polling rate, not a synchronisation: the loop ends when the call returns
    result = call.result()
    assert len(result.images) == 2
    busy = [progress for progress in seen if progress["state"]["job_count"]]
    assert busy, "no progress was seen while the job ran"
    assert all(progress["state"]["job_count"] == 2 and progress["state"]["sampling_steps"] == 40 for progress in busy)
    assert any(0 < progress["progress"] < 1 and progress["state"]["sampling_step"] > 0 for progress in busy)
    assert any(progress["state"]["job_no"] == 1 for progress in busy), "the second iteration was never reported"
    assert any(progress["eta_relative"] > 0 for progress in busy)
    values = [progress["progress"] for progress in busy]
    assert values == sorted(values), f"progress went backwards: {values}"
    previews = [progress["current_image"] for progress in busy if progress["current_image"]]
    assert previews, "no live preview was reported"
    with Image.open(io.BytesIO(base64.b64decode(previews[-1]))) as preview:
        assert preview.width > 0
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0


def test_interrupt_stops_the_clients_run_and_answers_with_what_was_done(server):
    api = a1111_client(server)
    prompt = "interrupted by its client"
    call = InThread(lambda: api.txt2img(prompt=prompt, steps=150, n_iter=3, **SMALL))
    wait_for(lambda: running_step(server, prompt), what="the first iteration running")
    api.interrupt()
    result = call.result()
    assert result.images == [] and result.info["all_seeds"] == []
    statuses = [httpx.get(f"{server.base_url}/api/jobs/{sid}").json()["status"] for sid in result.info["session_ids"]]
    assert statuses == ["cancelled"] * 3
    api.util_wait_for_ready(check_interval=0.1)


def test_skip_stops_the_running_iteration_and_the_next_one_runs(server):
    api = a1111_client(server)
    prompt = "one iteration skipped"
    call = InThread(lambda: api.txt2img(prompt=prompt, steps=40, n_iter=2, seed=500, **SMALL))
    wait_for(lambda: running_step(server, prompt), what="the first iteration running")
    assert api.get_progress()["state"]["job_no"] == 0
    api.skip()
    result = call.result()
    assert len(result.images) == 1 and result.info["all_seeds"] == [501]
    first, second = (httpx.get(f"{server.base_url}/api/jobs/{sid}").json() for sid in result.info["session_ids"])
    assert (first["status"], second["status"]) == ("cancelled", "completed")


def test_progress_and_interrupt_refer_to_the_asking_clients_run_not_another_ones(server):
    """Client .2's run runs; client .3's run waits behind it: each sees and stops its own."""
    first, second = client_at("127.0.0.2", server), client_at("127.0.0.3", server)
    body = {"steps": 150, **SMALL}
    running = InThread(lambda: first.post("/sdapi/v1/txt2img", json={"prompt": "first client's run", **body}))
    wait_for(lambda: running_step(server, "first client's run"), what="the first client's job running")
    waiting = InThread(lambda: second.post("/sdapi/v1/txt2img", json={"prompt": "second client's run", **body}))
    wait_for(lambda: job_with_prompt(server, "second client's run", ("queued",)), what="the second client's job queued")

    mine = second.get("/sdapi/v1/progress").json()
    assert mine["state"]["job_count"] == 1 and mine["state"]["sampling_step"] == 0
    assert mine["textinfo"] == "Queued at position 1"
    theirs = first.get("/sdapi/v1/progress").json()
    assert theirs["state"]["sampling_step"] > 0 and theirs["state"]["sampling_steps"] == 150

    assert second.post("/sdapi/v1/interrupt").json() == {}
    assert waiting.result().json()["images"] == []
    assert job_with_prompt(server, "first client's run")["status"] == "running"  # untouched
    first.post("/sdapi/v1/interrupt")
    assert running.result().status_code == 200
    first.close()
    second.close()


def test_without_a_run_of_its_own_a_client_sees_and_stops_the_oldest_running_job(server):
    """A job from /api (or the studio) is what an A1111 client with no run of its own refers to."""
    session_id = httpx.post(
        f"{server.base_url}/api/generate", json={"prompt": "a job from the REST API", "num_inference_steps": 150}
    ).json()["session_id"]
    wait_for(lambda: running_step(server, "a job from the REST API"), what="the REST job running")
    api = a1111_client(server)
    progress = api.get_progress()
    assert progress["state"]["job_count"] == 1 and progress["state"]["sampling_steps"] == 150
    assert 0 < progress["progress"] < 1
    api.interrupt()
    job = wait_for(
        lambda: (view := httpx.get(f"{server.base_url}/api/jobs/{session_id}").json())["status"] != "running" and view,
        what="the REST job stopped",
    )
    assert job["status"] == "cancelled"
