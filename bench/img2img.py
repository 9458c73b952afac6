"""Image-to-image: a job through the server divided by the bare diffusers image-to-image call, same run.

Server time: `POST /api/generate` with `init_image` (an upload's name) and `strength` until the server
published `generation_complete` (the hooked server's stamps; same clock). Bare time: the same model (its
`AutoPipelineForImage2Image.from_pipe`), prompt, steps, strength, guidance, seed and input picture through
`pipeline(...)` in its own process, one torch thread and the server's CPU settings, as bench/overhead.py
does for text-to-image. Both run `int(steps × strength)` denoising steps (the SD pipelines count them so
themselves). Bare and server runs are interleaved; the median of the pair ratios is reported, next to
the same ratio for text-to-image jobs of as many steps in the same rounds (a control: on a busy machine
both move together).

    .venv/bin/python -m bench.img2img [--smoke] [--model PATH]
"""
from __future__ import annotations

import asyncio
import io
import json
import sys
import time

import httpx

from app.pipeline.values import inspect_size_limits

from .common import PROMPT, Context, Row, Server, job_body, median
from .overhead import Bare
from .overhead import through_server as text_to_image_through_server

STRENGTH = 0.75


def input_picture(side: int) -> bytes:
    """A picture with shapes and a gradient (not noise: the VAE sees something like a photo)."""
    from PIL import Image, ImageDraw

    image = Image.linear_gradient("L").resize((side, side)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((side * 0.2, side * 0.2, side * 0.6, side * 0.6), fill=(220, 40, 40))
    draw.rectangle((side * 0.55, side * 0.5, side * 0.9, side * 0.85), fill=(40, 80, 220))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bare_worker(model: str, picture: str) -> None:
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
    from PIL import Image

    from app.pipeline.cpu_speed import cpu_inference, onednn_pays_off

    torch.set_num_threads(1)
    text_to_image = AutoPipelineForText2Image.from_pretrained(model, dtype=torch.float32).to("cpu")
    pipeline = AutoPipelineForImage2Image.from_pipe(text_to_image)
    pipeline.set_progress_bar_config(disable=True)
    init = Image.open(picture).convert("RGB")
    print("ready", flush=True)
    with cpu_inference(onednn_pays_off(pipeline)):
        for line in sys.stdin:
            job = json.loads(line)
            began = time.perf_counter()
            pipeline(
                prompt=[PROMPT], negative_prompt=None, num_inference_steps=job["steps"], guidance_scale=7.5,
                image=init, strength=job["strength"], generator=[torch.Generator("cpu").manual_seed(job["seed"])],
            )
            print(time.perf_counter() - began, flush=True)


async def through_server(server: Server, init_name: str, steps: int, seed: int) -> float:
    """Seconds from POST to the server publishing `generation_complete`."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        began = time.perf_counter()
        response = await http.post("/api/generate", json=job_body(steps, seed, init_image=init_name, strength=STRENGTH))
        response.raise_for_status()
        session_id = response.json()["session_id"]
        while (await http.get(f"/api/jobs/{session_id}")).json()["status"] in ("queued", "running"):
            await asyncio.sleep(0.05)
        terminal = [t for sid, _seq, kind, t in (await http.get("/bench/stamps")).json()["terminal"]
                    if sid == session_id and kind == "generation_complete"]
    if not terminal:
        raise RuntimeError(f"the image-to-image job {session_id} did not complete")
    return terminal[0] - began


def run(ctx: Context, server: Server) -> list[Row]:
    steps = 4 if ctx.smoke else 30
    reps = 1 if ctx.smoke else 11
    plain = server if ctx.smoke else Server(
        ctx.model, ctx.work / "img2img-no-previews", hooked=True, env={"AI_ARTIST_PREVIEWS__ENABLED": "false"}
    ).start()
    try:
        plain.wait_until(lambda h: h["model"]["state"] == "ready")
        side = inspect_size_limits(str(ctx.model)).default_width  # the native size: no resizing on either side
        uploaded = httpx.post(f"{plain.base_url}/api/uploads", timeout=60,
                              files={"file": ("input.png", input_picture(side), "image/png")}).json()
        picture = ctx.work / "img2img-input.png"
        picture.parent.mkdir(parents=True, exist_ok=True)
        picture.write_bytes(httpx.get(plain.base_url + uploaded["url"]).content)
        bare, bare_text = Bare(ctx.model, "bench.img2img", str(picture)), Bare(ctx.model)
        run_steps = int(steps * STRENGTH)
        try:
            bare.run(steps, 0, strength=STRENGTH)  # warm-up all
            bare_text.run(run_steps, 0)
            asyncio.run(through_server(plain, uploaded["name"], steps, 0))
            ratios, bare_times, server_times, control = [], [], [], []
            for rep in range(reps):
                seed = 700 + rep
                bare_times.append(bare.run(steps, seed, strength=STRENGTH))
                server_times.append(asyncio.run(through_server(plain, uploaded["name"], steps, seed)))
                ratios.append(server_times[-1] / bare_times[-1])
                text_bare = bare_text.run(run_steps, seed)
                text_server, _ = asyncio.run(text_to_image_through_server(plain, [], run_steps, seed, False))
                control.append(text_server / text_bare)
        finally:
            bare.close()
            bare_text.close()
    finally:
        if plain is not server:
            plain.stop()
    ratio = median(ratios)
    previews = "previews on (smoke: the shared server)" if ctx.smoke else "previews off"
    ctx.note("img2img", f"{steps} steps at strength {STRENGTH} ({run_steps} run), guidance 7.5, a {side}-pixel "
                        f"input picture (gradient and shapes), {reps} interleaved rounds, server with {previews}, "
                        "no subscriber; bare = `AutoPipelineForImage2Image.from_pipe` of the same model in its own "
                        "process.")
    return [
        Row("img2img", "bare diffusers image-to-image call (median)", round(median(bare_times), 3), "s",
            note=f"{run_steps} denoising steps, {len(bare_times)} runs"),
        Row("img2img", f"image-to-image job, {previews}: server ÷ bare (median of pairs)", round(ratio, 3), "×",
            "≤ 1.05", ratio <= 1.05,
            f"server median {median(server_times):.3f} s; pair ratios " + ", ".join(f"{v:.3f}" for v in ratios)),
        Row("img2img", f"control: text-to-image job of {run_steps} steps in the same rounds, server ÷ bare",
            round(median(control), 3), "×", note="pair ratios " + ", ".join(f"{v:.3f}" for v in control)),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare"]:
        bare_worker(sys.argv[2], sys.argv[3])
    else:
        from .run import main

        main(["--only", "img2img", *sys.argv[1:]])
