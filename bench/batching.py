"""Dynamic batching: images per minute with 1, 4 and 8 clients each keeping one job queued (a client
submits its next job when its previous one has ended), batching off (`queue.max_batch: 1`) vs on
(`queue.max_batch: 8`), and each job's latency (submit → `generation_complete`).

Both servers run in the same bench run, one after the other per client count, so the ratios compare
figures measured minutes apart on the same (noisy) machine.

    .venv/bin/python -m bench.batching [--smoke]   # also writes its rows into docs/benchmarks.md
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx

from .common import PROJECT_ROOT, PROMPT, Context, Row, Server, job_body, median
from .ws_client import WsClient, post_job

CLIENTS = (1, 4, 8)
STEPS = 20
MAX_BATCH_ON = 8
ROUNDS = 3  # the best round's rate counts: the machine is shared, other work slows some rounds
THREADS = 2  # torch's own choice on this 2-core machine (the config's default, `model.cpu_threads: null`)


async def client(server: Server, jobs: int, seed: int, latencies: list[float]) -> None:
    """One client: a job, wait for its end, the next one."""
    ws = await WsClient.connect(server.port)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            for index in range(jobs):
                began = time.perf_counter()
                session_id = await post_job(server.base_url, job_body(STEPS, seed=seed + index), http)
                ws.subscribe(session_id)
                await ws.wait_for(lambda session_id=session_id: session_id in ws.terminals, timeout=600)
                latencies.append(time.perf_counter() - began)
    finally:
        ws.close()


async def load(server: Server, clients: int, jobs_each: int) -> tuple[float, list[float]]:
    """(images per minute, every job's latency) with `clients` clients of `jobs_each` jobs each."""
    latencies: list[float] = []
    began = time.perf_counter()
    await asyncio.gather(*(client(server, jobs_each, 1000 * number, latencies) for number in range(clients)))
    elapsed = time.perf_counter() - began
    return clients * jobs_each * 60 / elapsed, latencies


BARE = """
import json, sys, time
import numpy as np, torch
from PIL import Image
from app.pipeline import generator as generator_module
from app.pipeline.generator import ArtworkGenerator
from app.pipeline.image_modes import ImageRow
model, steps, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
generator = ArtworkGenerator(model, device="cpu", cpu_threads=int(sys.argv[5]))
generator.load_model()
generator.generate("warm-up", num_inference_steps=steps, seed=1)
prompts = [f"{sys.argv[4]}, variation {index}" for index in range(count)]
began = time.perf_counter()
alone = [generator.generate(prompt, num_inference_steps=steps, seed=index)[0] for index, prompt in enumerate(prompts)]
calls = time.perf_counter() - began
began = time.perf_counter()
together = generator.generate("", rows=[(prompt, "", index) for index, prompt in enumerate(prompts)],
                              num_inference_steps=steps)
batch = time.perf_counter() - began
differences = [int(np.abs(np.asarray(a, int) - np.asarray(b, int)).max()) for a, b in zip(alone, together)]
chosen = generator_module.onednn_for_call
generator_module.onednn_for_call = lambda *arguments: False  # the batch with PyTorch's own convolutions
began = time.perf_counter()
generator.generate("", rows=[(prompt, "", index) for index, prompt in enumerate(prompts)], num_inference_steps=steps)
batch_without_onednn = time.perf_counter() - began
generator_module.onednn_for_call = chosen
pictures = [Image.new("RGB", (64, 64), (32 * index % 256, 128, 255 - 32 * index % 256)) for index in range(count)]
began = time.perf_counter()
for index, (prompt, picture) in enumerate(zip(prompts, pictures)):
    generator.generate(prompt, num_inference_steps=steps, seed=index, init_image=picture, strength=0.75)
image_calls = time.perf_counter() - began
began = time.perf_counter()
generator.generate("", rows=[ImageRow(prompt, "", index, picture) for index, (prompt, picture)
                             in enumerate(zip(prompts, pictures))], num_inference_steps=steps, strength=0.75)
image_batch = time.perf_counter() - began
print(json.dumps({"calls": calls, "batch": batch, "differences": differences,
                  "batch_without_onednn": batch_without_onednn, "image_calls": image_calls,
                  "image_batch": image_batch}))
"""


def bare_pipeline(ctx: Context, count: int) -> dict:
    """The pipeline alone (no server), THREADS threads: `count` prompts as `count` calls and as one batched call,
    and how far each batched image is from the same seed's image alone (0-255)."""
    result = subprocess.run([sys.executable, "-c", BARE, str(ctx.model), str(STEPS), str(count), PROMPT, str(THREADS)],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def jobs_per_client(clients: int, smoke: bool) -> int:
    if smoke:
        return 1
    return {1: 3, 4: 2, 8: 3}[clients]


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    threads = {"AI_ARTIST_MODEL__CPU_THREADS": str(THREADS)}
    servers = {
        "off": Server(ctx.model, ctx.work / "batching-off", env={"AI_ARTIST_QUEUE__MAX_BATCH": "1", **threads}),
        "on": Server(ctx.model, ctx.work / "batching-on", env={"AI_ARTIST_QUEUE__MAX_BATCH": str(MAX_BATCH_ON), **threads}),
    }
    rates: dict[tuple[str, int], float] = {}
    latencies: dict[tuple[str, int], list[float]] = {}
    try:
        for server in servers.values():
            server.start()
            asyncio.run(load(server, 1, 1))  # warm-up: the first call of a process pays one-time costs
        for _round in range(1 if ctx.smoke else ROUNDS):  # off and on interleaved: both see the same load
            for clients in CLIENTS:
                for mode, server in servers.items():
                    rate, measured = asyncio.run(load(server, clients, jobs_per_client(clients, ctx.smoke)))
                    rates[mode, clients] = max(rates.get((mode, clients), 0.0), rate)
                    latencies.setdefault((mode, clients), []).extend(measured)
    finally:
        for server in servers.values():
            server.stop()
    bare = bare_pipeline(ctx, 2 if ctx.smoke else MAX_BATCH_ON)
    count = len(bare["differences"])
    rows.append(Row("batching", f"bare pipeline, {THREADS} threads: {count} prompts as {count} calls → as one batched call",
                    f"{bare['calls']:.2f} → {bare['batch']:.2f}", "s", note=f"{bare['calls'] / bare['batch']:.2f}× "
                    "faster batched: about the most the server can gain here"))
    rows.append(Row("batching", "the same batched call with PyTorch's own convolutions (oneDNN off, as before it was "
                    "chosen per call)", round(bare["batch_without_onednn"], 2), "s",
                    note=f"{bare['calls'] / bare['batch_without_onednn']:.2f}× faster than {count} calls"))
    rows.append(Row("batching", f"bare pipeline, image-to-image (strength 0.75), {count} pictures as {count} calls "
                    "→ as one batched call", f"{bare['image_calls']:.2f} → {bare['image_batch']:.2f}", "s",
                    note=f"{bare['image_calls'] / bare['image_batch']:.2f}× faster batched"))
    identical = sum(1 for difference in bare["differences"] if difference == 0)
    rows.append(Row("batching", "same seed alone vs in the batch: largest difference per channel",
                    max(bare["differences"]), "/255", "≤ 1", max(bare["differences"]) <= 1,
                    f"{identical} of {count} images bit-identical; default scheduler (DPM-Solver++ multistep)"))
    one_run = median(latencies["off", 1])  # a job alone, nothing queued: one pipeline run
    for clients in CLIENTS:
        off, on = rates["off", clients], rates["on", clients]
        target = "≥ 2×" if clients == 8 else ""
        rows.append(Row("batching", f"{clients} client(s), one job queued each: images/min off → on",
                        f"{off:.1f} → {on:.1f}", "images/min"))
        rows.append(Row("batching", f"{clients} client(s): batching on ÷ off", round(on / off, 2), "×", target,
                        on / off >= 2 if clients == 8 else None))
        worst_on, worst_off = max(latencies["on", clients]), max(latencies["off", clients])
        rows.append(Row("batching", f"{clients} client(s): slowest job's latency off → on",
                        f"{worst_off:.2f} → {worst_on:.2f}", "s",
                        note=f"median off {median(latencies['off', clients]):.2f} s, on "
                        f"{median(latencies['on', clients]):.2f} s"))
    worst_alone = max(latencies["on", 1])
    rows.append(Row("batching", "1 client, batching on: slowest job − solo latency (batching off)",
                    round(worst_alone - one_run, 2), "s", f"≤ 1 run ({one_run:.2f} s)", worst_alone - one_run <= one_run))
    ctx.note("batching", f"{STEPS} steps, guidance 7.5, the model's native size, one image per job, a different seed "
             f"per job; batching on = `queue.max_batch: {MAX_BATCH_ON}`, off = 1; jobs per client: "
             f"{', '.join(f'{n} clients: {jobs_per_client(n, ctx.smoke)}' for n in CLIENTS)}; a warm-up job per "
             f"server first; {ROUNDS} rounds, off and on interleaved, images/min of the best round, latencies of all. A client submits its next job when its previous one ended; after a batch the worker "
             "waits briefly for its clients' next jobs (app/engine/batching.py). The server and the bare "
             f"pipeline use {THREADS} torch threads, torch's own choice on this 2-core machine (with 1 thread the "
             "8-client ratio was 1.77-2.08× in three runs on 2026-12-03, the bare pipeline's gain 2.0-2.3×). A small "
             "model's call on 4 or more 64×64 images runs with oneDNN (app/pipeline/cpu_speed.py). "
             "GPU figures: not measured (no GPU was lent to this work).")
    return rows


if __name__ == "__main__":
    from .run import main

    sys.exit(main(["--only", "batching", "--merge", *sys.argv[1:]]))
