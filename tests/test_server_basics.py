"""The server's own face: health while and after loading, OpenAPI docs, the console script."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.fake_hub import FakeHub
from tests.server_process import PROJECT_ROOT


def test_health_reports_model_and_queue(server):
    health = httpx.get(f"{server.base_url}/api/health").json()
    assert health["status"] == "ok"
    assert health["model"]["state"] == "ready" and health["model"]["device"] == "cpu"
    assert health["model"]["id"] == str(server.model_dir)
    assert set(health["queue"]) == {"pending", "running"}


def test_openapi_documents_the_api(server):
    assert httpx.get(f"{server.base_url}/docs").status_code == 200
    paths = httpx.get(f"{server.base_url}/openapi.json").json()["paths"]
    for path in ("/api/generate", "/api/jobs/{session_id}", "/api/jobs", "/api/jobs/{session_id}/cancel",
                 "/api/gallery", "/api/health"):
        assert path in paths


def test_the_server_answers_before_the_model_is_ready_and_queued_jobs_wait(start_server, model_dir, tmp_path):
    """The model comes from a (local stand-in of the) hub whose downloads wait until the test lets them."""
    repo, gate = "ai-artist-tests/slow-to-download", threading.Event()
    with FakeHub({repo: model_dir}, gate=gate) as hub:
        env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_XET": "1"}
        server = start_server(model=repo, env=env, wait_for_model=False)
        first = server.wait_until(lambda health: True)  # the first answer
        assert first["model"]["state"] == "loading" and first["model"]["id"] == repo
        job = httpx.post(f"{server.base_url}/api/generate", json={"prompt": "a red circle", "num_inference_steps": 2})
        assert job.status_code == 200
        session_id = job.json()["session_id"]
        waiting = httpx.get(f"{server.base_url}/api/jobs/{session_id}").json()
        assert waiting["status"] == "queued" and waiting["position"] == 1
        assert httpx.get(f"{server.base_url}/api/health").json()["model"]["state"] == "loading"
        gate.set()
        idle = server.wait_until(
            lambda h: h["model"]["state"] == "ready" and h["queue"]["pending"] == 0 and h["queue"]["running"] == 0
        )
    assert idle["model"]["error"] is None
    assert httpx.get(f"{server.base_url}/api/jobs/{session_id}").json()["status"] == "completed"


def test_the_console_script_is_installed():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ai-artist")), "--help"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and "--data-dir" in result.stdout and "--port" in result.stdout
