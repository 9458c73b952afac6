"""Running a batch of compatible jobs (chosen by app/engine/batching.py) on the generation process as one
pipeline call, on the server's side: each job keeps its own session. It is started, progresses, gets its
previews and ends on its own, through the journal, exactly as a job run alone does; a cancelled one ends
as soon as the process has dropped it (at its next step) while the others go on.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..pipeline.client import PipelineProcess, PipelineStopped
from ..pipeline.messages import JobOutcome, JobSpec
from ..pipeline.values import denoising_steps
from .inputs import InputProblem
from .store import JobRecord

if TYPE_CHECKING:
    from .worker import JobWorker

log = logging.getLogger(__name__)


async def run_batch(worker: JobWorker, records: list[JobRecord]) -> None:
    """Run `records` (taken from the queue, in its order) as one pipeline call; every job ends on its own."""
    pipeline: PipelineProcess = worker.model.pipeline
    jobs: list[JobSpec] = []
    for record in records:
        try:
            jobs.append(worker.job_spec(record, pipeline))
        except InputProblem as problem:
            worker.journal.failed(record.id, str(problem))
    if not jobs:
        return
    log.info("running %d jobs as one batch (%d images)", len(jobs), sum(job.num_images for job in jobs))
    worker.running_ids, worker._running_on = tuple(job.session_id for job in jobs), pipeline
    worker.not_running.clear()
    try:
        for job in jobs:
            worker.journal.started(job.session_id, job.seed, denoising_steps(job.num_inference_steps, None),
                                   pipeline.model_name, worker.name)
        try:
            outcomes = pipeline.run_batch([(job, *worker.job_callbacks(job.session_id)) for job in jobs])
        except PipelineStopped as error:
            for job in jobs:
                worker.journal.failed(job.session_id, f"{error}; the model is being loaded again, the next job will "
                                      "run on it")
            return
        worker.announce_positions()  # the waiting jobs moved up; told while the generation already runs
        await asyncio.gather(*(_end(worker, job.session_id, outcome) for job, outcome in zip(jobs, outcomes)))
    finally:
        worker.running_ids, worker._running_on = (), None
        worker.jobs_done += len(jobs)
        worker.last_seen = datetime.now(timezone.utc)
        worker.not_running.set()


async def _end(worker: JobWorker, session_id: str, outcome: asyncio.Future[JobOutcome]) -> None:
    """Record one job's end as soon as it comes (a cancelled job of a batch ends before the others)."""
    try:
        result = await outcome
    except PipelineStopped as error:
        worker.journal.failed(session_id, f"{error}; the model is being loaded again, the next job will run on it")
        return
    worker.running_ids = tuple(running for running in worker.running_ids if running != session_id)
    worker.record_outcome(session_id, result)
