"""Pretraining bookkeeping on top of train.common: peak FLOP/s for MFU, and the metrics log's rows."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .common import JsonlLogger, plot_losses

# dense bf16 tensor-core peak (FLOP/s) by device-name substring; unknown devices get no MFU
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), so a report's wall time includes imports."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def read_rows(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a crash
    return rows


def open_log(path: Path, resume_step: int | None) -> JsonlLogger:
    """A fresh log, or on resume the old one without rows past the resumed step (one trajectory)."""
    if resume_step is not None:
        kept = [r for r in read_rows(path) if r.get("step", 0) <= resume_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return JsonlLogger(path, append=resume_step is not None)


def plot_log(path: Path, png: Path, title: str) -> None:
    rows = read_rows(path)
    plot_losses({"train": [(r["step"], r["loss"]) for r in rows if "loss" in r],
                 "val": [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]}, png, title)
