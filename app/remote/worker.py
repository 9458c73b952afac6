"""`python -m app worker --redis URL`: a worker on another machine (no web server, no database).

It loads its model in a generation process (app/pipeline/client.py, as the server does), takes jobs for
that model from the Redis Stream (app/remote/wire.py), reports steps, previews and the finished PNG bytes
on the events stream, and stops a job when the server asks on the cancel channel. While it runs a job it
refreshes the job's pending entry (XCLAIM to itself), so the entry's idle time is its heartbeat: killed,
its entry goes idle and another worker takes the job over with XAUTOCLAIM after `heartbeat_timeout`.
On SIGTERM it stops its job at the next step and hands it back (a `released` event: the server queues it
again without counting an attempt), then exits.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..config import ModelSettings
from ..pipeline.client import PipelineProcess, PipelineStopped
from ..pipeline.messages import JobCancelled, JobFailed, ModelSpec, PreviewReady, StepDone
from ..pipeline.values import ModelOptions, denoising_steps
from ..protocol import WorkerView
from .wire import (
    CANCEL_CHANNEL,
    CANCELLED,
    EVENTS,
    EVENTS_MAXLEN,
    WORKER_GROUP,
    WORKERS,
    RemoteJob,
    WorkerEvent,
    job_stream,
    pack,
    unpack,
)

log = logging.getLogger("ai-artist.worker")


class RemoteWorker:
    def __init__(
        self,
        redis_url: str,
        model: ModelSettings,
        name: str,
        heartbeat_timeout: float,
        lora_dir: Path | None = None,
        device: str | None = None,
    ) -> None:
        self.redis = aioredis.from_url(redis_url)
        self.name = name
        self.host = socket.gethostname()
        self.heartbeat_timeout = heartbeat_timeout
        self.images_dir = Path(tempfile.mkdtemp(prefix="ai-artist-worker-"))
        spec = ModelSpec(
            model.base_model, device=device or model.device, dtype=model.dtype, cpu_threads=model.cpu_threads,
            options=ModelOptions(attention_slicing=model.attention_slicing, vae_tiling=model.vae_tiling,
                                 cpu_offload=model.cpu_offload, compile=model.compile),
            lora_dir=str(lora_dir) if lora_dir else None,
        )
        self.pipeline = PipelineProcess(spec)
        self.state = "loading"
        self.session_id: str | None = None
        self.entry: str | None = None
        self.jobs_done = 0
        self.stopping = asyncio.Event()
        self._outbox: asyncio.Queue[WorkerEvent] = asyncio.Queue()

    @property
    def stream(self) -> str:
        return job_stream(self.pipeline.model_name)

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        helpers = [loop.create_task(self._heartbeat()), loop.create_task(self._send_events()),
                   loop.create_task(self._listen_for_cancels())]
        try:
            await self.pipeline.load()
            self.state = "idle"
            await self._ensure_group()
            await self._tell_state()
            log.info("worker %s: %s loaded on %s; taking jobs from %s", self.name, self.pipeline.model_name,
                     self.pipeline.device, self.stream)
            while not self.stopping.is_set():
                taken = await self._next_job()
                if taken is None:
                    continue
                try:
                    await self._run(*taken)
                except RedisError as error:  # its entry stays pending: taken again (here or elsewhere) later
                    log.warning("worker %s: Redis went away while starting a job (%s)", self.name, error)
        finally:
            try:  # what was reported reaches Redis before the worker leaves (unless Redis is away)
                await asyncio.wait_for(self._outbox.join(), 10)
            except asyncio.TimeoutError:
                log.warning("worker %s: Redis unreachable; %d reports not sent", self.name, self._outbox.qsize())
            for task in helpers:
                task.cancel()
            self.state = "gone"
            try:
                await self.redis.hdel(WORKERS, self.name)
            except RedisError:
                pass
            await self.pipeline.close()
            await self.redis.aclose()

    async def _ensure_group(self) -> None:
        """The job stream's consumer group exists (waits for Redis to be reachable)."""
        while not self.stopping.is_set():
            try:
                await self.redis.xgroup_create(self.stream, WORKER_GROUP, id="0", mkstream=True)
                return
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
                return
            except RedisError as error:
                log.warning("worker %s: Redis unreachable (%s); retrying", self.name, error)
                await asyncio.wait([asyncio.ensure_future(self.stopping.wait())], timeout=1)

    def view(self) -> WorkerView:
        return WorkerView(
            id=f"{self.host}:{self.name}", name=self.name, host=self.host, device=self.pipeline.device,
            model=self.pipeline.model_name, state=self.state,  # type: ignore[arg-type]
            session_id=self.session_id, jobs_done=self.jobs_done, last_seen=datetime.now(timezone.utc),
        )

    async def _heartbeat(self) -> None:
        """Tell the server it lives, and keep the running job's entry fresh (its idle time is the heartbeat)."""
        while True:
            try:
                await self.redis.hset(WORKERS, self.name, self.view().model_dump_json())
                if self.entry is not None:
                    await self.redis.xclaim(self.stream, WORKER_GROUP, self.name, 0, [self.entry], justid=True)
            except RedisError as error:
                log.warning("worker %s: Redis unreachable (%s)", self.name, error)
            await asyncio.sleep(self.heartbeat_timeout / 4)

    # -- jobs -----------------------------------------------------------------------------------

    async def _next_job(self) -> tuple[str, RemoteJob] | None:
        """A job a dead worker left (idle past the heartbeat timeout), else the next new one."""
        try:
            idle_ms = int(self.heartbeat_timeout * 1000)
            _, claimed, *_ = await self.redis.xautoclaim(self.stream, WORKER_GROUP, self.name, idle_ms, count=1)
            if not claimed:
                read = await self.redis.xreadgroup(WORKER_GROUP, self.name, {self.stream: ">"}, count=1, block=1000)
                claimed = read[0][1] if read else []
        except RedisError as error:
            log.warning("worker %s: cannot read jobs (%s); retrying", self.name, error)
            await asyncio.wait([asyncio.ensure_future(self.stopping.wait())], timeout=1)
            return None
        if not claimed:
            return None
        entry, fields = claimed[0]
        return entry.decode(), unpack(fields[b"job"])

    def report(self, kind: str, session_id: str, entry: str, **data: Any) -> None:
        self._outbox.put_nowait(WorkerEvent(kind, session_id, self.name, self.stream, entry, data))

    async def _send_events(self) -> None:
        while True:
            event = await self._outbox.get()
            while True:
                try:
                    await self.redis.xadd(EVENTS, {"event": pack(event)}, maxlen=EVENTS_MAXLEN, approximate=True)
                    break
                except RedisError as error:
                    log.warning("worker %s: cannot report %s (%s); retrying", self.name, event.kind, error)
                    await asyncio.sleep(0.5)
            self._outbox.task_done()

    async def _listen_for_cancels(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CANCEL_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message" and message["data"].decode() == self.session_id:
                            self.pipeline.cancel(self.session_id)
            except RedisError:
                await asyncio.sleep(0.5)

    async def _attempt(self, entry: str) -> int:
        pending = await self.redis.xpending_range(self.stream, WORKER_GROUP, entry, entry, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _run(self, entry: str, job: RemoteJob) -> None:
        spec = replace(job.spec, images_dir=str(self.images_dir))
        session_id = spec.session_id
        attempt = await self._attempt(entry)
        if attempt > job.max_attempts:
            self.report("failed", session_id, entry, error=(
                f"the workers running it stopped {attempt - 1} times (queue.max_attempts {job.max_attempts}); "
                "not retried"))
            return
        if await self.redis.sismember(CANCELLED, session_id):
            self.report("cancelled", session_id, entry)
            return
        self.session_id, self.entry, self.state = session_id, entry, "busy"
        await self._tell_state()
        total = denoising_steps(spec.num_inference_steps, spec.strength if spec.init_image is not None else None)
        self.report("started", session_id, entry, seed=spec.seed, total_steps=total, model=self.pipeline.model_name,
                    attempt=attempt)
        started = time.perf_counter()

        def on_step(message: StepDone) -> None:
            elapsed = time.perf_counter() - started
            eta = round(elapsed / message.step * max(message.total_steps - message.step, 0), 2) if message.step else None
            self.report("step", session_id, entry, step=message.step, total_steps=message.total_steps, eta=eta,
                        at=message.at)  # timing (bench/workers.py): when the diffusion callback fired

        def on_preview(message: PreviewReady) -> None:
            self.report("preview", session_id, entry, step=message.step, jpeg=message.jpeg, width=message.width,
                        height=message.height)

        stop_watch = asyncio.ensure_future(self._cancel_on_stop(session_id))
        try:
            outcome = await self.pipeline.run(spec, on_step, on_preview)
        except PipelineStopped as error:  # the generation process died: the job fails, the worker leaves
            self.report("failed", session_id, entry, error=f"the worker {self.name} lost its generation process: {error}")
            self.stopping.set()
            return
        finally:
            stop_watch.cancel()
            self.session_id, self.entry, self.state = None, None, "idle"
        if isinstance(outcome, JobCancelled):
            self.report("released" if self.stopping.is_set() else "cancelled", session_id, entry)
        elif isinstance(outcome, JobFailed):
            self.report("failed", session_id, entry, error=outcome.error)
        else:
            images = []
            for name in outcome.image_names:
                path = self.images_dir / name
                images.append((name, path.read_bytes()))
                os.unlink(path)
            self.report("finished", session_id, entry, images=images, metadata=outcome.metadata)
        self.jobs_done += 1
        await self._tell_state()

    async def _tell_state(self) -> None:
        """At once, not at the next heartbeat: the server hands a free worker its next job sooner."""
        try:
            await self.redis.hset(WORKERS, self.name, self.view().model_dump_json())
        except RedisError:
            pass
    async def _cancel_on_stop(self, session_id: str) -> None:
        await self.stopping.wait()
        self.pipeline.cancel(session_id)
