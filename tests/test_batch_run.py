"""Compatible jobs as one pipeline call in the generation process (app/pipeline/batch_run.py), on the
embedded model on the CPU, through the process's real end of a pipe: every job gets the images it gets
alone (within 1/255 per channel), its own steps and previews, and a cancelled job ends alone; image-to-image
and inpainting jobs each from their own input image and mask."""
from __future__ import annotations

import dataclasses
import io
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from app.config import PreviewSettings
from app.pipeline.batch_run import run_batch
from app.pipeline.generator import ArtworkGenerator
from app.pipeline.image_modes import ImageRow
from app.pipeline.messages import (
    CancelJob,
    InputImage,
    JobCancelled,
    JobFinished,
    JobSpec,
    PreviewReady,
    SetPreviews,
    StepDone,
)
from app.pipeline.process import Channel, run_job

STEPS = 4
EVERY_STEP = PreviewSettings(min_interval_ms=0)


@pytest.fixture(scope="module")
def generator(model_dir: Path) -> ArtworkGenerator:
    torch.set_num_threads(1)
    loaded = ArtworkGenerator(str(model_dir), device="cpu")
    loaded.load_model()
    return loaded


def spec(session_id: str, prompt: str, seed: int, images_dir: Path, num_images: int = 1, **extra) -> JobSpec:
    values = dict(
        session_id=session_id, prompt=prompt, negative_prompt="", num_inference_steps=STEPS, guidance_scale=7.5,
        num_images=num_images, seed=seed, width=64, height=64, scheduler=None, previews=EVERY_STEP,
        images_dir=str(images_dir),
    )
    return JobSpec(**{**values, **extra})


def alone(job: JobSpec, folder: Path) -> JobSpec:
    """The same job writing elsewhere (a PNG's name is its job's and the second it was made in)."""
    folder.mkdir(exist_ok=True)
    return dataclasses.replace(job, images_dir=str(folder))


def received(connection) -> list[object]:
    messages = []
    while connection.poll():
        messages.append(connection.recv())
    return messages


def pixels(folder: str, name: str) -> np.ndarray:
    with Image.open(Path(folder) / name) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_a_batch_gives_each_job_its_solo_images_and_only_its_own_steps_and_previews(generator, tmp_path):
    ours, theirs = multiprocessing.Pipe()
    channel = Channel(theirs)
    jobs = [
        spec("job-a", "a red apple", 11, tmp_path, negative_prompt="blurry"),
        spec("job-b", "a painting of a cat", 22, tmp_path, num_images=2, negative_prompt="blurry"),
        spec("job-c", "a blue lake", 33, tmp_path, previews_watched=False, negative_prompt="dark"),
    ]
    solo = [run_job(generator, alone(job, tmp_path / "solo"), channel) for job in jobs]
    received(ours)
    batched = run_batch(generator, jobs, channel)
    messages = received(ours)

    assert [type(outcome) for outcome in batched] == [JobFinished] * 3
    for by_itself, together in zip(solo, batched):
        assert isinstance(by_itself, JobFinished) and by_itself.session_id == together.session_id
        assert len(by_itself.image_names) == len(together.image_names)
        for name_alone, name_together in zip(by_itself.image_names, together.image_names):
            difference = np.abs(pixels(str(tmp_path / "solo"), name_alone) - pixels(str(tmp_path), name_together))
            assert difference.max() <= 1, f"{together.session_id}: off by {difference.max()}/255"
        assert together.metadata.prompt == by_itself.metadata.prompt and together.metadata.seed == by_itself.metadata.seed
    for job in jobs:
        steps = [m.step for m in messages if isinstance(m, StepDone) and m.session_id == job.session_id]
        assert steps == list(range(1, STEPS + 1))
    previews = {m.session_id for m in messages if isinstance(m, PreviewReady)}
    assert previews == {"job-a", "job-b"}, "job-c is not watched: no previews rendered for it"


def test_cancelling_one_job_of_a_batch_ends_it_alone_and_the_others_finish(generator, tmp_path):
    ours, theirs = multiprocessing.Pipe()
    channel = Channel(theirs)
    jobs = [spec("keep-1", "a red apple", 5, tmp_path), spec("drop", "a cat", 6, tmp_path),
            spec("keep-2", "a blue lake", 7, tmp_path, previews_watched=False)]
    solo = run_job(generator, alone(jobs[2], tmp_path / "solo"), channel)
    received(ours)
    ours.send(CancelJob("drop"))  # read at the batch's first step
    ours.send(SetPreviews("keep-2", True))  # someone began watching keep-2
    outcomes = run_batch(generator, jobs, channel)
    messages = received(ours)

    assert [(type(o), o.session_id) for o in outcomes] == [(JobFinished, "keep-1"), (JobFinished, "keep-2")]
    cancelled = [m for m in messages if isinstance(m, JobCancelled)]
    assert [m.session_id for m in cancelled] == ["drop"]
    dropped_steps = [m.step for m in messages if isinstance(m, StepDone) and m.session_id == "drop"]
    assert dropped_steps == [1], "no progress after the cancel was seen"
    assert messages.index(cancelled[0]) < max(i for i, m in enumerate(messages) if isinstance(m, StepDone))
    assert any(isinstance(m, PreviewReady) and m.session_id == "keep-2" for m in messages)
    assert isinstance(solo, JobFinished)
    kept = np.abs(pixels(str(tmp_path / "solo"), solo.image_names[0]) - pixels(str(tmp_path), outcomes[1].image_names[0]))
    assert kept.max() <= 1


def input_image(name: str, colour: str, size: tuple[int, int] = (64, 64)) -> InputImage:
    picture = Image.new("RGB", size, colour)
    ImageDraw.Draw(picture).ellipse((12, 12, size[0] - 12, size[1] - 12), fill="white")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return InputImage(name, buffer.getvalue())


def half_mask(name: str, left: bool) -> InputImage:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63) if left else (32, 0, 63, 63), fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return InputImage(name, buffer.getvalue())


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_image_jobs_with_their_own_inputs_share_a_run_and_get_their_solo_images(generator, tmp_path, mode):
    masks = [half_mask("left.png", True), half_mask("right.png", False)] if mode == "inpaint" else [None, None]
    jobs = [
        spec("job-a", "a red apple", 11, tmp_path, init_image=input_image("red.png", "red"), mask_image=masks[0],
             strength=0.6, mask_blur=2),
        spec("job-b", "a blue lake", 22, tmp_path, num_images=2, init_image=input_image("blue.png", "blue"),
             mask_image=masks[1], strength=0.6, mask_blur=2),
    ]
    ours, theirs = multiprocessing.Pipe()
    channel = Channel(theirs)
    solo = [run_job(generator, alone(job, tmp_path / "solo"), channel) for job in jobs]
    received(ours)
    batched = run_batch(generator, jobs, channel)
    messages = received(ours)

    assert [type(outcome) for outcome in batched] == [JobFinished] * 2
    for job in jobs:
        steps = [m.step for m in messages if isinstance(m, StepDone) and m.session_id == job.session_id]
        assert steps == list(range(1, int(STEPS * 0.6) + 1))
    for by_itself, together in zip(solo, batched):
        assert isinstance(by_itself, JobFinished)
        for name_alone, name_together in zip(by_itself.image_names, together.image_names, strict=True):
            difference = np.abs(pixels(str(tmp_path / "solo"), name_alone) - pixels(str(tmp_path), name_together))
            assert difference.max() <= 1, f"{together.session_id}: off by {difference.max()}/255"
    red, blue = (pixels(str(tmp_path), outcome.image_names[0]) for outcome in batched)
    assert red[..., 0].mean() > blue[..., 0].mean() and blue[..., 2].mean() > red[..., 2].mean(), \
        "each job started from its own picture"
    image_two_alone = run_job(generator, alone(dataclasses.replace(jobs[1], seed=23, num_images=1),
                                               tmp_path / "seed-23"), channel)
    difference = np.abs(pixels(str(tmp_path / "seed-23"), image_two_alone.image_names[0])
                        - pixels(str(tmp_path), batched[1].image_names[1]))
    assert difference.max() <= 1, "image 2 of a job is the job's seed + 1 alone (inpainting drew it otherwise)"
    if mode == "inpaint":  # each job kept the half its own mask keeps (up to the blurred edge)
        original_red = np.asarray(Image.open(io.BytesIO(jobs[0].init_image.png)).convert("RGB")).astype(int)
        original_blue = np.asarray(Image.open(io.BytesIO(jobs[1].init_image.png)).convert("RGB")).astype(int)
        assert np.abs(red[:, 40:] - original_red[:, 40:]).max() == 0
        assert np.abs(blue[:, :24] - original_blue[:, :24]).max() == 0


def test_rows_of_one_call_must_be_of_one_mode(generator):
    picture = Image.new("RGB", (64, 64), "red")
    with pytest.raises(ValueError, match="one mode"):
        generator.generate("", rows=[ImageRow("a", "", 1), ImageRow("b", "", 2, picture)], num_inference_steps=2)


@pytest.mark.parametrize("scheduler", ["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc"])
def test_every_sampler_gives_the_solo_images_in_a_batch(generator, scheduler):
    """The batch of 4 runs with oneDNN and each image alone without (app/pipeline/cpu_speed.py): still within 1/255;
    euler_a draws each step's noise per row from the row's own generator."""
    prompts = ["a red circle", "a blue square", "a green lake", "a yellow sun"]
    together = generator.generate("", rows=[(prompt, "", seed) for seed, prompt in enumerate(prompts)],
                                  num_inference_steps=6, scheduler=scheduler)
    for seed, (prompt, batched) in enumerate(zip(prompts, together)):
        alone = generator.generate(prompt, num_inference_steps=6, seed=seed, scheduler=scheduler)[0]
        difference = np.abs(np.asarray(alone, int) - np.asarray(batched, int))
        assert difference.max() <= 1, f"{scheduler}, {prompt!r}: off by {difference.max()}/255"
