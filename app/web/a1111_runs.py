"""AUTOMATIC1111 runs: one `txt2img` call is a run of `n_iter` jobs (one per iteration, `batch_size` images
each), queued together and followed on the bus. A1111's `progress`, `interrupt` and `skip` are answered
from here: they refer to the oldest unfinished run of the asking client, else to the oldest running job
(whoever submitted it: the studio, /api, another client).
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from ..engine import Engine, InvalidRequest, JobAlreadyFinished, JobNotFound, QueueFull
from ..engine.requests import PreparedRequest
from ..protocol import GenerateRequest, JobView, SessionEvent
from .a1111_models import ProgressResponse, ProgressState
from .followed_jobs import FollowedJob


@dataclass
class A1111Run:
    client: str
    requests: list[GenerateRequest]
    jobs: list[FollowedJob]
    timestamp: str = field(default_factory=lambda: time.strftime("%Y%m%d%H%M%S"))
    interrupted: bool = False
    skipped: bool = False

    @property
    def finished(self) -> bool:
        return all(job.ended for job in self.jobs)

    @property
    def current(self) -> int:
        """Index of the iteration running or next to run (the last one once all have ended)."""
        return next((index for index, job in enumerate(self.jobs) if not job.ended), len(self.jobs) - 1)

    async def wait(self) -> list[SessionEvent]:
        """Every iteration's terminal message, in order."""
        return [await job.wait() for job in self.jobs]

    def interrupt(self, engine: Engine) -> None:
        """Stop the run: its running iteration stops at its next step, the waiting ones are cancelled."""
        self.interrupted = True
        for job in self.jobs:
            if not job.ended:
                cancel_quietly(engine, job.session_id)

    def skip(self, engine: Engine) -> None:
        """Stop the running iteration only; the next ones still run (A1111's skip)."""
        job = self.jobs[self.current]
        if job.started and not job.ended:
            self.skipped = True
            cancel_quietly(engine, job.session_id)

    def progress(self, engine: Engine, with_image: bool) -> ProgressResponse:
        index = self.current
        job = self.jobs[index]
        count = len(self.jobs)
        fraction = job.step / job.total_steps if job.total_steps else 0.0
        eta = job.eta_seconds or 0.0
        if job.started and job.step and job.eta_seconds is not None:
            per_iteration = eta * job.total_steps / max(job.total_steps - job.step, 1)
            eta += per_iteration * (count - index - 1)
        state = ProgressState(
            skipped=self.skipped,
            interrupted=self.interrupted,
            job=f"Batch {index + 1} out of {count}",
            job_count=count,
            job_timestamp=self.timestamp,
            job_no=index,
            sampling_step=job.step,
            sampling_steps=job.total_steps or self.requests[index].num_inference_steps,
        )
        return ProgressResponse(
            progress=min(1.0, 0.01 + (index + fraction) / count),
            eta_relative=round(eta, 2),
            state=state,
            current_image=latest_preview(engine, job.session_id) if with_image else None,
            textinfo=_textinfo(engine, job),
        )


def _textinfo(engine: Engine, job: FollowedJob) -> str:
    if job.started:
        return f"Sampling step {job.step}/{job.total_steps}"
    try:
        position = engine.job_view(job.session_id).position
    except JobNotFound:
        position = None
    return f"Queued at position {position}" if position else "Queued"


def latest_preview(engine: Engine, session_id: str) -> str | None:
    preview = engine.preview(session_id)
    return base64.b64encode(preview.jpeg).decode("ascii") if preview is not None else None


def cancel_quietly(engine: Engine, session_id: str) -> None:
    """Cancel a job that may have ended meanwhile."""
    try:
        engine.cancel(session_id)
    except (JobAlreadyFinished, JobNotFound):
        pass


def running_job_progress(engine: Engine, view: JobView, with_image: bool) -> ProgressResponse:
    """Progress of a job that no A1111 run of the asking client owns (the oldest running one)."""
    fraction = view.step / view.total_steps if view.total_steps else 0.0
    state = ProgressState(
        job="Batch 1 out of 1",
        job_count=1,
        job_timestamp=(view.started_at or view.created_at).strftime("%Y%m%d%H%M%S"),
        sampling_step=view.step,
        sampling_steps=view.total_steps,
    )
    return ProgressResponse(
        progress=min(1.0, 0.01 + fraction),
        eta_relative=view.eta_seconds or 0.0,
        state=state,
        current_image=latest_preview(engine, view.session_id) if with_image else None,
        textinfo=f"Sampling step {view.step}/{view.total_steps}",
    )


LOADING_MODEL = ProgressResponse(
    progress=0.01, eta_relative=0.0, state=ProgressState(job="Loading model", job_count=1), textinfo="Loading model"
)
IDLE = ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState())


class A1111Runs:
    """The A1111 runs in progress, and the rule of which job an A1111 call refers to."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._runs: list[A1111Run] = []

    def start(
        self, client: str, requests: list[GenerateRequest], prepared: list[PreparedRequest] | None = None
    ) -> A1111Run:
        """Queue every iteration (`prepared`: the same requests with their input images already stored), or
        none (InvalidRequest, QueueFull: the ones already queued are cancelled)."""
        jobs: list[FollowedJob] = []
        try:
            for request in prepared or requests:
                session_id, _ = self.engine.submit(request, client=client)
                jobs.append(FollowedJob(self.engine, session_id))
        except (InvalidRequest, QueueFull):
            for job in jobs:
                cancel_quietly(self.engine, job.session_id)
                job.close()
            raise
        self.engine.run_in_order([job.session_id for job in jobs])  # A1111's batch count: one after another
        run = A1111Run(client, requests, jobs)
        self._runs.append(run)
        return run

    def forget(self, run: A1111Run) -> None:
        if run in self._runs:
            self._runs.remove(run)

    def of_client(self, client: str) -> A1111Run | None:
        """The client's oldest run that still has a job to finish."""
        return next((run for run in self._runs if run.client == client and not run.finished), None)

    def oldest_running(self) -> JobView | None:
        return next((view for view in self.engine.unfinished_jobs() if view.status == "running"), None)

    def progress(self, client: str, with_image: bool) -> ProgressResponse:
        run = self.of_client(client)
        if run is not None:
            if with_image:  # a client polling with images watches its run's previews (rendered from now on)
                for job in run.jobs:
                    self.engine.watch_previews(job.session_id, ("a1111 run", id(run)))
            return run.progress(self.engine, with_image)
        running = self.oldest_running()
        if running is not None:
            if with_image:
                self.engine.watch_previews(running.session_id, ("a1111 progress", client))
            return running_job_progress(self.engine, running, with_image)
        if self.engine.health().model.state == "loading":
            return LOADING_MODEL
        return IDLE

    def interrupt(self, client: str) -> None:
        run = self.of_client(client)
        if run is not None:
            run.interrupt(self.engine)
        elif (running := self.oldest_running()) is not None:
            cancel_quietly(self.engine, running.session_id)

    def skip(self, client: str) -> None:
        run = self.of_client(client)
        if run is not None:
            run.skip(self.engine)
        elif (running := self.oldest_running()) is not None:
            cancel_quietly(self.engine, running.session_id)
