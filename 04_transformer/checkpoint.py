"""Checkpoints: a directory with config.json, model.safetensors and meta.json (DESIGN.md).

Writes are atomic: everything goes into a temporary sibling directory that is renamed into place,
so a crash never leaves half a checkpoint under the real name. Loading checks each piece and names
what is wrong. Weights are safetensors only: nothing a user hands us is ever unpickled.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .model import GPT, GPTConfig

CONFIG, WEIGHTS, META = "config.json", "model.safetensors", "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, incomplete, corrupt or does not fit the model."""


def save_checkpoint(path: str | os.PathLike, model: GPT, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; the renamed checkpoint should not be
    try:
        (tmp / CONFIG).write_text(json.dumps(model.config.to_dict(), indent=2))
        # the tied head shares storage with wte: save it once, restore the tie on load
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file(state, str(tmp / WEIGHTS))
        meta = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})}
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
        if path.exists():  # replace: move the old one aside first so the swap is quick
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{what}: {path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what}: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what}: {path} should hold a JSON object")
    return data


def load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights: {path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"weights: {path} is truncated or not a safetensors file ({e})") from None


def check_state(model: GPT, state: dict[str, torch.Tensor], source: Path) -> None:
    """Same names and shapes as the model, or a CheckpointError listing the differences."""
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected) - {"lm_head.weight"})
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(s)}" for k, s in expected.items()
             if k in state and state[k].shape != s]
    if missing or extra or wrong:
        raise CheckpointError(f"{source} does not match its config: missing {missing[:5]}, "
                              f"unexpected {extra[:5]}, wrong shapes {wrong[:5]}")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    **config_overrides) -> tuple[GPT, dict]:
    """-> (model in eval mode, meta). config_overrides change run-time fields such as attn_backend."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    try:
        config = GPTConfig.from_dict({**read_json(path / CONFIG, "config"), **config_overrides})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"config: {path / CONFIG} is not a valid GPTConfig ({e})") from None
    meta = read_json(path / META, "meta")
    state = load_state(path / WEIGHTS)
    model = GPT(config)
    check_state(model, state, path / WEIGHTS)
    model.load_state_dict(state, strict=False)  # lm_head.weight is tied to wte
    return model.to(device).eval(), meta
