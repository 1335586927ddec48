"""One decode step for the active cache rows 0..n-1: eager (any device) or replayed CUDA graphs.

The engine keeps its active sequences compacted in cache rows 0..n-1, so a decode step is always
"rows 0..n-1, one new token each". Eager mode calls the model's public forward on
`rows=slice(0, n)`; each row continues at its own length.

On a GPU a step for a small model is dominated by ~170 tiny kernels, not by math, so we
capture the step once as a CUDA graph and replay it. A graph has fixed shapes and fixed memory
addresses, so:
- the batch is padded up to a bucket (1, 2, 4, ..., max_batch); padding rows are free cache rows,
  they write junk at position 0 that the next prefill of that row overwrites;
- with PyTorch ops (GPTConfig.decode_kernels="torch") the keys are read up to a fixed kv length
  bucket (64, 128, ..., max_len) under the per-row mask `key position <= query position`, so a graph
  serves every mix of row lengths below its bucket; 05_gpu's decode kernels (the default on a GPU)
  stop at each row's own length, read on the device, so one graph per batch bucket serves all;
- token ids and positions go through a static device buffer (filled by the host, or by the step itself).
Graphs are captured lazily (the first step of each (batch, kv) bucket) or all at once by warmup().

Less work per token, on the GPU and on the host (the decode step of a small model is launch-bound):
- the greedy argmax over the tokenizer's vocab runs inside the step (graph), so only (b,) ids need
  to come back, and the step writes its own next inputs (argmax ids, positions + 1) into the input
  buffer: `step(None)` continues from there with no host->device copy. A row that samples instead
  overwrites its id with `feed()` (a device copy; the host never has to see it first). This is what
  lets the engine launch step t+1 before it reads step t's tokens (engine.py, overlap);
- the attention mask is built once per step, not once per layer (GPT.forward_at);
- several greedy steps per graph (`step(..., steps=k)`, graphs for k = 1 and k = multi_steps): the
  host launches one graph and reads k tokens per row, so its per-launch work (the replay, the copy
  back, text and delivery) is spread over k tokens, and the device runs k steps with no gap between
  graphs. The engine uses it while every row decodes greedily with room for k more tokens.
Tried and dropped: torch.compile of the step (dynamic shapes, captured in these graphs). On the
H100 it took 224 s to compile (6 recompiles for the buckets) and the step got 25x slower (20.7 ms):
most likely the cache writes into views of a graph input were functionalized into copies of the
cache (not profiled further). A working compile needs the cache writes kept in place.

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
    """step(tokens, steps=1, states=None) -> (logits (n, V) of the last step, greedy ids (steps, n)):
    tokens[i] continues cache row i, then each further step continues from the last one's argmax;
    step(None) continues each row from the ids of the previous call (its greedy ids, or what feed()
    put there). With a grammar (grammar.py) each row also has a state (`states`, or carried on from
    the previous call): the argmax is over the tokens the state allows, and `last_states` holds the
    states of the last step (what a sampled draw must be masked with; feed() advances from them)."""

    def __init__(self, model, cache, n_vocab: int | None = None, grammar=None):
        self.model, self.cache, self.grammar = model, cache, grammar
        self.device = cache.k.device
        self.n_vocab = n_vocab or model.config.vocab_size
        self.next: torch.Tensor | None = None  # (n,) ids the next step(None) feeds
        self.state: torch.Tensor | None = None  # (n,) grammar states of the next step
        self.last_states: torch.Tensor | None = None

    def step(self, tokens: list[int] | None, steps: int = 1,
             states: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens is not None:
            self.next = torch.tensor(tokens, dtype=torch.long, device=self.device)
            if self.grammar is not None:
                self.state = torch.tensor(states or [0] * len(tokens), dtype=torch.long, device=self.device)
        ids = []
        for _ in range(steps):
            logits, _ = self.model(self.next[:, None], kv_cache=self.cache, rows=slice(0, self.next.numel()))
            logits = logits[:, -1, :]
            if self.grammar is not None:
                self.last_states = self.state
                logits = self.grammar.mask(logits, self.state)
            self.next = logits[:, :self.n_vocab].argmax(dim=-1)
            if self.grammar is not None:
                self.state = self.grammar.step(self.state, self.next)
            ids.append(self.next)
        return logits, torch.stack(ids)

    def feed(self, tokens: torch.Tensor) -> None:
        """The ids (n,) the next step(None) continues from, instead of the argmax."""
        self.next = tokens
        if self.grammar is not None:
            self.state = self.grammar.step(self.last_states, tokens)


class GraphDecoder:
    """EagerDecoder's interface on CUDA graphs: one graph per (batch bucket, kv bucket, steps),
    steps being 1 or multi_steps. With a grammar, the states are a third row of the input buffer and
    05_gpu's greedy kernel masks and advances them; the logits it returns are not masked."""

    def __init__(self, model, cache, kv_start: int = 64, n_vocab: int | None = None, multi_steps: int = 1,
                 grammar=None):
        self.model, self.cache, self.grammar = model, cache, grammar
        self.step_counts = sorted({1, multi_steps})
        self.device = cache.k.device
        self.n_vocab = n_vocab or model.config.vocab_size
        B, self.max_len = cache.batch_size, cache.max_len
        self.batch_buckets = _buckets(B, 1)
        # the PyTorch step reads a fixed number of keys under a mask, so graphs are bucketed by kv length;
        # 05_gpu's decode kernel reads each row's own length on the device: one graph serves them all
        self.kv_buckets = ([self.max_len] if model.decode_kernels_on(self.device)
                           else _buckets(self.max_len, min(kv_start, self.max_len)))
        # row 0 tokens, row 1 positions, row 2 grammar states (0 = FREE: padding rows, no grammar)
        self.staging = torch.zeros(3, B, dtype=torch.long).pin_memory()
        self.staging_np = self.staging.numpy()
        self.inputs = torch.zeros(3, B, dtype=torch.long, device=self.device)
        self.graphs: dict[tuple[int, int, int], tuple] = {}  # -> (graph, logits, ids, last states)
        self.pool = torch.cuda.graph_pool_handle()
        self.n = 0  # rows of the last step: step(None) continues exactly those

    @staticmethod
    def _fit(buckets: list[int], x: int) -> int:
        return next(b for b in buckets if b >= x)

    def step(self, tokens: list[int] | None, steps: int = 1,
             states: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(tokens) if tokens is not None else self.n
        if tokens is None and n == 0:
            raise RuntimeError("step(None) needs a previous step to continue from")
        if steps not in self.step_counts:
            raise ValueError(f"this decoder has graphs for {self.step_counts} steps, not {steps}")
        kv = int(self.cache.lengths[:n].max()) + steps
        if kv > self.max_len:
            raise ValueError(f"KV cache full: a row would pass max_len={self.max_len}")
        b, S = self._fit(self.batch_buckets, n), self._fit(self.kv_buckets, kv)
        if tokens is not None:
            st = self.staging_np  # numpy view of the pinned buffer: filling it costs ~no Python overhead
            st[0, :n] = tokens
            st[1, :n] = self.cache.lengths[:n].numpy()
            st[2, :n] = states if states is not None else 0
            st[:, n:b] = 0
            self.inputs[:, :b].copy_(self.staging[:, :b], non_blocking=True)
        # (with step(None), padding rows n..b-1 run on from wherever they were: they are free rows,
        # and whatever they write there a later prefill and decode overwrite before reading)
        if (b, S, steps) not in self.graphs:  # after the inputs are in place: the warm-up runs on them
            self.graphs[(b, S, steps)] = self._capture(b, S, steps)
        graph, logits, ids, self._last_states = self.graphs[(b, S, steps)]
        graph.replay()
        self.cache.lengths[:n] += steps
        self.n = n
        return logits[:n], ids[:, :n]

    @property
    def last_states(self) -> torch.Tensor | None:
        """(n,) the grammar states the last step's rows were masked with."""
        return None if self.grammar is None else self._last_states[:self.n]

    def feed(self, tokens: torch.Tensor) -> None:
        self.inputs[0, :tokens.numel()].copy_(tokens)
        if self.grammar is not None:
            self.inputs[2, :tokens.numel()].copy_(self.grammar.step(self.last_states, tokens))

    def warmup(self) -> None:
        """Capture every bucket now (on an empty cache) so that no request pays for a capture."""
        lengths = self.cache.lengths.clone()
        self.inputs.zero_()
        for b in reversed(self.batch_buckets):  # largest first: later captures reuse its pool memory
            for S in reversed(self.kv_buckets):
                for k in self.step_counts:
                    if (b, S, k) not in self.graphs:
                        self.graphs[(b, S, k)] = self._capture(b, S, k)
        self.cache.lengths.copy_(lengths)
        self.n = 0

    def _forward(self, b: int, S: int, steps: int) -> tuple:
        """`steps` steps on the input buffer's first b rows -> the last logits (b, V), the argmax
        ids (steps, b) and the states of the last step (b,) (None without a grammar); each step
        writes the next one's inputs (ids, positions + 1, states) into the buffer, so the steps chain
        on the device and step(None) needs no host input."""
        idx, pos = self.inputs[0, :b, None], self.inputs[1, :b, None]  # (b, 1) each
        from gpu.greedy import greedy_next  # CUDA only; runs when a graph is captured, not per step
        g = self.grammar
        inputs, tables = (self.inputs[:, :b], (g.bias, g.next_state)) if g else (self.inputs[:2, :b], ())
        ids, last_states = [], None
        for i in range(steps):
            logits = self.model.forward_at(idx, pos, self.cache, slice(0, b), kv_len=S)[:, -1, :]
            if g is not None and i == steps - 1:
                last_states = self.inputs[2, :b].clone()
            # argmax ids, and ids / positions + 1 (capped: padding rows stay in range) into the buffer
            ids.append(greedy_next(logits, self.n_vocab, inputs, self.max_len - 1, *tables))
        return logits, torch.stack(ids), last_states

    def _capture(self, b: int, S: int, steps: int) -> tuple:
        # warm up on a side stream (cuBLAS/attention pick their kernels), then
        # record. Each warm-up run writes keys/values at the rows' next positions, which the next real
        # step overwrites before anything reads them, and advances the inputs, which we restore.
        saved = self.inputs.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(b, S, steps)
        torch.cuda.current_stream().wait_stream(side)
        self.inputs.copy_(saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = self._forward(b, S, steps)
        self.inputs.copy_(saved)
        return graph, *outputs
