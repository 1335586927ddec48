"""One decode step for the active cache rows 0..n-1: eager (any device) or replayed CUDA graphs.

The engine keeps its active sequences compacted in cache rows 0..n-1, so a decode step is always
"rows 0..n-1, one new token each". Eager mode calls the model's public forward on
`rows=slice(0, n)`; each row continues at its own length.

On a GPU a step for a small model is dominated by launching ~200 tiny kernels, not by math, so we
capture the step once as a CUDA graph and replay it. A graph has fixed shapes and fixed memory
addresses, so:
- the batch is padded up to a bucket (1, 2, 4, ..., max_batch); padding rows are free cache rows,
  they write junk at position 0 that the next prefill of that row overwrites;
- the keys are read up to a fixed kv length bucket (64, 128, ..., max_len) under the per-row mask
  `key position <= query position`, so a graph serves every mix of row lengths below its bucket;
- token ids and positions go through a static device buffer that each step refills.
Graphs are captured lazily (the first step of each (batch, kv) bucket) or all at once by warmup().

The graph runs GPT.forward_at with explicit `pos`/`kv_len` instead of GPT.forward, because
GPT.forward computes positions on the CPU from `cache.lengths` (a host->device copy and a
data-dependent kv length, neither of which can live inside a graph).
"""
from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def _buckets(limit: int, start: int) -> list[int]:
    out, b = [], start
    while b < limit:
        out.append(b)
        b *= 2
    return out + [limit]


class EagerDecoder:
    def __init__(self, model, cache):
        self.model, self.cache = model, cache
        self.device = cache.k.device

    def step(self, tokens: list[int]) -> torch.Tensor:
        """tokens[i] continues cache row i -> logits (n, V) of the new position."""
        idx = torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None]
        logits, _ = self.model(idx, kv_cache=self.cache, rows=slice(0, len(tokens)))
        return logits[:, -1, :]


class GraphDecoder:
    def __init__(self, model, cache, kv_start: int = 64):
        self.model, self.cache = model, cache
        self.device = cache.k.device
        B, self.max_len = cache.batch_size, cache.max_len
        self.batch_buckets = _buckets(B, 1)
        self.kv_buckets = _buckets(self.max_len, min(kv_start, self.max_len))
        self.staging = torch.zeros(2, B, dtype=torch.long).pin_memory()  # row 0 tokens, row 1 positions
        self.staging_np = self.staging.numpy()
        self.inputs = torch.zeros(2, B, dtype=torch.long, device=self.device)
        self.graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle()

    @staticmethod
    def _fit(buckets: list[int], x: int) -> int:
        return next(b for b in buckets if b >= x)

    def step(self, tokens: list[int]) -> torch.Tensor:
        n = len(tokens)
        st = self.staging_np  # numpy view of the pinned buffer: filling it costs ~no Python overhead
        st[0, :n] = tokens
        st[1, :n] = self.cache.lengths[:n].numpy()
        kv = int(st[1, :n].max()) + 1
        if kv > self.max_len:
            raise ValueError(f"KV cache full: a row would pass max_len={self.max_len}")
        b, S = self._fit(self.batch_buckets, n), self._fit(self.kv_buckets, kv)
        st[:, n:b] = 0
        self.inputs[:, :b].copy_(self.staging[:, :b], non_blocking=True)
        if (b, S) not in self.graphs:
            self.graphs[(b, S)] = self._capture(b, S)
        graph, out = self.graphs[(b, S)]
        graph.replay()
        self.cache.lengths[:n] += 1
        return out[:n]

    def warmup(self) -> None:
        """Capture every bucket now (on an empty cache) so that no request pays for a capture."""
        lengths = self.cache.lengths.clone()
        self.inputs.zero_()
        for b in reversed(self.batch_buckets):  # largest first: later captures reuse its pool memory
            for S in reversed(self.kv_buckets):
                if (b, S) not in self.graphs:
                    self.graphs[(b, S)] = self._capture(b, S)
        self.cache.lengths.copy_(lengths)

    def _forward(self, b: int, S: int) -> torch.Tensor:
        idx, pos = self.inputs[0, :b, None], self.inputs[1, :b, None]  # (b, 1) each
        return self.model.forward_at(idx, pos, self.cache, slice(0, b), kv_len=S)[:, -1, :]

    def _capture(self, b: int, S: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # warm up on a side stream (cuBLAS/attention pick their kernels), then record. The warm-up
        # writes exactly what the replay will write (same inputs), so active rows are unharmed.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(b, S)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self._forward(b, S)
        return graph, out
