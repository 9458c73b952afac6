"""Remote workers over Redis (`queue.backend: redis`): the server's side. Keys and messages: app/remote/wire.py.

The server keeps the one fair queue (app/engine/queue.py) and stays the single writer of SQLite and the
images folder. When a remote worker holding a job's model is free, the dispatcher takes that job from the
queue (as a local worker would) and adds it to the model's Redis Stream; a worker reads it there. What the
workers report comes back on the events stream and goes through the journal like a local worker's
messages; a job's stream entry is acknowledged only after its outcome is stored. Events are read in a
consumer group, so those sent while the server was down are handled once it is back.

Redis unreachable: `available` turns false (submissions answer 503) and every loop retries until it is back.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..config import Settings
from ..pipeline.values import SizeLimits, display_name
from ..protocol import TERMINAL_STATUSES, WorkerView
from ..remote.wire import (
    CANCEL_CHANNEL,
    CANCELLED,
    EVENTS,
    PREFIX,
    SERVER_GROUP,
    WORKER_GROUP,
    WORKERS,
    RemoteJob,
    WorkerEvent,
    pack,
    unpack,
)
from .inputs import InputProblem, InputStore
from .journal import JobJournal
from .loras import LoraLibrary
from .queue import JobQueue, QueuedJob
from .specs import job_spec
from .store import Store

log = logging.getLogger(__name__)
DISPATCHED = PREFIX + "dispatched"  # session id -> "<stream> <entry>" until the outcome is stored


class RemoteWorkers:
    def __init__(
        self, settings: Settings, store: Store, journal: JobJournal, queue: JobQueue, images_dir: Path,
        inputs: InputStore, loras: LoraLibrary, size_limits: Callable[[], SizeLimits], current_model: Callable[[], str],
    ) -> None:
        self.settings = settings
        self.url = settings.queue.redis_url or ""
        self.redis = aioredis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)
        self.store, self.journal, self.queue = store, journal, queue
        self.images_dir, self.inputs, self.loras = images_dir, inputs, loras
        self.size_limits, self.current_model = size_limits, current_model
        self.timeout = settings.queue.heartbeat_timeout
        self.available = False
        self.problem = "not connected to Redis yet"
        self.workers: dict[str, WorkerView] = {}
        self._raw: dict[str, bytes] = {}  # worker name -> its registry entry as last read
        self._changed_at: dict[str, float] = {}  # ... and when that entry last changed (monotonic)
        self.dispatched: dict[str, tuple[str, str]] = {}  # session -> (stream, entry), until its outcome is stored
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> set[str]:
        """Connect (once, briefly) and start the loops; returns the jobs Redis holds (not to queue again)."""
        try:
            await self._ensure_events_group()
            held = await self.redis.hgetall(DISPATCHED)
            self.dispatched = {key.decode(): tuple(value.decode().split(" ", 1)) for key, value in held.items()}
            self._up()
        except RedisError as error:
            self._down(error)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(coroutine) for coroutine in (
            self._dispatch_forever(), self._read_events_forever(), self._watch_workers_forever())]
        return set(self.dispatched)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.redis.aclose()

    def _up(self) -> None:
        if not self.available:
            log.info("Redis at %s reachable", self.url)
        self.available, self.problem = True, ""
        self.queue.notify()

    def _down(self, error: Exception) -> None:
        if self.available or not self.problem.startswith("the job queue"):
            log.warning("Redis at %s unreachable: %s", self.url, error)
        self.available = False
        for view in self.workers.values():
            view.state = "gone"  # not seen while Redis is away
        self.problem = f"the job queue (Redis at {self.url}) is unreachable: {error}; try again when it is back"

    async def _ensure_events_group(self) -> None:
        try:
            await self.redis.xgroup_create(EVENTS, SERVER_GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    # -- the workers ----------------------------------------------------------------------------

    async def _watch_workers_forever(self) -> None:
        while True:
            try:
                await self.redis.ping()
                found = await self.redis.hgetall(WORKERS)
                self._up()
            except RedisError as error:
                self._down(error)
                await asyncio.sleep(0.5)
                continue
            workers = {}
            for raw in found.values():
                view = WorkerView.model_validate_json(raw)
                workers[view.name] = self._judge(view, raw)
            if workers != self.workers:
                self.workers = workers
                self.queue.notify()  # a worker came, went, or became free
            await asyncio.sleep(0.2)

    def _judge(self, view: WorkerView, raw: bytes) -> WorkerView:
        """Gone when its entry has not changed for `heartbeat_timeout` (by this server's clock: the
        worker's own clock may be set differently)."""
        now = time.monotonic()
        if view.name not in self._raw:  # first seen (a restart): trust the age it says it has
            age = (datetime.now(timezone.utc) - view.last_seen).total_seconds()
            self._raw[view.name], self._changed_at[view.name] = raw, now - max(age, 0.0)
        elif self._raw[view.name] != raw:
            self._raw[view.name], self._changed_at[view.name] = raw, now
        if now - self._changed_at[view.name] > self.timeout:
            view.state = "gone"
        return view

    def views(self) -> list[WorkerView]:
        return list(self.workers.values())

    def _free_for(self, model_name: str) -> int:
        idle = sum(view.state == "idle" and view.model == model_name for view in self.workers.values())
        waiting = sum(stream.endswith(":" + model_name) and not self._started(session_id)
                      for session_id, (stream, _) in self.dispatched.items())
        return idle - waiting

    def _started(self, session_id: str) -> bool:
        record = self.store.get_job(session_id)
        return record is not None and record.status != "queued"

    # -- handing jobs out -----------------------------------------------------------------------

    def _model_name(self, job: QueuedJob) -> str:
        return display_name(job.model or self.current_model())

    def _accepts(self, job: QueuedJob) -> bool:
        return self.available and self._free_for(self._model_name(job)) > 0

    async def _dispatch_forever(self) -> None:
        while True:
            taken = await self.queue.take(self._accepts)
            record = self.store.get_job(taken.session_id)
            if record is None or record.status != "queued":
                continue
            try:
                spec = job_spec(record, self.size_limits(), self.settings.previews, "", self.inputs, self.loras)
            except InputProblem as problem:
                self.journal.failed(record.id, str(problem))
                continue
            stream = f"{PREFIX}jobs:{self._model_name(taken)}"
            try:
                job = RemoteJob(spec, self.settings.queue.max_attempts)
                entry = (await self.redis.xadd(stream, {"job": pack(job)})).decode()
                await self.redis.hset(DISPATCHED, record.id, f"{stream} {entry}")
            except RedisError as error:
                self._down(error)
                self.queue.put(record.id, client=record.client, model=taken.model, force=True)
                continue
            self.dispatched[record.id] = (stream, entry)
            self._announce_positions()

    def _announce_positions(self) -> None:
        for position, waiting_id in enumerate(self.queue.waiting(), start=1):
            self.journal.queued(waiting_id, position)

    def cancel(self, session_id: str) -> bool:
        """Ask the worker running (or about to run) `session_id` to stop; False when no worker has it."""
        if session_id not in self.dispatched:
            return False
        asyncio.get_running_loop().create_task(self._send_cancel(session_id))
        return True

    async def _send_cancel(self, session_id: str) -> None:
        try:
            await self.redis.sadd(CANCELLED, session_id)
            await self.redis.expire(CANCELLED, 86_400)
            await self.redis.publish(CANCEL_CHANNEL, session_id)
        except RedisError as error:
            self._down(error)

    # -- what the workers report ----------------------------------------------------------------

    async def _read_events_forever(self) -> None:
        backlog = True  # first what was delivered before a restart and never acknowledged
        while True:
            try:
                await self._ensure_events_group()
                read = await self.redis.xreadgroup(
                    SERVER_GROUP, "server", {EVENTS: "0" if backlog else ">"}, count=100, block=1000
                )
            except RedisError as error:
                self._down(error)
                await asyncio.sleep(0.5)
                continue
            messages = read[0][1] if read else []
            if backlog and not messages:
                backlog = False
            for message_id, fields in messages:
                try:
                    await self._handle(unpack(fields[b"event"]))
                    await self.redis.xack(EVENTS, SERVER_GROUP, message_id)
                except RedisError as error:
                    self._down(error)
                    break
                except Exception:
                    log.exception("handling a worker's event failed")
                    await self.redis.xack(EVENTS, SERVER_GROUP, message_id)

    async def _handle(self, event: WorkerEvent) -> None:
        record = self.store.get_job(event.session_id)
        if record is None or record.status in TERMINAL_STATUSES:
            if event.kind in ("finished", "failed", "cancelled", "released"):
                await self._acknowledge(event)
            elif event.kind == "started" and record is not None:
                await self._send_cancel(event.session_id)  # cancelled while it waited in the stream
            return
        data = event.data
        current = record.status == "running" and record.worker == event.worker
        live_entry = self.dispatched.get(record.id, ("", ""))[1] == event.entry  # (not a stale one)
        if event.kind == "started" and not current:  # (read again after a restart: already counted)
            self.journal.started(record.id, data["seed"], data["total_steps"], data["model"], event.worker)
        elif event.kind == "step" and current:
            self.journal.progressed(record.id, data["step"], data["total_steps"], data["eta"])
        elif event.kind == "preview" and current:
            self.journal.previewed(record.id, data["step"], data["jpeg"], data["width"], data["height"])
        elif event.kind == "finished" and (current or live_entry):
            names = [name for name, _ in data["images"]]
            await asyncio.to_thread(self._write_images, data["images"])
            self.journal.completed(record.id, names, data["metadata"])
            await self._acknowledge(event)
        elif event.kind in ("failed", "cancelled") and (current or live_entry):  # e.g. out of attempts
            if event.kind == "failed":
                self.journal.failed(record.id, data["error"])
            else:
                self.journal.cancelled(record.id)
            await self._acknowledge(event)
        elif event.kind == "released" and current:
            await self._acknowledge(event)
            self.store.requeue(record.id, refund_attempt=True)
            self.journal.queued(record.id, self.queue.put(record.id, client=record.client, force=True))

    def _write_images(self, images: list[tuple[str, bytes]]) -> None:
        for name, png in images:
            target = self.images_dir / Path(name).name
            partial = target.with_suffix(".part")
            partial.write_bytes(png)
            partial.replace(target)

    async def _acknowledge(self, event: WorkerEvent) -> None:
        """The outcome is stored: the job's stream entry is done with."""
        await self.redis.xack(event.stream, WORKER_GROUP, event.entry)
        await self.redis.xdel(event.stream, event.entry)
        await self.redis.hdel(DISPATCHED, event.session_id)
        self.dispatched.pop(event.session_id, None)
        self.queue.notify()
