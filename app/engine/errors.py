"""What the engine's public methods raise; each face turns them into its own answer (HTTP status, a /ws
error message, a notification in the studio)."""
from __future__ import annotations

from ..pipeline.sources import ModelUnavailable

__all__ = ["InvalidRequest", "JobAlreadyFinished", "JobNotFound", "ModelBusy", "ModelUnavailable", "QueueFull"]


class JobNotFound(LookupError):
    pass


class InvalidRequest(ValueError):
    """The request is well-formed but this model cannot do it; `problems` are (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class QueueFull(Exception):
    pass


class QueueUnavailable(QueueFull):
    """The job queue (Redis) cannot be reached: REST answers 503; faces that know only QueueFull still say why."""


class JobAlreadyFinished(Exception):
    pass


class ModelBusy(Exception):
    """A model switch was asked for while another model is still loading."""
