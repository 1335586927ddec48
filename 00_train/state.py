"""Training-state helpers for exact resume and clean interruption: RNG states as tensors/primitives
(so base_state.pt loads with weights_only=True), the git commit for checkpoint meta, Ctrl-C handling."""
from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate((3, tuple(s["python"]), None))
    np.random.set_state(("MT19937", s["numpy"].numpy().astype(np.uint32), s["numpy_pos"]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class StopFlag:
    """Ctrl-C / SIGINT asks to stop: the current step finishes, then a checkpoint is saved."""

    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.stop:  # a second Ctrl-C aborts without saving
            raise KeyboardInterrupt
        self.stop = True
        tqdm.write("interrupted: saving a checkpoint after this step (Ctrl-C again to abort)")
