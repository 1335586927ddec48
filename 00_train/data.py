"""Random training windows from memory-mapped token shards (written by train.prepare).

Sampling is a pure function of (seed, step): the windows of optimizer step s are drawn by
numpy.random.default_rng([seed, 0, s]), so resuming at step s needs no sampler state beyond s, and
with DDP every process draws the same global sample and takes its own slice of it. A single
process taking all slices in turn sees exactly the same windows (what makes DDP match it).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

INDEX = "index.json"


class DataError(ValueError):
    """Missing or inconsistent token shards."""


class TokenShards:
    """The shards of one split, memory-mapped; windows never cross a shard boundary."""

    def __init__(self, data_dir: str | Path, split: str):
        data_dir = Path(data_dir)
        path = data_dir / INDEX
        if not path.is_file():
            raise DataError(f"no token data at {data_dir} ({INDEX} missing): run `python -m train.prepare` first")
        try:
            index = json.loads(path.read_text())
            info = index["splits"][split]
            self.vocab_size, self.eot = int(index["vocab_size"]), int(index["eot"])
            dtype = np.dtype(index["dtype"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path} is corrupt or has no {split!r} split ({e!r})") from None
        self.index, self.shards = index, []
        for s in info["shards"]:
            f = data_dir / s["file"]
            if not f.is_file() or f.stat().st_size != s["tokens"] * dtype.itemsize:
                raise DataError(f"{f} is missing or does not hold the {s['tokens']} tokens {path} says; rerun prepare")
            self.shards.append(np.memmap(f, dtype=dtype, mode="r"))
        self.n_tokens = sum(len(s) for s in self.shards)

    def starts(self, block_size: int) -> np.ndarray:
        """Cumulative count of valid window starts per shard (a window holds block_size + 1 tokens)."""
        n = np.array([max(0, len(s) - block_size) for s in self.shards], dtype=np.int64)
        if n.sum() == 0:
            raise DataError(f"{self.n_tokens} tokens are fewer than one window of {block_size + 1}; "
                            "use a smaller model.block_size or more data")
        return np.cumsum(n)

    def windows(self, rng: np.random.Generator, n: int, block_size: int) -> np.ndarray:
        """n random windows (n, block_size + 1) as int64."""
        cum = self.starts(block_size)
        r = rng.integers(0, cum[-1], size=n)
        shard = np.searchsorted(cum, r, side="right")
        off = r - np.concatenate([[0], cum[:-1]])[shard]
        return np.stack([self.shards[s][o:o + block_size + 1] for s, o in zip(shard, off)]).astype(np.int64)


class Batches:
    """Micro-batches of (inputs, targets) for optimizer steps and for validation."""

    def __init__(self, data: TokenShards, block_size: int, batch_size: int, accum: int, seed: int,
                 rank: int = 0, world: int = 1, device: str | torch.device = "cpu"):
        self.data, self.T, self.B, self.accum = data, block_size, batch_size, accum
        self.seed, self.rank, self.world, self.device = seed, rank, world, torch.device(device)
        data.starts(block_size)  # fail early when the split is too small

    def _to_device(self, w: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(w)
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t[:, :-1], t[:, 1:]

    def step(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This process's micro-batches of optimizer step `step`: slice `rank` of the global sample."""
        per = self.B * self.accum
        w = self.data.windows(np.random.default_rng([self.seed, 0, step]), per * self.world, self.T)
        mine = w[self.rank * per:(self.rank + 1) * per]
        return [self._to_device(mine[i * self.B:(i + 1) * self.B]) for i in range(self.accum)]

    def eval_batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation batch k: the same windows at every evaluation, so estimates are comparable."""
        return self._to_device(self.data.windows(np.random.default_rng([self.seed, 1, k]), self.B, self.T))


def unigram_entropy(data: TokenShards) -> float:
    """Entropy (nats/token) of the split's token frequencies: the loss of the best context-free model."""
    counts = np.zeros(data.vocab_size, dtype=np.int64)
    for s in data.shards:
        for i in range(0, len(s), 1 << 24):
            c = np.bincount(s[i:i + (1 << 24)], minlength=data.vocab_size)
            if len(c) > data.vocab_size:
                raise DataError(f"token id {len(c) - 1} >= vocab_size {data.vocab_size}: shards and index disagree")
            counts += c
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
