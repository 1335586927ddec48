"""Small pieces every training loop shares (pretraining, SFT, agent SFT): the learning-rate
schedule, the JSONL log, and the PNG loss plot. One copy here so the stages cannot drift apart.
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup over warmup_steps to lr, then cosine decay to min_lr at max_steps (flat after)."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


class JsonlLogger:
    """Appends one JSON object per line; each line is flushed so a crash loses at most one record."""

    def __init__(self, path: str | Path, append: bool = False):
        """append=False starts a fresh file (a new run); True continues it (a resumed run)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            self.path.write_text("")

    def log(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def plot_losses(history: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "loss") -> Path:
    """history: {"train": [(step, loss), ...], "val": [...]} -> a PNG with one line per series."""
    import matplotlib
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in history.items():
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, label=name, marker="o" if len(points) < 30 else None, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
