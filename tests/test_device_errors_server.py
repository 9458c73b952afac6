"""Device and memory through a real server: the memory options load and generate, and a real
out-of-memory (the generation process's address space capped with prlimit, so torch's allocator fails for a big
batch) reaches the client as `generation_error` with advice, after which the next job runs.
"""
from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_jobs import run_job
from tests.server_process import ServerProcess
from tests.ws_client import WsClient

pytestmark = pytest.mark.slow  # servers (or an engine) of its own

MEMORY_OPTIONS = {
    "AI_ARTIST_MODEL__ATTENTION_SLICING": "true",
    "AI_ARTIST_MODEL__VAE_TILING": "true",
    "AI_ARTIST_MODEL__CPU_OFFLOAD": "true",  # cuda only: on the CPU it is skipped with a warning
}
# After a warm-up job, another small job needs no new address space; 8 images at 256x256 need about 45 MB
# more. glibc is pinned to one arena and a fixed mmap threshold so freed tensors leave the address space.
HEADROOM = 16 * 2**20
PREDICTABLE_MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}


def address_space(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


@pytest.fixture(scope="module")
def servers(model_dir, tmp_path_factory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """A server with the default options and one with every memory option on, started side by side."""
    plain = ServerProcess(model_dir, tmp_path_factory.mktemp("plain"), PREDICTABLE_MALLOC).launch()
    options = ServerProcess(model_dir, tmp_path_factory.mktemp("options"), MEMORY_OPTIONS).launch()
    try:
        for server in (plain, options):
            server.wait_until(lambda health: health["model"]["state"] != "loading", timeout=180)
        yield plain, options
    finally:
        plain.stop()
        options.stop()


async def test_memory_options_load_and_generate(servers):
    _, server = servers
    assert "model.cpu_offload needs cuda" in server.output()
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        done = await run_job(http, ws, num_inference_steps=2, width=256, height=256, num_images=2)
        assert done[-1]["type"] == "generation_complete", done[-1]


async def test_out_of_memory_is_a_generation_error_with_advice_and_the_next_job_runs(servers):
    server, _ = servers
    async with httpx.AsyncClient(base_url=server.base_url) as http, WsClient(server.ws_url) as ws:
        warm = await run_job(http, ws, num_inference_steps=2, seed=1)
        assert warm[-1]["type"] == "generation_complete", warm[-1]

        pid = (await http.get("/api/health")).json()["model"]["process_id"]  # the generation process
        resource.prlimit(pid, resource.RLIMIT_AS, (address_space(pid) + HEADROOM, resource.RLIM_INFINITY))
        big = await run_job(http, ws, num_inference_steps=2, width=256, height=256, num_images=8)
        error = big[-1]
        assert error["type"] == "generation_error", error
        assert error["error"].startswith("Out of memory: try fewer images per batch, a smaller width/height")
        assert "offload" in error["error"]
        job = (await http.get(f"/api/jobs/{error['session_id']}")).json()
        assert job["status"] == "failed" and job["error"] == error["error"]

        after = await run_job(http, ws, num_inference_steps=2, seed=1)
        assert after[-1]["type"] == "generation_complete", after[-1]
        health = (await http.get("/api/health")).json()
        assert health["model"]["state"] == "ready" and health["queue"] == {"pending": 0, "running": 0}
