"""Attention backends: one function signature, several implementations.

Every backend is `fn(q, k, v, is_causal) -> y` with q, k, v, y of shape (B, H, T, D) and the same T
for queries and keys. The model picks one by name (`GPTConfig.attn_backend`):

- `sdpa`   PyTorch's fused scaled_dot_product_attention (flash / memory-efficient kernels on GPU).
- `manual` the unfused matmul -> softmax -> matmul, written out for reading and used as the test
           reference.
- `triton` our flash-attention kernel from 05_gpu, registered lazily on first use.

Attention over a KV cache whose rows have different lengths needs an explicit mask; that path is
`masked_attention` below (sdpa, or manual when the model is configured for manual).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor]
_BACKENDS: dict[str, AttentionFn] = {}


def register_backend(name: str, fn: AttentionFn) -> None:
    """Make `fn` available as `GPTConfig(attn_backend=name)`."""
    _BACKENDS[name] = fn


def get_backend(name: str) -> AttentionFn:
    if name == "triton" and name not in _BACKENDS:
        from gpu.flash_attention import flash_attention  # lower layer; imported only when asked for
        register_backend("triton", flash_attention)
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; known: {sorted(_BACKENDS) + ['triton']}")
    return _BACKENDS[name]


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v, step by step. mask: bool, True = may attend, broadcast to (B,H,Tq,Tk)."""
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, H, Tq, Tk)
    if is_causal:
        Tq, Tk = q.size(-2), k.size(-2)
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))
    att = F.softmax(att, dim=-1)
    return att @ v  # (B, H, Tq, D)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)


def decode_mask(pos: torch.Tensor, kv_len: int, backend: str, dtype: torch.dtype) -> torch.Tensor:
    """The KV-cache mask for queries at positions pos (B, T): the query at position p sees the keys at
    positions <= p (each row has its own p) -> (B, 1, T, kv_len). Boolean (True = may attend) for
    the manual backend; for sdpa an additive float bias (0 or -inf), which sdpa would otherwise
    rebuild from a boolean mask in every layer."""
    mask = torch.arange(kv_len, device=pos.device)[None, None, None, :] <= pos[:, None, :, None]
    if backend == "manual":
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=pos.device).masked_fill_(~mask, float("-inf"))


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                     backend: str) -> torch.Tensor:
    """Attention with an explicit mask from decode_mask (bool: True = may attend; float: added to
    the scores), for KV-cache steps."""
    if backend == "manual":
        return manual_attention(q, k, v, is_causal=False, mask=mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


register_backend("sdpa", sdpa_attention)
register_backend("manual", lambda q, k, v, is_causal: manual_attention(q, k, v, is_causal))
