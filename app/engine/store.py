"""SQLite persistence of jobs and the gallery (WAL mode, one connection shared under a lock; the schema
and its versions are app/engine/migrations.py).

The store is the truth about a job; the event bus only carries what changes. It is safe to call from
any thread (the event loop, FastAPI's thread pool, a library user's own threads).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..pipeline.values import image_seed
from ..protocol import GenerateRequest, GenerationMetadata, JobStatus
from .migrations import migrate


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class JobRecord:
    id: str
    status: JobStatus
    request: GenerateRequest
    model: str
    created_at: datetime
    seed: int | None = None
    step: int = 0
    total_steps: int = 0
    attempts: int = 0
    error: str | None = None
    image_names: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_seq: int = 0
    metadata: GenerationMetadata | None = None
    eta_seconds: float | None = None  # at the latest step, while running
    client: str = ""  # who submitted it (see Engine.submit)
    worker: str = ""  # the name of the worker it runs (or ran) on


@dataclass(frozen=True)
class GalleryRecord:
    name: str
    session_id: str
    index: int
    metadata: GenerationMetadata


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        status=row["status"],
        request=GenerateRequest.model_validate_json(row["request"]),
        model=row["model"],
        created_at=datetime.fromisoformat(row["created_at"]),
        seed=row["seed"],
        step=row["step"],
        total_steps=row["total_steps"],
        attempts=row["attempts"],
        error=row["error"],
        image_names=json.loads(row["image_names"]),
        started_at=_time(row["started_at"]),
        finished_at=_time(row["finished_at"]),
        last_seq=row["last_seq"],
        metadata=GenerationMetadata.model_validate_json(row["metadata"]) if row["metadata"] else None,
        eta_seconds=row["eta_seconds"],
        client=row["client"],
        worker=row["worker"],
    )


class Store:
    def __init__(self, database: Path) -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, parameters)

    # -- jobs -----------------------------------------------------------------------------------

    def create_job(self, job_id: str, request: GenerateRequest, model: str, client: str = "") -> JobRecord:
        record = JobRecord(
            id=job_id, status="queued", request=request, model=model, created_at=utcnow(), client=client
        )
        self._execute(
            "INSERT INTO jobs (id, status, request, model, created_at, client) VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, record.status, request.model_dump_json(), model, record.created_at.isoformat(), client),
        )
        return record

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def list_jobs(self, status: str | None, offset: int, limit: int) -> tuple[list[JobRecord], int]:
        where, parameters = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", parameters).fetchone()[0]
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (*parameters, limit, offset),
            ).fetchall()
        return [_record(row) for row in rows], total

    def queued_count(self, client: str) -> int:
        """How many of `client`'s jobs wait in the queue (queue.max_pending_per_client)."""
        sql = "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND client = ?"  # the status index finds them
        return self._execute(sql, (client,)).fetchone()[0]

    def unfinished_jobs(self) -> list[JobRecord]:
        rows = self._execute(
            "SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, rowid"
        ).fetchall()
        return [_record(row) for row in rows]

    def mark_running(self, job_id: str, seed: int, total_steps: int, worker: str = "") -> None:
        self._execute(
            "UPDATE jobs SET status = 'running', seed = ?, step = 0, total_steps = ?, eta_seconds = NULL,"
            " attempts = attempts + 1, started_at = ?, worker = ? WHERE id = ?",
            (seed, total_steps, utcnow().isoformat(), worker, job_id),
        )

    def update_step(self, job_id: str, step: int, eta_seconds: float | None) -> None:
        self._execute("UPDATE jobs SET step = ?, eta_seconds = ? WHERE id = ?", (step, eta_seconds, job_id))

    def requeue(self, job_id: str, *, refund_attempt: bool = False) -> None:
        """Back to the queue; `refund_attempt` when the run was stopped by an orderly shut-down."""
        self._execute(
            "UPDATE jobs SET status = 'queued', step = 0, eta_seconds = NULL, attempts = MAX(attempts - ?, 0)"
            " WHERE id = ?",
            (1 if refund_attempt else 0, job_id),
        )

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        image_names: list[str] | None = None,
        metadata: GenerationMetadata | None = None,
    ) -> JobRecord | None:
        self._execute(
            "UPDATE jobs SET status = ?, error = ?, image_names = ?, metadata = ?, finished_at = ?, eta_seconds = NULL"
            " WHERE id = ?",
            (
                status,
                error,
                json.dumps(image_names or []),
                metadata.model_dump_json() if metadata else None,
                utcnow().isoformat(),
                job_id,
            ),
        )
        return self.get_job(job_id)

    # -- sequence numbers (events.SequenceStore) ------------------------------------------------

    def load_seq(self, session_id: str) -> int:
        row = self._execute("SELECT last_seq FROM jobs WHERE id = ?", (session_id,)).fetchone()
        return int(row[0]) if row else 0

    def save_seq(self, session_id: str, seq: int) -> None:
        self._execute("UPDATE jobs SET last_seq = ? WHERE id = ? AND last_seq < ?", (seq, session_id, seq))

    def save_seqs(self, seqs: dict[str, int]) -> None:
        """Many sessions' seqs in one transaction (the bus batches a loop iteration's messages)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "UPDATE jobs SET last_seq = ? WHERE id = ? AND last_seq < ?",
                    [(seq, session_id, seq) for session_id, seq in seqs.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- gallery --------------------------------------------------------------------------------

    def add_to_gallery(self, session_id: str, names: list[str], metadata: GenerationMetadata) -> None:
        created = metadata.created_at.isoformat()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for index, name in enumerate(names):
                    own_seed = metadata.model_copy(update={"seed": image_seed(metadata.seed, index)})
                    self._db.execute(
                        "INSERT OR REPLACE INTO gallery (name, session_id, idx, created_at, metadata)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (name, session_id, index, created, own_seed.model_dump_json()),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def gallery(self, offset: int, limit: int) -> tuple[list[GalleryRecord], int]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM gallery").fetchone()[0]
            rows = self._db.execute(
                "SELECT * FROM gallery ORDER BY created_at DESC, session_id, idx LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        records = [
            GalleryRecord(
                name=row["name"],
                session_id=row["session_id"],
                index=row["idx"],
                metadata=GenerationMetadata.model_validate_json(row["metadata"]),
            )
            for row in rows
        ]
        return records, total
