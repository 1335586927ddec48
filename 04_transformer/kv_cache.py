"""A preallocated key/value cache: the model's memory of the tokens it has already seen.

Keys and values for every layer live in two tensors allocated once, (n_layer, B, H, max_len, D).
A forward step writes the new tokens' keys/values into their positions (no concatenation, no
reallocation) and attends over the filled prefix. Each batch row keeps its own length, so rows
holding sequences of different lengths (continuous batching in 03_model) share one cache.

`lengths` lives on the CPU on purpose: the Python side always knows how long each row is, so a
step never waits on the GPU to find out.
"""
from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, dtype=torch.long)  # tokens held per row (CPU)
        self.max_len = max_len

    @property
    def batch_size(self) -> int:
        return self.k.size(1)

    @property
    def nbytes(self) -> int:
        """Memory held by keys and values, in bytes."""
        return self.k.numel() * self.k.element_size() * 2

    def reset(self, rows: slice | None = None) -> None:
        """Forget the rows' tokens (their slots can take new sequences). Stale values are never read:
        attention only looks at positions below a row's length."""
        self.lengths[rows if rows is not None else slice(None)] = 0

    def positions(self, rows: slice, T: int) -> torch.Tensor:
        """Positions of T new tokens appended to each row in `rows`: (b, T) on the CPU.
        Raises ValueError when a row would run past max_len."""
        lens = self.lengths[rows]
        if lens.numel() == 0:
            raise ValueError("KV cache: no rows selected")
        if int(lens.max()) + T > self.max_len:
            raise ValueError(f"KV cache full: a row holds {int(lens.max())} tokens, adding {T} would pass "
                             f"max_len={self.max_len} (the model's context window)")
        return lens[:, None] + torch.arange(T)[None, :]

    def layer(self, i: int, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (b, H, max_len, D) of layer i's keys and values for the given rows."""
        return self.k[i, rows], self.v[i, rows]
