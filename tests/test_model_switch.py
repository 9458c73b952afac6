"""Switching models at run time through a real server (POST /api/model, GET /api/models, /api/health),
what happens to jobs queued across a switch, and hub ids under HF_HUB_OFFLINE=1.

Policy under test: a job already running finishes on the model it started on; jobs still waiting fail at
once with a reason naming both models (their sizes and scheduler were validated against the old one);
the new model loads once the running job is done.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.pipeline.sources import ModelUnavailable, resolve_source
from app.testing.tiny_models import build_tiny_pipeline
from tests.fake_hub import FakeHub
from tests.server_jobs import run_job, submit
from tests.ws_client import WsClient, for_session, is_terminal

HUB_ID = "ai-artist-tests/not-in-any-cache"


def offline(tmp_path: Path) -> dict[str, str]:
    return {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}


async def test_switch_while_a_job_runs_fails_waiting_jobs_and_loads_after_it(
    start_server, tiny_pipeline_dirs, tmp_path
):
    data_dir = tmp_path / "data"
    extra = build_tiny_pipeline("sdxl", data_dir / "models" / "house-sdxl")
    server = start_server(data_dir=data_dir, env=offline(tmp_path))
    old_name = Path(server.model_dir).name
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        listed = (await http.get("/api/models")).json()
        assert listed["current"]["state"] == "ready"
        assert str(extra.resolve()) in [item["model"] for item in listed["models"]]

        running = await submit(http, num_inference_steps=150, seed=1)
        await ws.subscribe(running)
        await ws.recv_until(for_session(running, lambda m: m["type"] == "generation_progress"))
        waiting = await submit(http, num_inference_steps=2)
        await ws.subscribe(waiting)

        sd3 = str(tiny_pipeline_dirs["sd3"])
        answer = await http.post("/api/model", json={"model": sd3})
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"model": sd3, "state": "loading", "failed_jobs": [waiting]}
        failed = (await ws.recv_until(for_session(waiting, is_terminal)))[-1]
        assert failed["type"] == "generation_error"
        assert "switched" in failed["error"] and old_name in failed["error"] and "sd3" in failed["error"]

        busy = await http.post("/api/model", json={"model": str(extra)})  # the switch waits for `running`
        assert busy.status_code == 409 and "still loading" in busy.json()["detail"]
        loading = (await http.get("/api/health")).json()["model"]
        assert loading["id"] == sd3 and loading["state"] == "loading" and loading["family"] == "sd3"

        await http.post(f"/api/jobs/{running}/cancel")
        assert (await ws.recv_until(for_session(running, is_terminal)))[-1]["type"] == "generation_cancelled"
        assert (await http.get(f"/api/jobs/{running}")).json()["model"] == old_name

        health = server.wait_until(lambda h: h["model"]["state"] != "loading")
        assert health["model"]["state"] == "ready" and health["model"]["family"] == "sd3"
        done = (await run_job(http, ws, num_inference_steps=2, width=64, height=64))[-1]
        assert done["type"] == "generation_complete" and done["metadata"]["model"] == "sd3"


async def test_hub_id_offline_gives_a_clear_error_then_a_local_model_recovers(start_server, model_dir, tmp_path):
    server = start_server(model=HUB_ID, env=offline(tmp_path))
    model = httpx.get(f"{server.base_url}/api/health").json()["model"]
    assert model["state"] == "error" and model["id"] == HUB_ID
    for needed in (HUB_ID, "HF_HUB_OFFLINE", f"hf download {HUB_ID}"):
        assert needed in model["error"]

    refused = httpx.post(f"{server.base_url}/api/model", json={"model": "other-org/other-model"})
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"][-1] == "model" and "HF_HUB_OFFLINE" in problem["msg"]
    assert "hf download other-org/other-model" in problem["msg"]

    missing = httpx.post(f"{server.base_url}/api/model", json={"model": str(tmp_path / "nowhere" / "model")})
    assert missing.status_code == 422 and "no such local folder or file" in missing.json()["detail"][0]["msg"]

    answer = httpx.post(f"{server.base_url}/api/model", json={"model": str(model_dir)})
    assert answer.status_code == 202, answer.text
    assert server.wait_until(lambda h: h["model"]["state"] != "loading")["model"]["state"] == "ready"
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        assert (await run_job(http, ws, num_inference_steps=2))[-1]["type"] == "generation_complete"


def test_sources_are_classified_and_a_configured_single_file_config_must_be_a_diffusers_folder(
    tiny_pipeline_dirs, tmp_path
):
    folder = resolve_source(str(tiny_pipeline_dirs["sd"]))
    assert folder.kind == "folder" and folder.name == "sd"
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"0")
    configured = resolve_source(str(checkpoint), single_file_config=tiny_pipeline_dirs["sd"])
    assert configured.kind == "single_file" and configured.config_dir == str(tiny_pipeline_dirs["sd"].resolve())
    with pytest.raises(ModelUnavailable, match="model_index.json missing"):
        resolve_source(str(checkpoint), single_file_config=tmp_path)
    with pytest.raises(ModelUnavailable, match="model_index.json is missing"):
        resolve_source(str(tmp_path))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelUnavailable, match="single checkpoints end in"):
        resolve_source(str(tmp_path / "notes.txt"))


async def test_hub_download_sends_model_loading_progress_to_ws_clients_then_generates(
    start_server, tiny_pipeline_dirs, tmp_path
):
    """The real download path (DiffusionPipeline.download -> huggingface_hub) against a local fake hub."""
    repo, folder = "tiny-org/tiny-flux", tiny_pipeline_dirs["flux"]
    expected_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    with FakeHub({repo: folder}) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_XET": "1"}
        server = start_server(env=env)
        async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
            await ws.send({"type": "ping"})
            assert (await ws.recv())["type"] == "pong"  # connected before the switch
            answer = await http.post("/api/model", json={"model": repo})
            assert answer.status_code == 202 and answer.json()["model"] == repo, answer.text
            progress = await ws.recv_until(
                lambda m: m["type"] == "model_loading" and m["downloaded_bytes"] == m["total_bytes"]
            )
            assert {m["model"] for m in progress} == {repo}
            assert progress[0]["downloaded_bytes"] == 0 and progress[-1]["total_bytes"] == expected_bytes
            downloaded = [m["downloaded_bytes"] for m in progress]
            assert downloaded == sorted(downloaded)

            health = server.wait_until(lambda h: h["model"]["state"] != "loading")["model"]
            assert health["state"] == "ready" and health["id"] == repo and health["family"] == "flux"
            done = (await run_job(http, ws, num_inference_steps=2, width=64, height=64))[-1]
            assert done["type"] == "generation_complete" and done["metadata"]["model"] == repo
    assert any("/resolve/" in request for request in hub.requests)
    assert (tmp_path / "hf-home" / "hub" / "models--tiny-org--tiny-flux").is_dir(), "in the standard cache"
