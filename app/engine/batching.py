"""Dynamic batching: which waiting jobs run together with the next one, as one pipeline call.

Jobs can share a run when they ask for the same model, size, steps, scheduler, guidance, LoRAs (names and
weights), whether they have a negative prompt, and mode (text-to-image, image-to-image, inpainting) with
the same strength and mask blur; prompts, negative prompts, seeds, image counts, input images and masks
may differ (each image is its own row of the batch, app/pipeline/batch_run.py). Batching is for the local
generation process; a remote worker may run batch size 1.

Gathering: when the previous run was a batch (its clients are sending their next jobs as they hear of
its end), the worker waits a little before it starts the next run, while jobs keep arriving: until
`max_batch` wait, or as many as ran last time wait and no more arrived for a quiet gap
(`GATHER_QUIET_SHARE` of the previous run's time, at least `GATHER_QUIET_SECONDS`); at most
`GATHER_SHARE` of it (and `GATHER_MAX_SECONDS`). Never after a
single job's run: one client alone never waits.

Order and fairness: the job the queue hands out next (the head) always runs now, whatever it is; the
waiting jobs are scanned in the queue's order and compatible ones join it, up to `queue.max_batch`. A
waiting job that cannot share is passed over at most once: once passed, no job behind it joins a batch
before it has run, so a batch makes no job wait longer than it would alone by more than one run.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Mapping, Sequence

from ..pipeline.values import SizeLimits, mode_of
from .queue import JobQueue
from .store import JobRecord, Store

BatchKey = Hashable

GATHER_SHARE = 0.1  # of the previous run's time, at most, waited for the jobs of the next batch to arrive
GATHER_MAX_SECONDS = 1.0
GATHER_QUIET_SHARE = 0.02  # ... and it stops once no job arrived for this share of it (or GATHER_QUIET_SECONDS)
GATHER_QUIET_SECONDS = 0.02
GATHER_POLL_SECONDS = 0.005
SCAN_PER_SLOT = 8  # waiting jobs looked at per batch slot (a long queue is not read in full every run)


def batch_key(record: JobRecord, size: SizeLimits) -> BatchKey:
    """What a job must share with others to run with them."""
    request = record.request
    mode = mode_of(request.init_image is not None, request.mask_image is not None)
    loras = tuple(sorted((lora.name, lora.weight) for lora in request.loras))
    return (
        record.model,
        request.width or size.default_width,  # an input's job has its size filled in when it is queued
        request.height or size.default_height,
        request.num_inference_steps,
        request.scheduler,
        request.guidance_scale,
        bool(request.negative_prompt),  # an empty one is encoded differently by some families (SDXL)
        loras,
        mode,
        request.strength if mode != "txt2img" else None,
        request.mask_blur if mode == "inpaint" else None,
    )


class BatchPicker:
    """Chooses the jobs of the next run (pure: session ids and keys in, session ids out)."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.passed_over: set[str] = set()  # waiting jobs a batch already went past once

    def pick(
        self,
        head: str,
        head_key: BatchKey | None,
        waiting: Sequence[tuple[str, BatchKey | None]],
        in_order: Mapping[str, object] | None = None,
    ) -> list[str]:
        """`head` plus the compatible jobs of `waiting` (in the queue's order) that may join it. Jobs with
        the same `in_order` group (an A1111 run's batch count) never share a run: they run one after another."""
        self.passed_over.discard(head)
        chosen = [head]
        if head_key is None or self.max_batch <= 1:
            return chosen
        in_order = in_order or {}
        groups = {in_order[head]} if head in in_order else set()
        skipped: list[str] = []
        for session_id, key in waiting:
            if len(chosen) >= self.max_batch:
                break
            group = in_order.get(session_id)
            if key == head_key and (group is None or group not in groups):
                if group is not None:
                    groups.add(group)
                chosen.append(session_id)
                self.passed_over.update(skipped)  # a job behind them joined: they were passed over
                skipped.clear()
            elif session_id in self.passed_over:
                break  # passed over once already: no job behind it goes first again
            else:
                skipped.append(session_id)
        still_waiting = {session_id for session_id, _ in waiting}
        self.passed_over &= still_waiting - set(chosen)
        return chosen


class BatchTaker:
    """Takes the jobs that join the next run out of the queue (the worker's hook)."""

    def __init__(
        self,
        max_batch: int,
        queue: JobQueue,
        store: Store,
        reject: Callable[[JobRecord], bool],
    ) -> None:
        self.picker = BatchPicker(max_batch)
        self.queue = queue
        self.store = store
        self.reject = reject  # True when a job must not run (it was failed with the reason)
        self.in_order: dict[str, object] = {}  # waiting jobs that run one after another -> their group
        self.last_run_jobs = 0
        self.last_run_seconds = 0.0

    def ran(self, jobs: int, seconds: float) -> None:
        """The worker ran `jobs` jobs as one call in `seconds`."""
        self.last_run_jobs, self.last_run_seconds = jobs, seconds

    async def gather(self) -> None:
        """A job waits: after a batch, give its clients' next jobs a moment to arrive (see the module)."""
        if self.last_run_jobs <= 1:
            return
        now = time.perf_counter()
        deadline = now + min(GATHER_SHARE * self.last_run_seconds, GATHER_MAX_SECONDS)
        quiet_gap = max(GATHER_QUIET_SECONDS, GATHER_QUIET_SHARE * self.last_run_seconds)
        waiting, last_arrival = len(self.queue), now
        expected = min(self.last_run_jobs, self.picker.max_batch)  # as many as ran last time: wait for them
        while 0 < waiting < self.picker.max_batch and now < deadline and (
            waiting < expected or now < last_arrival + quiet_gap
        ):
            await asyncio.sleep(GATHER_POLL_SECONDS)
            now = time.perf_counter()
            if len(self.queue) > waiting:
                last_arrival = now
            waiting = len(self.queue)

    def run_in_order(self, session_ids: Sequence[str]) -> None:
        """These jobs never share a run (A1111's batch count: its iterations run one after another)."""
        group = object()
        for session_id in session_ids:
            self.in_order[session_id] = group

    def take(self, head: JobRecord, size: SizeLimits) -> list[JobRecord]:
        """`head` and the waiting jobs that run with it, removed from the queue (in the queue's order)."""
        head_key = batch_key(head, size)
        in_order = dict(self.in_order)
        queued = set(self.queue.waiting())
        self.in_order = {session_id: group for session_id, group in in_order.items() if session_id in queued}
        if head_key is None or self.picker.max_batch <= 1:
            return [head]
        records: dict[str, JobRecord] = {}
        waiting: list[tuple[str, BatchKey | None]] = []
        for session_id in self.queue.waiting()[: self.picker.max_batch * SCAN_PER_SLOT]:
            record = self.store.get_job(session_id)
            if record is None or record.status != "queued":
                continue
            records[session_id] = record
            waiting.append((session_id, batch_key(record, size)))
        batch = [head]
        for session_id in self.picker.pick(head.id, head_key, waiting, in_order)[1:]:
            self.in_order.pop(session_id, None)
            if self.queue.remove(session_id) and not self.reject(records[session_id]):
                batch.append(records[session_id])
        return batch
