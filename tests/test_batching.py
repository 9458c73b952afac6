"""Which waiting jobs join the next run (app/engine/batching.py): the queue's order is kept, the head
always runs, and a job that cannot share is passed over at most once (never held back by more than a run)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from app.engine.batching import BatchPicker, batch_key
from app.engine.store import JobRecord
from app.pipeline.values import SizeLimits
from app.protocol import GenerateRequest

SIZE = SizeLimits(64, 64, 32, 256, 4)


def record(**request) -> JobRecord:
    return JobRecord("id", "queued", GenerateRequest(prompt="p", **request), "tiny", datetime.now(timezone.utc))


def test_compatible_jobs_differ_only_in_prompt_negative_seed_and_image_count():
    base = batch_key(record(), SIZE)
    assert base == batch_key(record(seed=3, num_images=4, width=64), SIZE)
    assert batch_key(record(negative_prompt="dark"), SIZE) == batch_key(record(negative_prompt="blurry"), SIZE)
    for different in ({"width": 96}, {"num_inference_steps": 10}, {"scheduler": "euler"}, {"guidance_scale": 3},
                      {"negative_prompt": "dark"}):
        assert batch_key(record(**different), SIZE) != base, different
    assert batch_key(record(init_image="input.png"), SIZE) != base, "another mode"


def test_image_jobs_share_a_run_with_the_same_strength_and_mask_blur_whatever_their_inputs():
    img2img = batch_key(record(init_image="a.png", strength=0.5, mask_blur=4), SIZE)
    assert img2img == batch_key(record(init_image="b.png", strength=0.5, mask_blur=8, seed=9), SIZE), \
        "the blur matters only with a mask"
    assert img2img != batch_key(record(init_image="a.png", strength=0.6), SIZE)
    inpaint = batch_key(record(init_image="a.png", mask_image="m.png", strength=0.5), SIZE)
    assert inpaint != img2img
    assert inpaint == batch_key(record(init_image="b.png", mask_image="n.png", strength=0.5), SIZE)
    assert inpaint != batch_key(record(init_image="a.png", mask_image="m.png", strength=0.5, mask_blur=0), SIZE)


def test_the_head_runs_with_compatible_jobs_in_queue_order_up_to_max_batch():
    picker = BatchPicker(3)
    waiting = [("b", "A"), ("x", "B"), ("c", "A"), ("d", "A")]
    assert picker.pick("a", "A", waiting) == ["a", "b", "c"]
    assert BatchPicker(1).pick("a", "A", waiting) == ["a"], "max_batch 1: one job at a time, as before"
    assert BatchPicker(4).pick("a", None, waiting) == ["a"], "a job that cannot share runs alone"


def test_a_job_passed_over_once_is_not_passed_again():
    picker = BatchPicker(4)
    # a1 and a2 (size A) pass k1 and x (other sizes).
    assert picker.pick("a1", "A", [("k1", "C"), ("x", "B"), ("a2", "A"), ("k2", "C")]) == ["a1", "a2"]
    # k1 heads the next run: k2 may not pass x, which was passed over already.
    assert picker.pick("k1", "C", [("x", "B"), ("k2", "C")]) == ["k1"]
    assert picker.pick("x", "B", [("k2", "C")]) == ["x"]
    assert picker.passed_over == set()


def test_a_job_not_passed_does_not_block_later_batches():
    picker = BatchPicker(4)
    assert picker.pick("a1", "A", [("a2", "A"), ("x", "B")]) == ["a1", "a2"]  # x was behind them: not passed
    assert picker.passed_over == set()


def test_jobs_that_run_in_order_never_share_a_run():
    """An A1111 run's batch count: its iterations run one after another (others' jobs may join them)."""
    picker = BatchPicker(4)
    run = object()
    in_order = {"i1": run, "i2": run, "i3": run}
    assert picker.pick("i1", "A", [("i2", "A"), ("other", "A"), ("i3", "A")], in_order) == ["i1", "other"]
    assert picker.pick("i2", "A", [("i3", "A")], in_order) == ["i2"]


async def test_after_a_batch_the_worker_waits_a_moment_for_its_clients_next_jobs_never_after_a_single_job():
    from app.engine.batching import BatchTaker
    from app.engine.queue import JobQueue

    queue = JobQueue(10)
    taker = BatchTaker(4, queue, store=None, reject=lambda _record: False)  # type: ignore[arg-type]
    queue.put("first")
    taker.ran(1, 60.0)  # a single job's run: no wait, even a long one
    await asyncio.wait_for(taker.gather(), timeout=1)

    taker.ran(3, 2.0)  # after a batch of 3 in 2 s: wait while jobs keep coming (up to 0.2 s)
    gathering = asyncio.ensure_future(taker.gather())
    await asyncio.sleep(0)
    assert not gathering.done()
    queue.put("second")
    queue.put("third")
    queue.put("fourth")
    await asyncio.wait_for(gathering, timeout=1)  # max_batch (4) jobs wait: it starts at once
    queue.remove("fourth")
    await asyncio.wait_for(taker.gather(), timeout=1)  # no more come: it stops after a quiet gap
