"""The model's one-token KV-cache step on 05_gpu's decode kernels: the same math as GPT.forward_at,
regrouped into fewer, fused kernels, because at serving batch sizes a decode step is bound by
kernel launches and weight reads, not by arithmetic (03_model/README.md has the profile).

    logits = decode_step(model, idx, pos, kv_cache, rows)    # idx, pos (B,) -> (B, 1, V)

GPT.forward_at calls it for T == 1 cache steps when GPTConfig.decode_kernels says so (by default on
CUDA, in inference). Per layer:

- up to MAX_ROWS rows, 4 kernels a layer instead of 8 to 9: LayerNorm -> qkv -> cache write ->
  attention in one (qkv_attention), then small_linear kernels with their neighbours folded in:
  attention output -> proj + residual, LayerNorm -> fc + GELU, -> proj + residual. The embedding is
  one kernel (embed) and, at one row, the head a small_linear with ln_f folded in. All are launched
  with programmatic dependent launch, so the step is one chain of ~50 overlapping kernels;
- more rows: cuBLAS matmuls (they read each weight once for many rows), with every residual add
  fused with the LayerNorm that follows it (add_layer_norm), so the loop carries x and h = norm(x),
  and attention in one kernel that writes the new key/value into the cache and attends over the
  row's keys (decode_attention), instead of two scatters, a mask, SDPA and a transpose copy.
"""
from __future__ import annotations

import torch

from gpu.decode_attention import decode_attention
from gpu.embedding import embed
from gpu.layer_norm import add_layer_norm
from gpu.qkv_attention import qkv_attention
from gpu.small_linear import MAX_ROWS, small_linear

from .kv_cache import KVCache


def _norm(m: torch.nn.LayerNorm) -> tuple:
    return m.weight, m.bias, m.eps


def decode_step(model, idx: torch.Tensor, pos: torch.Tensor, kv_cache: KVCache, rows: slice) -> torch.Tensor:
    """One new token per cache row: idx, pos (B,) -> logits (B, 1, V); writes the keys/values at pos."""
    t, H = model.transformer, model.config.n_head
    if idx.size(0) <= MAX_ROWS:
        x = embed(idx, pos, t.wte.weight, t.wpe.weight)  # (B, C), the residual stream
        for i, block in enumerate(t.h):
            attn, mlp = block.attn, block.mlp
            k, v = kv_cache.layer(i, rows)
            y = qkv_attention(x, attn.c_attn.weight, attn.c_attn.bias, _norm(block.ln_1), k, v, pos, H)  # (B, C)
            x = small_linear(y, attn.c_proj.weight, attn.c_proj.bias, residual=x)
            h = small_linear(x, mlp.c_fc.weight, mlp.c_fc.bias, norm=_norm(block.ln_2), gelu=True)  # (B, 4C)
            x = small_linear(h, mlp.c_proj.weight, mlp.c_proj.bias, residual=x)
        if idx.size(0) == 1:  # the head (50304 x 768 at GPT-2's size): ours at 1 row, cuBLAS from 2
            # (reports/small_linear_h100.json, rows "head"; streamed once, the weight rows leave less
            # to win, and each program's registers grow with the rows)
            return small_linear(x, model.lm_head.weight, model.lm_head.bias, norm=_norm(t.ln_f))[:, None, :]
        return model.lm_head(t.ln_f(x))[:, None, :]
    norms = [block.ln_1 for block in t.h] + [t.ln_f]  # the norm after each residual add
    add_ln = lambda x, r, m: add_layer_norm(x, r, *_norm(m))
    x, h = add_ln(t.wte(idx), t.wpe(pos), norms[0])  # (B, C) each
    for i, block in enumerate(t.h):
        k, v = kv_cache.layer(i, rows)
        y = decode_attention(block.attn.c_attn(h), k, v, pos, H)  # (B, C)
        x, h = add_ln(x, block.attn.c_proj(y), block.ln_2)
        x, h = add_ln(x, block.mlp(h), norms[i + 1])
    return model.lm_head(h)[:, None, :]
