"""Live previews off the denoising loop's critical path, for latents on a CUDA device.

On a GPU a preview made in the step callback stalls the loop: its `.cpu()` waits for every kernel queued
so far, and the decode (TAESD) queues more work in front of the next step (docs/models.md measured −33 %
steps/s on an H200). Here the step callback only queues a copy of the job's first row on a side CUDA
stream (after the step's kernels, without waiting for them) and hands it to a thread, which renders
and encodes it there, on that stream, and delivers it. While one preview is still in flight, a step
gets none (it is skipped, counted): previews never queue up behind the loop.

On the CPU previews stay as they were (made in the callback): there is no queue of device work to
overlap with, and the two threads would share the same cores.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Snapshot = TypeVar("Snapshot")


class OffPathPreviews(Generic[Snapshot]):
    """At most one preview in flight, made on a thread of its own: `offer` takes a snapshot on the calling
    thread (cheap: it only queues work) and returns at once; `render(snapshot)` runs on the thread and its
    result goes to `deliver(step, result)`. An offer while the previous preview is in flight is skipped."""

    def __init__(self, render: Callable[[Snapshot], Any], deliver: Callable[[int, Any], None]) -> None:
        self.render = render
        self.deliver = deliver
        self.skipped = 0  # steps that got no preview because the previous one was still in flight
        self._idle = threading.Event()
        self._idle.set()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def in_flight(self) -> bool:
        return not self._idle.is_set()

    def offer(self, step: int, snapshot: Callable[[], Snapshot]) -> bool:
        """Start a preview of this step unless one is in flight (then False: skipped)."""
        if not self._idle.is_set():
            self.skipped += 1
            return False
        self._idle.clear()
        try:
            taken = snapshot()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview")
            self._executor.submit(self._finish, step, taken)
        except BaseException:
            self._idle.set()
            raise
        return True

    def _finish(self, step: int, taken: Snapshot) -> None:
        try:
            result = self.render(taken)
            if result is not None:
                self.deliver(step, result)
        except Exception:  # a preview must never fail the job
            log.exception("an off-path preview failed")
        finally:
            self._idle.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Until no preview is in flight (True), or `timeout` passed (False)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """The job ended: a preview still in flight finishes on its own; no new one starts."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


class CudaSideStream:
    """The side stream previews run on, and the snapshot of a job's first latent row taken onto it."""

    def __init__(self, device: Any) -> None:
        import torch

        self.stream = torch.cuda.Stream(device=device)

    def snapshot(self, latents: Any) -> Any:
        """A copy of the first row, made on the side stream once the step's kernels are done (queued, not
        waited for); the main stream's allocator keeps `latents` until the side stream has read it."""
        import torch

        self.stream.wait_stream(torch.cuda.current_stream(latents.device))
        with torch.cuda.stream(self.stream):
            first = latents[:1].detach().clone()
        latents.record_stream(self.stream)
        return first

    def run(self, work: Callable[[], Any]) -> Any:
        """`work` with the side stream current (on the preview thread): its `.cpu()` waits for that stream only."""
        import torch

        with torch.cuda.stream(self.stream):
            return work()
