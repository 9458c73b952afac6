"""Previews off the denoising loop's critical path (app/pipeline/preview_offload.py), checked on the CPU
with real tensors and a real thread: a step whose previous preview is still in flight gets none, the
next one after it has been delivered does, and a failing preview never reaches the loop."""
from __future__ import annotations

import queue
import threading

import torch

from app.pipeline.preview_offload import OffPathPreviews

TIMEOUT = 60


def test_a_step_gets_no_preview_while_the_previous_one_is_in_flight():
    release = threading.Event()
    delivered: queue.Queue[tuple[int, float]] = queue.Queue()
    caller = threading.get_ident()
    threads: list[int] = []

    def render(first: torch.Tensor) -> float:
        threads.append(threading.get_ident())
        assert release.wait(TIMEOUT)
        return float(first.sum())

    previews = OffPathPreviews(render, lambda step, result: delivered.put((step, result)))
    latents = torch.ones(3, 4, 8, 8)
    assert previews.offer(1, lambda: latents[:1].clone())  # returns at once: rendering waits for `release`
    assert previews.in_flight
    assert not previews.offer(2, lambda: latents[:1].clone())
    assert not previews.offer(3, lambda: latents[:1].clone())
    assert previews.skipped == 2
    release.set()
    assert delivered.get(timeout=TIMEOUT) == (1, 256.0)
    assert previews.wait_idle(TIMEOUT) and not previews.in_flight
    assert previews.offer(4, lambda: latents[1:2].mul(2))
    assert delivered.get(timeout=TIMEOUT) == (4, 512.0)
    assert threads and caller not in threads, "rendered on the preview thread, not the loop's"
    previews.close()


def test_a_failing_preview_is_logged_not_raised_and_the_next_one_runs():
    calls: list[int] = []
    delivered: queue.Queue[int] = queue.Queue()

    def render(step: int) -> int:
        calls.append(step)
        if step == 1:
            raise RuntimeError("decoder broke")
        return step

    previews = OffPathPreviews(render, lambda _step, result: delivered.put(result))
    assert previews.offer(1, lambda: 1)
    assert previews.wait_idle(TIMEOUT)
    assert previews.offer(2, lambda: 2)
    assert delivered.get(timeout=TIMEOUT) == 2
    assert calls == [1, 2]
    previews.close()
