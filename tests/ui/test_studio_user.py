"""The studio's page logic with NiceGUI's simulated `User` (no browser): each test runs the real engine
with the tiny model behind the real page, so a broken binding, hook or handler fails here."""
from __future__ import annotations

from typing import Any

from nicegui import ui
from nicegui.testing.user import User

from app.protocol import GenerateRequest
from components.prompt_form import PROMPT_MISSING, SEED_MISSING

from .conftest import engine

JOB_TIMEOUT_RETRIES = 600  # should_see polls every 0.1 s: up to a minute for a job on a busy CPU


def element(user: User, marker: str) -> Any:
    found = user.find(marker=marker).elements
    assert len(found) == 1, f"expected one element marked {marker!r}, found {len(found)}"
    return next(iter(found))


async def open_studio(user: User) -> None:
    """Open `/` and wait until the header says the model is ready."""
    await user.open("/")
    await user.should_see(marker="model-state", content="Ready", retries=JOB_TIMEOUT_RETRIES)
    await user.should_see(marker="workers-summary", content="1 worker, ", retries=1)
    await user.should_see("tiny", retries=1)  # the model's name (the tiny test model's folder)


def card_of(user: User, prompt: str) -> str:
    """The marker of the job card that shows `prompt`: a card is found the way an artist finds it."""
    for label in user.find(kind=ui.label, content=prompt).elements:
        node: ui.element | None = label
        while node is not None:
            markers = [marker for marker in node._markers if marker.startswith("job-")]
            if markers:
                return markers[0]
            node = node.parent_slot.parent if node.parent_slot is not None else None
    raise AssertionError(f"no job card shows {prompt!r}")


async def fill_and_generate(user: User, prompt: str, steps: int = 10, images: int = 1) -> str:
    """Fill the form like an artist would, press Generate, and return the marker of the card that appears."""
    element(user, "prompt").set_value(prompt)
    element(user, "steps").set_value(steps)
    element(user, "num-images").set_value(images)
    user.find(marker="generate").click()
    await user.should_see(kind=ui.label, content=prompt, retries=20)  # its card, in the job list
    return card_of(user, prompt)


async def test_generate_shows_progress_to_100_percent_then_the_images(user: User) -> None:
    await open_studio(user)
    card = await fill_and_generate(user, "a lighthouse at dusk", steps=10)
    with user.scope(marker=card):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
        await user.should_see("step 10/10")
        await user.should_see("on local-1")  # where it ran
        assert element(user, "progress").value == 1.0
        image = element(user, "result-image")
    assert image.source.startswith("/images/")
    await user.should_see("1 image", retries=20)  # the gallery refreshed itself
    assert {item.source for item in user.find(marker="gallery-thumb").elements} == {image.source}


async def test_the_form_stays_usable_and_jobs_queue_and_cancel(user: User) -> None:
    await open_studio(user)
    first = await fill_and_generate(user, "a long job", steps=100, images=4)  # many seconds, even on a fast box
    with user.scope(marker=first):
        await user.should_see("Generating", retries=JOB_TIMEOUT_RETRIES)
    second = await fill_and_generate(user, "a queued job", steps=10)
    with user.scope(marker=second):
        await user.should_see("Queued", retries=20)
        await user.should_see("next in line")
        user.find(marker="cancel").click()
        await user.should_see("Cancelled", retries=20)
    with user.scope(marker=first):
        user.find(marker="cancel").click()
        await user.should_see("Cancelled", retries=JOB_TIMEOUT_RETRIES)


async def test_use_these_settings_puts_prompt_seed_and_steps_back(user: User) -> None:
    await open_studio(user)
    element(user, "seed-mode").set_value("fixed")
    element(user, "seed").set_value(4242)
    element(user, "negative-prompt").set_value("blurry")
    sampler = element(user, "scheduler")
    assert "euler" in sampler.options, "the sampler list follows the loaded model"
    sampler.set_value("euler")
    card = await fill_and_generate(user, "a red fox in snow", steps=12)
    with user.scope(marker=card):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
    element(user, "prompt").set_value("something else")
    element(user, "seed-mode").set_value("random")
    element(user, "steps").set_value(50)
    element(user, "scheduler").set_value("default")
    await user.should_see(marker="gallery-thumb", retries=20)
    user.find(marker="gallery-thumb").click()
    with user.scope(marker="image-dialog"):
        await user.should_see("a red fox in snow")
        await user.should_see("4242")
        await user.should_see("64 × 64")
        await user.should_see("euler")
        user.find(marker="use-settings").click()
    assert element(user, "prompt").value == "a red fox in snow"
    assert element(user, "negative-prompt").value == "blurry"
    assert element(user, "seed").value == 4242
    assert element(user, "seed-mode").value == "fixed"
    assert element(user, "steps").value == 12
    assert element(user, "scheduler").value == "euler"
    await user.should_see("Settings copied into the form")


async def test_validation_messages_say_what_to_fix(user: User) -> None:
    await open_studio(user)
    user.find(marker="generate").click()
    await user.should_see(PROMPT_MISSING)
    element(user, "prompt").set_value("x" * 2001)
    user.find(marker="generate").click()
    await user.should_see("Prompt: String should have at most 2000 characters")
    element(user, "prompt").set_value("a fixed seed without a seed")
    element(user, "seed-mode").set_value("fixed")
    element(user, "seed").set_value(None)
    user.find(marker="generate").click()
    await user.should_see(SEED_MISSING)
    await user.should_see("Nothing running. Write a prompt and press Generate.")  # no job card: nothing queued


async def test_jobs_from_api_clients_appear_live_with_previews_and_a_reload_shows_them_again(user: User) -> None:
    await open_studio(user)
    session_id, _ = engine().submit(GenerateRequest(prompt="from an API client", num_inference_steps=60))
    await user.should_see(kind=ui.label, content="from an API client", retries=20)
    card = card_of(user, "from an API client")
    with user.scope(marker=card):
        await user.should_see("Generating", retries=JOB_TIMEOUT_RETRIES)
        await user.should_see(marker="preview", retries=JOB_TIMEOUT_RETRIES)  # the live preview, by URL
        assert element(user, "preview").source.startswith(f"/api/jobs/{session_id}/preview")
    await user.open("/")  # a reload builds the page from the engine: the running job is there again
    with user.scope(marker=card_of(user, "from an API client")):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)
        assert element(user, "progress").value == 1.0
    await user.should_see("1 image", retries=20)


async def test_dice_fixes_a_random_seed_and_sizes_come_from_the_model(user: User) -> None:
    await open_studio(user)
    user.find(marker="dice").click()
    assert element(user, "seed-mode").value == "fixed"
    assert isinstance(element(user, "seed").value, (int, float))
    size = element(user, "size")
    assert isinstance(size, ui.select)
    limits = engine().size_limits
    for key in size.options:
        width, height = (int(side) for side in key.split("x"))
        assert not limits.problems(width, height), f"preset {key} is not valid for the model"
    assert size.value == f"{limits.default_width}x{limits.default_height}"


async def test_a_failed_job_says_why_and_the_header_follows_the_model(user: User) -> None:
    await open_studio(user)
    running = await fill_and_generate(user, "keeps running", steps=100, images=4)
    with user.scope(marker=running):
        await user.should_see("Generating", retries=JOB_TIMEOUT_RETRIES)
    waiting = await fill_and_generate(user, "waits in the queue", steps=10)
    engine().switch_model(engine().settings.model.base_model)  # waiting jobs fail, with a reason
    await user.should_see(marker="model-state", content="Loading model…", retries=20)
    with user.scope(marker=waiting):
        await user.should_see("Failed", retries=20)
        await user.should_see("submit it again", retries=1)  # the engine's reason, readable in the card
    # The running job finishes on the previous model (or is cancelled); then the new model loads.
    await user.should_see(marker="model-state", content="Ready", retries=JOB_TIMEOUT_RETRIES)
    with user.scope(marker=running):
        await user.should_see("Done", retries=JOB_TIMEOUT_RETRIES)


async def test_gallery_puts_a_new_image_on_top_without_rebuilding_the_page(user: User) -> None:
    await open_studio(user)
    await fill_and_generate(user, "the first picture", steps=2)
    await user.should_see("1 image", retries=JOB_TIMEOUT_RETRIES)
    first_thumbnail = element(user, "gallery-thumb")
    await fill_and_generate(user, "the second picture", steps=2)
    await user.should_see("2 images", retries=JOB_TIMEOUT_RETRIES)
    shown = list(element(user, "gallery"))
    assert [thumbnail.props["alt"] for thumbnail in shown] == ["the second picture", "the first picture"], "newest first"
    assert shown[1] is first_thumbnail, "the page was rebuilt instead of the new image put on top"
