"""Per-request sampling for a batch of rows: greedy, temperature, top-k, top-p, seeded generators.

Every row of a decode batch may belong to a different request with its own settings, so the
settings are applied row-wise but vectorised: one topk, one sort, one softmax for the whole batch.
The only per-row kernel is the random draw, because each request owns a `torch.Generator` (its
`seed` makes the output reproducible no matter which other requests share the batch).

The draw uses the exponential race: argmax(p_i / E_i) with E_i ~ Exp(1) picks i with probability
p_i, exactly like torch.multinomial, but needs only a per-row noise vector and one batched argmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0   # 0 = greedy (argmax)
    top_k: int = 0             # 0 = no top-k cut
    top_p: float = 1.0         # 1 = no nucleus cut
    seed: int | None = None    # None = a fresh random seed

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def generator(self, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        if self.seed is None:
            g.seed()  # non-deterministic
        else:
            g.manual_seed(self.seed)
        return g


def sample(logits: torch.Tensor, params: list[SamplingParams],
           generators: list[torch.Generator]) -> torch.Tensor:
    """logits (n, V) of the last position of each row -> next token ids (n,) on logits' device."""
    logits = logits.float()
    greedy_tok = logits.argmax(dim=-1)
    if all(p.greedy for p in params):
        return greedy_tok
    n, V = logits.shape
    dev = logits.device
    temps = torch.tensor([p.temperature if not p.greedy else 1.0 for p in params], device=dev)
    logits = logits / temps[:, None]
    ks = [p.top_k for p in params]
    if any(ks):
        kmax = min(max(ks), V)
        kth_idx = torch.tensor([min(k, kmax) - 1 if k else kmax - 1 for k in ks], device=dev)
        kth = torch.topk(logits, kmax, dim=-1).values.gather(1, kth_idx[:, None])  # (n, 1)
        kth = kth.masked_fill(torch.tensor([k == 0 for k in ks], device=dev)[:, None], float("-inf"))
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    ps = [p.top_p for p in params]
    if any(p < 1.0 for p in ps):
        sorted_p, order = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(dim=-1) - sorted_p          # mass of the tokens ranked above
        drop = before >= torch.tensor(ps, device=dev)[:, None]  # keeps at least the top token
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(1, order, sorted_p)
    noise = torch.stack([torch.empty(V, device=dev).exponential_(generator=g) for g in generators])
    drawn = (probs / noise).argmax(dim=-1)
    is_greedy = torch.tensor([p.greedy for p in params], device=dev)
    return torch.where(is_greedy, greedy_tok, drawn)
