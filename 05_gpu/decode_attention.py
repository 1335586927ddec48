"""Attention for one new token per sequence over a KV cache, fused with the cache write: one kernel.

    y = decode_attention(qkv, k_cache, v_cache, pos, n_head)
        qkv      (B, 3C)       the new token's fused q, k, v projections (c_attn's output)
        k_cache  (B, H, L, D)  one layer's keys for these rows (a view of the model's KVCache)
        v_cache  (B, H, L, D)  its values
        pos      (B,) int      the new token's position in each row = the keys already cached
        y        (B, C)        softmax(q k^T / sqrt(D)) v over keys 0..pos, heads side by side

Why a kernel: decoding one token of GPT-2 small at batch 1 is ~170 tiny kernels whose launch and
ramp-up latency, not their math, sets the time per token. The PyTorch path spends five per layer on
attention: two scatters into the cache, the masked SDPA call (whose mask is built per step), and a
transpose copy back to (B, C). Here one program per (row, head):

1. loads q, k, v of its head straight out of qkv (no split / transpose copies),
2. writes k and v into the cache at `pos`,
3. streams the cached keys 0..pos-1 in blocks with an online softmax (a running max m and sum l,
   rescaled by exp(m_old - m_new) when the max grows), then adds the new key itself,
4. writes its D outputs into y's columns h*D..h*D+D, the layout c_proj reads.

Each row stops at its own length (the loop bound is the row's `pos`, read on the device), so rows of
different lengths share a step with no mask and no padded keys, and a CUDA graph of the step serves
every length. Inference only (no backward). Scores, softmax and the weighted sum are fp32; the new
k, v are rounded to the cache's dtype before they are used, so the result is what attending over the
written cache gives.
"""
import torch

from gpu.triton_util import PDL_LAUNCH, check_device, release_dependents, wait_for_inputs

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402

BLOCK_T = 64  # cached keys per loop iteration


@triton.jit
def attend(q, k_rows, v_rows, n, stride_kt, stride_vt, m, l, acc, D: tl.constexpr, BLOCK: tl.constexpr):
    """Continue an online softmax (running max m, sum l, weighted values acc (D,)) over cached keys
    0..n-1: blocks of BLOCK keys, rescaled by exp(m_old - m_new) whenever the max grows. A program
    streaming cached keys is bound by memory latency, so the next block's keys and values are loaded
    before this block's arithmetic: two blocks in flight. Loads go through L2 only (.cg): a fused
    caller reads keys that other programs of its kernel have just written."""
    d = tl.arange(0, D)
    t = tl.arange(0, BLOCK)
    kb = tl.load(k_rows + t[:, None] * stride_kt + d[None, :], mask=(t < n)[:, None], other=0.0, cache_modifier=".cg")
    vb = tl.load(v_rows + t[:, None] * stride_vt + d[None, :], mask=(t < n)[:, None], other=0.0, cache_modifier=".cg")
    for start in range(0, n, BLOCK):
        live = start + t < n
        nt = start + BLOCK + t  # the next block
        k_next = tl.load(k_rows + nt[:, None] * stride_kt + d[None, :], mask=(nt < n)[:, None], other=0.0,
                         cache_modifier=".cg")
        v_next = tl.load(v_rows + nt[:, None] * stride_vt + d[None, :], mask=(nt < n)[:, None], other=0.0,
                         cache_modifier=".cg")
        s = tl.sum(kb.to(tl.float32) * q[None, :], axis=1)  # (BLOCK,) scores
        s = tl.where(live, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=0))
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new)
        acc = acc * alpha + tl.sum(p[:, None] * vb.to(tl.float32), axis=0)
        l = l * alpha + tl.sum(p, axis=0)
        m = m_new
        kb, vb = k_next, v_next
    return m, l, acc


@triton.jit
def _decode_kernel(QKV, K, V, POS, Y, stride_qkv, stride_kb, stride_kh, stride_kt,
                   stride_vb, stride_vh, stride_vt, stride_y, C, sm_scale,
                   D: tl.constexpr, BLOCK: tl.constexpr):
    release_dependents()  # the next kernel may start loading its weights now (under PDL)
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    d = tl.arange(0, D)
    wait_for_inputs()  # qkv comes from the kernel before
    pos = tl.load(POS + b).to(tl.int64)
    row = QKV + b * stride_qkv + h * D
    q = tl.load(row + d).to(tl.float32) * sm_scale
    k_rows = K + b * stride_kb + h * stride_kh
    v_rows = V + b * stride_vb + h * stride_vh
    k_new = tl.load(row + C + d).to(K.dtype.element_ty)
    v_new = tl.load(row + 2 * C + d).to(V.dtype.element_ty)
    tl.store(k_rows + pos * stride_kt + d, k_new)
    tl.store(v_rows + pos * stride_vt + d, v_new)
    # start the online softmax with the new key, which every query sees, then the cached ones
    m = tl.sum(q * k_new.to(tl.float32), axis=0)
    m, l, acc = attend(q, k_rows, v_rows, pos, stride_kt, stride_vt, m, tl.full([], 1.0, tl.float32),
                        v_new.to(tl.float32), D, BLOCK)
    tl.store(Y + b * stride_y + h * D + d, (acc / l).to(Y.dtype.element_ty))


def decode_attention(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor,
                     n_head: int) -> torch.Tensor:
    """Write the new keys/values at pos and attend over keys 0..pos of each row -> y (B, C)."""
    B, C3 = qkv.shape
    C = C3 // 3
    if C3 != 3 * C or C % n_head:
        raise ValueError(f"qkv must be (B, 3C) with C divisible by n_head={n_head}, got {tuple(qkv.shape)}")
    D = C // n_head
    if k_cache.shape != v_cache.shape or tuple(k_cache.shape[:2]) != (B, n_head) or k_cache.size(3) != D:
        raise ValueError(f"caches must be (B={B}, H={n_head}, L, D={D}), got {tuple(k_cache.shape)} and "
                         f"{tuple(v_cache.shape)}")
    if pos.shape != (B,):
        raise ValueError(f"pos must be (B,) = ({B},), got {tuple(pos.shape)}")
    if D & (D - 1):
        raise ValueError(f"head size {D} must be a power of two")
    check_device(qkv, k_cache, v_cache, pos)
    if qkv.stride(1) != 1:
        qkv = qkv.contiguous()
    if k_cache.stride(3) != 1 or v_cache.stride(3) != 1:
        raise ValueError("the caches' last dimension must be contiguous (they are written in place)")
    y = torch.empty(B, C, device=qkv.device, dtype=qkv.dtype)
    if B:
        _decode_kernel[(B, n_head)](qkv, k_cache, v_cache, pos, y, qkv.stride(0),
                                    *k_cache.stride()[:3], *v_cache.stride()[:3], y.stride(0), C, D ** -0.5,
                                    D=D, BLOCK=BLOCK_T, num_warps=4, **PDL_LAUNCH)
    return y
