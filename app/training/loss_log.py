"""``loss.csv``: every training step's loss, learning rate and duration."""

from __future__ import annotations

import csv
from pathlib import Path

import torch


class LossLog:
    """``loss.csv``; losses stay on the device until a flush, so logging does not stall a GPU every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[tuple[str, int, torch.Tensor, float, float]] = []
        self.last_loss: float | None = None
        if not path.exists():
            path.write_text("phase,step,loss,lr,seconds\n")

    def write(self, phase: str, step: int, loss: torch.Tensor | float, lr: float, seconds: float) -> None:
        self.pending.append((phase, step, torch.as_tensor(loss).detach(), lr, seconds))
        if len(self.pending) >= 50:
            self.flush()

    def flush(self) -> float | None:
        """Write what is pending; the last loss written so far."""
        if not self.pending:
            return self.last_loss
        losses = torch.stack([loss.float().cpu() for _, _, loss, _, _ in self.pending]).tolist()
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            for (phase, step, _, lr, seconds), loss in zip(self.pending, losses):
                writer.writerow([phase, step, f"{loss:.5f}", f"{lr:.6f}", f"{seconds:.3f}"])
        self.pending.clear()
        self.last_loss = losses[-1]
        return self.last_loss
