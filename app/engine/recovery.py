"""After a restart or a crash of the server: the jobs the store holds unfinished go back to the queue."""
from __future__ import annotations

from .journal import JobJournal
from .queue import JobQueue
from .store import Store


def recover_unfinished_jobs(
    store: Store, queue: JobQueue, journal: JobJournal, max_attempts: int, held: frozenset[str] = frozenset()
) -> None:
    """Queued jobs stay queued, in their order; a job that was running runs again, until it has been
    started `max_attempts` times (a job that keeps crashing the server must not keep it down). Jobs in
    `held` are in Redis with remote workers (queue.backend redis): their outcome comes from there."""
    for record in store.unfinished_jobs():
        if record.id in held:
            continue
        if record.status == "running":
            if record.attempts >= max_attempts:
                journal.failed(
                    record.id,
                    f"interrupted by a server restart while running (started {record.attempts} times); not retried",
                )
                continue
            store.requeue(record.id)
        journal.queued(record.id, queue.put(record.id, client=record.client, force=True))
