"""GPT-2, exactly: token + position embeddings, pre-LayerNorm blocks, fused qkv, tanh-GELU, tied head.

Module names follow GPT-2's checkpoint (transformer.h.0.attn.c_attn, ...) so that loading Hugging
Face weights (hf.py) is a rename plus a transpose, nothing more.

Shapes: B batch, T tokens, C = n_embd, H = n_head, D = C // H, V = vocab_size.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import decode_mask, get_backend, masked_attention
from .kv_cache import KVCache

IGNORE_INDEX = -100  # targets with this value add nothing to the loss (SFT masks prompts this way)


@dataclass
class GPTConfig:
    block_size: int = 256      # context window (number of learned positions)
    vocab_size: int = 8192
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True          # GPT-2 has biases in Linear and LayerNorm
    attn_backend: str = "sdpa"  # "sdpa" | "manual" | "triton" | anything registered
    loss_backend: str = "auto"  # "torch" | "triton" (05_gpu's fused kernel) | "auto": triton on CUDA
    bf16_residual: bool = True  # under bf16 autocast, keep the residual stream in bf16 too (as Megatron does)
    decode_kernels: str = "auto"  # one-token KV-cache steps: "torch" | "triton" (05_gpu's fused kernels) |
                                  # "auto": triton on CUDA when no gradient is needed (fused_decode.py)

    def to_dict(self) -> dict:
        return asdict(self)

    def shape(self) -> dict:
        """The fields that fix the weights' shapes (the others choose how to compute)."""
        return {k: getattr(self, k) for k in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "bias")}

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GPTConfig fields: {sorted(unknown)}")
        return cls(**d)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Mean cross-entropy of logits (N, V) over targets != IGNORE_INDEX, computed in fp32.
    "triton" is 05_gpu's fused kernel: one read of the logits forward, one read + write backward,
    where the compiled PyTorch loss makes more passes (00_train/README.md has the measurements)."""
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"unknown loss_backend {backend!r}; use auto, torch or triton")
    if backend == "triton" or (backend == "auto" and logits.is_cuda):
        from gpu.cross_entropy import cross_entropy as fused  # lower layer; imported only when used
        return fused(logits, targets, IGNORE_INDEX)
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # fused q, k, v
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.backend = cfg.attn_backend

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                pos: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask None: causal attention over x's own tokens (with a cache: the rows were empty). Else
        the cache path: attend to the first mask.size(-1) cache positions under `mask` (decode_mask)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # store the new keys/values at their positions
            self._write(cache, k, v, pos)
        if mask is None:
            y = get_backend(self.backend)(q, k, v, True)
        else:
            kv_len = mask.size(-1)
            keys, vals = cache[0][:, :, :kv_len], cache[1][:, :, :kv_len]  # (B, H, S, D)
            y = masked_attention(q, keys, vals, mask, self.backend)  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    @staticmethod
    def _write(cache: tuple[torch.Tensor, torch.Tensor], k: torch.Tensor, v: torch.Tensor,
               pos: torch.Tensor) -> None:
        index = pos[:, None, :, None].expand_as(k)  # (B, H, T, D): position of each new token
        cache[0].scatter_(2, index, k)
        cache[1].scatter_(2, index, v)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, **cache_args) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), **cache_args)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=nn.LayerNorm(cfg.n_embd, bias=cfg.bias),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections so the residual stream's variance stays put with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())  # the tied head is counted once
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, rows: slice | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> logits (B, T, V), and the mean cross-entropy when targets are given
        (targets == IGNORE_INDEX are skipped). With kv_cache, idx continues cache rows `rows`."""
        B, T = idx.shape
        if kv_cache is None:
            logits = self.forward_at(idx, self._positions(idx))
        else:
            rows = rows if rows is not None else slice(None)
            lens = kv_cache.lengths[rows]
            if lens.numel() != B:
                raise ValueError(f"idx has batch {B} but the selected cache rows number {lens.numel()}")
            pos = kv_cache.positions(rows, T)  # (B, T) on the CPU; raises past max_len
            if int(pos.max()) >= self.config.block_size:
                raise ValueError(f"position {int(pos.max())} is past block_size={self.config.block_size}")
            logits = self.forward_at(idx, pos.to(idx.device, non_blocking=True), kv_cache, rows,
                                     kv_len=int(pos.max()) + 1, fresh=bool((lens == 0).all()))
            kv_cache.lengths[rows] += T
        loss = None
        if targets is not None:
            loss = cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), self.config.loss_backend)
            # with targets the loss is the differentiable output: detached logits spare the compiled
            # backward a zero gradient the size of the logits (3 GB at GPT-2 scale) and adding it in
            logits = logits.detach()
        return logits, loss

    def _positions(self, idx: torch.Tensor) -> torch.Tensor:
        """Positions (1, T) of a sequence that starts at 0 (no KV cache); raises past block_size."""
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.config.block_size}")
        return torch.arange(T, device=idx.device)[None, :]

    def learned_loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of forward(idx, targets) without the logits nobody reads: the hidden states go
        through ln_f and the vocabulary projection only where targets != IGNORE_INDEX. In SFT the
        prompt and the tool's output carry no loss (over 40% of an agent trace's positions), and on
        a CPU the (T, V) head is a large share of a small model's step (`python -m sft.bench`, 00b_sft/README.md)."""
        learned = targets != IGNORE_INDEX  # (B, T)
        logits = self.forward_at(idx, self._positions(idx), only_at=learned)  # (N, V)
        return cross_entropy(logits, targets[learned], self.config.loss_backend)

    def prefill(self, prompts: list[list[int]], kv_cache: KVCache, first_row: int = 0) -> torch.Tensor:
        """Start len(prompts) sequences at once in the empty cache rows first_row, first_row + 1, ...
        -> logits (k, V) of each prompt's last token. One forward for all: prompts of different lengths
        are right-padded to the longest. Under causal attention no real token sees the padding, and
        the padding's keys/values land past each row's length, where decoding overwrites them before
        anything reads them; each row's length is set to its own prompt's."""
        k = len(prompts)
        lens = torch.tensor([len(p) for p in prompts], dtype=torch.long)
        rows = slice(first_row, first_row + k)
        if k == 0 or int(lens.min()) < 1:
            raise ValueError("prefill needs at least one prompt and no empty prompt")
        if kv_cache.lengths[rows].numel() != k or bool(kv_cache.lengths[rows].any()):
            raise ValueError(f"rows {first_row}..{first_row + k - 1} must exist in the cache and be empty")
        T = int(lens.max())
        if T > min(kv_cache.max_len, self.config.block_size):
            raise ValueError(f"a prompt of {T} tokens does not fit the cache (max_len={kv_cache.max_len}) "
                             f"or the context window (block_size={self.config.block_size})")
        idx = torch.zeros(k, T, dtype=torch.long)
        for i, p in enumerate(prompts):
            idx[i, :len(p)] = torch.as_tensor(p, dtype=torch.long)
        dev = kv_cache.k.device
        pos = torch.arange(T, device=dev)[None, :].expand(k, T)
        logits = self.forward_at(idx.to(dev, non_blocking=True), pos, kv_cache, rows, kv_len=T, fresh=True,
                                 only_at=(lens - 1).to(dev, non_blocking=True))
        kv_cache.lengths[rows] = lens
        return logits  # (k, V)

    def forward_at(self, idx: torch.Tensor, pos: torch.Tensor, kv_cache: KVCache | None = None,
                   rows: slice | None = None, kv_len: int = 0, fresh: bool = False,
                   only_at: torch.Tensor | None = None) -> torch.Tensor:
        """The forward pass at explicit positions pos (B, T) on idx's device -> logits (B, T, V), or
        with only_at (B,) the logits of one position per row (B, V) (a prefill needs only the last
        prompt token's: at GPT-2's vocabulary the full logits of a 2048-token prefill are 200 MB),
        or with a boolean only_at (B, T) the logits where it is True, in row-major order (N, V).

        With kv_cache, the new keys/values go into cache rows `rows` at `pos`, and each query attends
        to the first kv_len cache positions under the mask `key position <= query position` (fresh:
        the rows were empty, so plain causal attention over the new tokens is the same thing).
        Nothing here reads or updates `cache.lengths` and no shape depends on data, so a fixed
        (pos buffer, kv_len) step can be captured as a CUDA graph (03_model does)."""
        if kv_cache is not None and not fresh and idx.size(1) == 1 and self._use_decode_kernels(idx):
            from .fused_decode import decode_step  # the kernels are a lower layer: imported only when used
            return decode_step(self, idx[:, 0], pos[:, 0], kv_cache, rows if rows is not None else slice(None))
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        if self.config.bf16_residual and torch.is_autocast_enabled(x.device.type):
            # embeddings are fp32 parameters, so without this the whole residual stream (and its
            # gradient) would be fp32: twice the memory traffic in every norm, add and GELU
            x = x.to(torch.get_autocast_dtype(x.device.type))
        # built once for all layers (not per layer): on a decode step every kernel launch counts
        mask = None if kv_cache is None or fresh else decode_mask(pos, kv_len, self.config.attn_backend, x.dtype)
        for i, block in enumerate(self.transformer.h):
            cache = kv_cache.layer(i, rows if rows is not None else slice(None)) if kv_cache is not None else None
            x = block(x, cache=cache, pos=pos, mask=mask)
        if only_at is not None and only_at.dtype == torch.bool:
            x = x[only_at]  # (N, C)
        elif only_at is not None:
            x = x[torch.arange(x.size(0), device=x.device), only_at]  # (B, C)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V) or (B, V)

    def decode_kernels_on(self, device: torch.device | str) -> bool:
        """Do one-token cache steps on this device run on 05_gpu's kernels (in inference)?"""
        mode = self.config.decode_kernels
        if mode not in ("auto", "torch", "triton"):
            raise ValueError(f"unknown decode_kernels {mode!r}; use auto, torch or triton")
        return mode == "triton" or (mode == "auto" and torch.device(device).type == "cuda")

    def _use_decode_kernels(self, idx: torch.Tensor) -> bool:
        if not self.decode_kernels_on(idx.device):
            return False
        # the kernels have no backward, and under autocast the unfused path decides the dtypes
        usable = (not torch.is_grad_enabled() and not self.training
                  and not torch.is_autocast_enabled(idx.device.type))
        if self.config.decode_kernels == "triton" and not usable:
            raise RuntimeError("decode_kernels='triton' is inference only: use torch.no_grad(), evaluation mode "
                               "and no autocast (or decode_kernels='auto')")
        return usable

    def new_kv_cache(self, batch_size: int, max_len: int | None = None, device=None, dtype=None) -> KVCache:
        cfg = self.config
        p = self.lm_head.weight
        return KVCache(cfg.n_layer, batch_size, cfg.n_head, min(max_len or cfg.block_size, cfg.block_size),
                       cfg.n_embd // cfg.n_head, device=device or p.device, dtype=dtype or p.dtype)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample continuations of idx (B, T) with the KV cache; temperature 0 is greedy."""
        B, T = idx.shape
        cache = self.new_kv_cache(B, T + max_new_tokens)
        logits, _ = self(idx, kv_cache=cache)
        out = [idx]
        for step in range(max_new_tokens):
            logits = logits[:, -1, :].float()
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            out.append(nxt)
            if step + 1 < max_new_tokens:
                logits, _ = self(nxt, kv_cache=cache)
        return torch.cat(out, dim=1)

    def configure_optimizer(self, weight_decay: float, lr: float, betas: tuple[float, float],
                            device_type: str) -> torch.optim.AdamW:
        """AdamW with weight decay on 2-D weights (matmuls, embeddings) only, never biases or norms."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if fused else {}))

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6 per weight plus the attention matmuls."""
        cfg = self.config
        T = seq_len or cfg.block_size
        return 6 * self.num_params(non_embedding=True) + 12 * cfg.n_layer * cfg.n_embd * T
