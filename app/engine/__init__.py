"""The engine: jobs are queued (queue.py), run by the worker (worker.py) on the model's generation
process (model_slot.py), stored (store.py, migrations.py) and told on the bus (events.py), every state
change through one journal (journal.py). `Engine` (service.py) is the one public face the REST routes,
/ws and the studio call; the engine imports none of them. Input images are stored by inputs.py, LoRA
files read by loras.py, and a request checked against the model by requests.py.
"""
from .errors import (
    InvalidRequest,
    JobAlreadyFinished,
    JobNotFound,
    ModelBusy,
    ModelUnavailable,
    QueueFull,
    QueueUnavailable,
)
from .inputs import InputProblem, InputTooLarge
from .requests import PreparedRequest
from .service import Engine

__all__ = [
    "Engine", "InputProblem", "InputTooLarge", "InvalidRequest", "JobAlreadyFinished", "JobNotFound", "ModelBusy",
    "ModelUnavailable", "PreparedRequest", "QueueFull", "QueueUnavailable",
]
