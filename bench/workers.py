"""Many workers: throughput with 1 and 2 local workers, what the Redis path adds per progress message, and
how long a killed remote worker's job takes to run again elsewhere.

- Throughput: `jobs` jobs queued at once on a server with `workers.local` 1, then 2 (one torch thread
  each); jobs per minute from the first job's start to the last one's end (the job records' times).
- Redis per message: bench/latency.py's measurement (diffusion callback fired -> bytes at each /ws
  client, 100 clients) on a server with one local worker, then on one with no local worker and one
  remote worker (`python -m app worker`) over a local redis-server; and, with no subscriber, each job's
  generation_started -> generation_complete at a client over its pipeline call (metadata.duration_seconds).
- The machine's own scaling, for comparison: the bare pipeline (no server) in one process, then in two
  processes at once (one torch thread each), seconds per job over all of them.
- Failover: two remote workers, `queue.heartbeat_timeout` 3 s; the worker running a job is killed with
  SIGKILL at its second step; time until /ws tells generation_started again (on the other worker).

    .venv/bin/python -m bench.workers [--smoke] [--model PATH]
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from . import latency
from .common import PROJECT_ROOT, Context, Row, Server, free_port, job_body, median, server_environment
from .ws_client import WsClient, post_job, subscribe_all, wait_terminals

HEARTBEAT = 3.0


class RedisProcess:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        log = (folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
            stdout=log, stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def start_worker(ctx: Context, redis_url: str, name: str) -> subprocess.Popen[bytes]:
    env = server_environment({"AI_ARTIST_MODEL__CPU_THREADS": "1", "AI_ARTIST_QUEUE__HEARTBEAT_TIMEOUT": str(HEARTBEAT)})
    log = (ctx.work / f"worker-{name}.log").open("ab")
    command = [sys.executable, "-m", "app", "worker", "--redis", redis_url, "--model", str(ctx.model), "--name", name]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def bare_jobs(model: str, jobs: int, steps: int) -> float:
    """In a process of its own: the bare pipeline's seconds for `jobs` jobs (after a warm-up)."""
    import torch

    torch.set_num_threads(1)
    from app.pipeline.generator import ArtworkGenerator

    generator = ArtworkGenerator(model, device="cpu", cpu_threads=1)
    generator.load_model()
    generator.generate(prompt="warm-up", num_inference_steps=2)
    began = time.perf_counter()
    for index in range(jobs):
        generator.generate(prompt="a mountain", num_inference_steps=steps, seed=index)
    return time.perf_counter() - began


def bare_scaling(ctx: Context, jobs: int, steps: int) -> float:
    """Jobs per second of two bare processes at once over one alone."""
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        alone = jobs / pool.starmap(bare_jobs, [(str(ctx.model), jobs, steps)])[0]
    with spawn.Pool(2) as pool:
        both = sum(jobs / seconds for seconds in pool.starmap(bare_jobs, [(str(ctx.model), jobs, steps)] * 2))
    return both / alone


def redis_env(redis_url: str) -> dict[str, str]:
    return {"AI_ARTIST_WORKERS__LOCAL": "0", "AI_ARTIST_QUEUE__BACKEND": "redis",
            "AI_ARTIST_QUEUE__REDIS_URL": redis_url, "AI_ARTIST_QUEUE__HEARTBEAT_TIMEOUT": str(HEARTBEAT)}


async def throughput(server: Server, jobs: int, steps: int) -> float:
    """Jobs per minute, first start -> last finish, all queued at once."""
    ids = [await post_job(server.base_url, job_body(steps, seed=100 + index)) for index in range(jobs)]
    watcher = await WsClient.connect(server.port)
    await subscribe_all([watcher], ids)
    await wait_terminals([watcher], ids)
    watcher.close()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        views = [(await http.get(f"/api/jobs/{session_id}")).json() for session_id in ids]
    began = min(datetime.fromisoformat(view["started_at"]) for view in views)
    ended = max(datetime.fromisoformat(view["finished_at"]) for view in views)
    return jobs / (ended - began).total_seconds() * 60


async def job_over_pipeline(server: Server, jobs: int, steps: int) -> list[float]:
    """Per job: generation_started -> generation_complete at a client, over the pipeline call itself."""
    ratios = []
    for index in range(jobs):
        session_id = await post_job(server.base_url, job_body(steps, seed=300 + index))
        watcher = await WsClient.connect(server.port)
        await subscribe_all([watcher], [session_id])
        await wait_terminals([watcher], [session_id])
        watcher.close()
        times = {message["type"]: arrived for arrived, message in watcher.parsed()}
        complete = next(message for _, message in watcher.parsed() if message["type"] == "generation_complete")
        if "generation_started" in times:
            ratios.append((times["generation_complete"] - times["generation_started"])
                          / complete["metadata"]["duration_seconds"])
    return ratios


async def failover(server: Server, workers: dict[str, subprocess.Popen[bytes]]) -> float:
    session_id = await post_job(server.base_url, job_body(150, seed=9, num_images=2))
    watcher = await WsClient.connect(server.port)
    await subscribe_all([watcher], [session_id])
    async with httpx.AsyncClient(base_url=server.base_url) as http:  # the watcher wakes on milestones only
        while (view := (await http.get(f"/api/jobs/{session_id}")).json())["step"] < 2:
            await asyncio.sleep(0.02)
    first = view["worker"]
    killed = time.perf_counter()
    os.kill(workers[first].pid, signal.SIGKILL)

    def started_again() -> bool:
        return any(m["type"] == "generation_started" and m["worker"] != first for _, m in watcher.parsed())

    await watcher.wait_for(started_again, 120)
    again = next(t for t, m in watcher.parsed() if m["type"] == "generation_started" and m["worker"] != first)
    await wait_terminals([watcher], [session_id])
    watcher.close()
    return again - killed


def run(ctx: Context) -> list[Row]:
    jobs, steps = (2, 4) if ctx.smoke else (6, 30)
    rows: list[Row] = []
    per_minute = {}
    for count in (1, 2):
        server = Server(ctx.model, ctx.work / f"workers-{count}", env={"AI_ARTIST_WORKERS__LOCAL": str(count)}).start()
        try:
            asyncio.run(throughput(server, count, 2))  # warm-up: every worker's first pipeline call
            per_minute[count] = asyncio.run(throughput(server, jobs, steps))
        finally:
            server.stop()
        rows.append(Row("workers", f"{count} local worker{'s' if count > 1 else ''}: throughput, {jobs} jobs of "
                        f"{steps} steps", round(per_minute[count], 1), "jobs/min"))
    speedup = per_minute[2] / per_minute[1]
    rows.append(Row("workers", "2 local workers ÷ 1", round(speedup, 2), "×", "≥ 1.8×", speedup >= 1.8,
                    note="1 torch thread each"))
    machine = bare_scaling(ctx, 1 if ctx.smoke else 3, steps)
    rows.append(Row("workers", "the machine itself: bare pipeline in 2 processes ÷ 1 (no server)", round(machine, 2),
                    "×", note="measured right after; what two workers can get from the cores the machine has free"))

    redis = RedisProcess(ctx.work / "redis")
    remote: dict[str, subprocess.Popen[bytes]] = {}
    try:
        subscribers = 5 if ctx.smoke else 100
        measured_jobs = 1 if ctx.smoke else 2
        p99 = {}
        for path in ("local", "redis"):
            env = {} if path == "local" else redis_env(redis.url)
            server = Server(ctx.model, ctx.work / f"latency-{path}", hooked=True, env=env)
            if path == "redis":
                remote["r1"] = start_worker(ctx, redis.url, "r1")
            server.start(wait=None)
            try:
                server.wait_until(lambda h: h["workers"]["idle"] == 1 and h["model"]["state"] == "ready")
                asyncio.run(latency.measure(server, 1, 2))  # warm-up
                result = asyncio.run(latency.measure(server, subscribers, steps, jobs=measured_jobs))
                p99[path] = result["p99"]
                rows.append(Row("workers", f"{path} path, {subscribers} subscribers: progress p99 (callback → client)",
                                round(result["p99"], 2), "ms", note=f"p50 {result['p50']:.2f} ms"))
                if path == "redis":
                    ratios = asyncio.run(job_over_pipeline(server, 2 if ctx.smoke else 4, steps))
                    rows.append(Row("workers", "redis path, 0 subscribers: job (started → complete at a client) ÷ "
                                    "its pipeline call, median", round(median(ratios), 3), "×", "≤ 1.05",
                                    median(ratios) <= 1.05, note=", ".join(f"{r:.3f}" for r in ratios)))
            finally:
                server.stop()
        extra = p99["redis"] - p99["local"]
        rows.append(Row("workers", f"redis path adds to progress p99 at {subscribers} subscribers", round(extra, 2),
                        "ms", "≤ 5 ms", extra <= 5))

        remote["r2"] = start_worker(ctx, redis.url, "r2")
        server = Server(ctx.model, ctx.work / "failover", env=redis_env(redis.url)).start(wait=None)
        try:
            server.wait_until(lambda h: h["workers"]["idle"] == 2)
            seconds = asyncio.run(failover(server, remote))
        finally:
            server.stop()
        rows.append(Row("workers", f"failover: SIGKILL of the busy worker → job started on the other "
                        f"(heartbeat timeout {HEARTBEAT:g} s)", round(seconds, 2), "s", f"≤ {HEARTBEAT + 2:g} s",
                        seconds <= HEARTBEAT + 2))
    finally:
        for process in remote.values():
            if process.poll() is None:
                process.terminate()
                process.wait(30)
        redis.stop()
    ctx.note("workers", f"Throughput: {jobs} jobs queued at once per figure after a warm-up job per worker, "
             "one torch thread per worker. Redis path: one remote worker on this machine, redis-server on "
             "loopback; latency measured as in progress latency.")
    return rows


if __name__ == "__main__":
    from .run import main

    sys.exit(main(["--only", "workers", *sys.argv[1:]]))
