"""The engine: jobs are queued (queue.py), run by the worker (worker.py) on the model's generation
process (model_slot.py), stored (store.py, migrations.py) and told on the bus (events.py), every state
change through one journal (journal.py). `Engine` (service.py) is the one public face the REST routes,
/ws and the studio call; the engine imports none of them.
"""
from .errors import (
    InvalidRequest,
    JobAlreadyFinished,
    JobNotFound,
    ModelBusy,
    ModelUnavailable,
    QueueFull,
)
from .service import Engine

__all__ = ["Engine", "InvalidRequest", "JobAlreadyFinished", "JobNotFound", "ModelBusy", "ModelUnavailable", "QueueFull"]
