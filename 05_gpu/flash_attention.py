"""Flash attention in Triton: forward and backward, causal or not, any sequence length.

    y = flash_attention(q, k, v, is_causal=True)      # q, k, v, y: (B, H, T, D)

Forward (one program per BLOCK_M query rows of one head): stream K/V blocks through on-chip
memory and keep a running ("online") softmax: the row max m, the row sum l and the unnormalised
output acc are rescaled whenever a new block raises the max, so the T x T score matrix is never
written to memory. Scores are kept in log2 units (sm_scale * log2(e) folded into one multiply) so
the exponential is a single exp2. The log-sum-exp of each row is saved for the backward pass.

Causal: K/V blocks entirely above the diagonal are never visited (the loop stops at the diagonal),
and only blocks that cross the diagonal or the end of the sequence pay for masking: each loop
runs in an unmasked and a masked stage (the MASK constexpr compiles two versions of the body).

Backward (FlashAttention-2 style, no atomics): delta = rowsum(dO * O); one kernel per K/V block
loops over query blocks and accumulates dK, dV; another per query block loops over K/V blocks and
accumulates dQ. Probabilities are recomputed from the saved log-sum-exp.
"""
import math
import os

import torch

from gpu.triton_util import INTERPRET, check_device, dot

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402

LOG2E = 1.4426950408889634
HEAD_DIMS = (16, 32, 64, 128)


@triton.jit
def _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, T, qk_scale,
               lo, hi, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, MASK: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        if MASK:
            k = tl.load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None], mask=offs_n[None, :] < T, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], mask=offs_n[:, None] < T, other=0.0)
        else:
            k = tl.load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None])
            v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :])
        s = dot(q, k, tl.zeros([q.shape[0], BLOCK_N], dtype=tl.float32)) * qk_scale  # log2 units
        if MASK:
            valid = offs_n[None, :] < T
            if CAUSAL:
                valid = valid & (offs_m[:, None] >= offs_n[None, :])
            s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)  # rescales what was accumulated under the old max
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    return acc, l_i, m_i


@triton.jit(do_not_specialize=["T"])  # T == 1 would otherwise become a constexpr
def _fwd_kernel(Q, K, V, O, LSE, qk_scale, stride_qb, stride_qh, stride_qt, stride_kb, stride_kh,
                stride_kt, stride_vb, stride_vh, stride_vt, stride_ob, stride_oh, stride_ot, H, T,
                HEAD_D: tl.constexpr, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b, h = bh // H, bh % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :],
                mask=offs_m[:, None] < T, other=0.0)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_D], dtype=tl.float32)
    if CAUSAL:  # full blocks left of the diagonal, then the diagonal; nothing to its right
        lo, hi = start_m, tl.minimum(start_m + BLOCK_M, T)
    else:  # full blocks, then the ragged end of the sequence
        lo, hi = (T // BLOCK_N) * BLOCK_N, T
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, T,
                               qk_scale, 0, lo, BLOCK_N, CAUSAL, False)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, T,
                               qk_scale, lo, hi, BLOCK_N, CAUSAL, True)
    acc = acc / l_i[:, None]
    tl.store(LSE + bh * T + offs_m, m_i + tl.math.log2(l_i), mask=offs_m < T)
    tl.store(O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :],
             acc.to(O.dtype.element_ty), mask=offs_m[:, None] < T)


@triton.jit
def _bwd_preprocess(O, DO, Delta, T, HEAD_D: tl.constexpr, BLOCK: tl.constexpr):
    """delta_i = sum_d dO_id * O_id (= rowsum(P * dP)), O and dO contiguous (B*H, T, D)."""
    offs_m = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    base = tl.program_id(1) * T * HEAD_D + offs_m[:, None] * HEAD_D + tl.arange(0, HEAD_D)[None, :]
    o = tl.load(O + base, mask=offs_m[:, None] < T, other=0.0).to(tl.float32)
    do = tl.load(DO + base, mask=offs_m[:, None] < T, other=0.0).to(tl.float32)
    tl.store(Delta + tl.program_id(1) * T + offs_m, tl.sum(o * do, 1), mask=offs_m < T)


@triton.jit
def _bwd_dkdv_inner(dk, dv, k, v, q_base, do_base, lse_base, delta_base, offs_n, offs_d, T, qk_scale,
                    lo, hi, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr, MASK: tl.constexpr):
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        if MASK:
            qT = tl.load(q_base + offs_m[None, :] * offs_d.shape[0] + offs_d[:, None], mask=offs_m[None, :] < T, other=0.0)
            do = tl.load(do_base + offs_m[:, None] * offs_d.shape[0] + offs_d[None, :], mask=offs_m[:, None] < T, other=0.0)
            lse = tl.load(lse_base + offs_m, mask=offs_m < T, other=0.0)
            delta = tl.load(delta_base + offs_m, mask=offs_m < T, other=0.0)
        else:
            qT = tl.load(q_base + offs_m[None, :] * offs_d.shape[0] + offs_d[:, None])
            do = tl.load(do_base + offs_m[:, None] * offs_d.shape[0] + offs_d[None, :])
            lse = tl.load(lse_base + offs_m)
            delta = tl.load(delta_base + offs_m)
        sT = dot(k, qT, tl.zeros([k.shape[0], BLOCK_M], dtype=tl.float32))
        pT = tl.math.exp2(sT * qk_scale - lse[None, :])  # P^T recomputed from the saved log-sum-exp
        if MASK:
            valid = offs_m[None, :] < T
            if CAUSAL:
                valid = valid & (offs_m[None, :] >= offs_n[:, None])
            pT = tl.where(valid, pT, 0.0)
        dv = dot(pT.to(do.dtype), do, dv)
        dpT = dot(v, tl.trans(do), tl.zeros([k.shape[0], BLOCK_M], dtype=tl.float32))
        dsT = pT * (dpT - delta[None, :])
        dk = dot(dsT.to(qT.dtype), tl.trans(qT), dk)
    return dk, dv


@triton.jit(do_not_specialize=["T"])  # T == 1 would otherwise become a constexpr
def _bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, Delta, qk_scale, sm_scale, T, HEAD_D: tl.constexpr,
                     CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per BLOCK_N keys of one head; all tensors contiguous (B*H, T, D)."""
    start_n = tl.program_id(0) * BLOCK_N
    head = tl.program_id(1).to(tl.int64) * T * HEAD_D
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_D)
    kv_off = head + offs_n[:, None] * HEAD_D + offs_d[None, :]
    k = tl.load(K + kv_off, mask=offs_n[:, None] < T, other=0.0)
    v = tl.load(V + kv_off, mask=offs_n[:, None] < T, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_D], dtype=tl.float32)
    lse_base, delta_base = LSE + tl.program_id(1) * T, Delta + tl.program_id(1) * T
    mid = 0
    if CAUSAL:  # queries above the diagonal never see these keys: start at the diagonal block
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q + head, DO + head, lse_base, delta_base, offs_n, offs_d, T,
                                 qk_scale, start_n, tl.minimum(start_n + BLOCK_N, T), BLOCK_M, CAUSAL, True)
        mid = start_n + BLOCK_N
    full = (T // BLOCK_M) * BLOCK_M
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q + head, DO + head, lse_base, delta_base, offs_n, offs_d, T,
                             qk_scale, mid, full, BLOCK_M, CAUSAL, False)
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q + head, DO + head, lse_base, delta_base, offs_n, offs_d, T,
                             qk_scale, tl.maximum(mid, full), T, BLOCK_M, CAUSAL, True)
    tl.store(DK + kv_off, (dk * sm_scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < T)
    tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < T)


@triton.jit
def _bwd_dq_inner(dq, q, do, lse, delta, k_base, v_base, offs_m, offs_d, T, qk_scale, lo, hi,
                  BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, MASK: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_off = offs_n[None, :] * offs_d.shape[0] + offs_d[:, None]
        if MASK:
            kT = tl.load(k_base + kv_off, mask=offs_n[None, :] < T, other=0.0)
            vT = tl.load(v_base + kv_off, mask=offs_n[None, :] < T, other=0.0)
        else:
            kT = tl.load(k_base + kv_off)
            vT = tl.load(v_base + kv_off)
        s = dot(q, kT, tl.zeros([q.shape[0], BLOCK_N], dtype=tl.float32))
        p = tl.math.exp2(s * qk_scale - lse[:, None])
        if MASK:
            valid = offs_n[None, :] < T
            if CAUSAL:
                valid = valid & (offs_m[:, None] >= offs_n[None, :])
            p = tl.where(valid, p, 0.0)
        dp = dot(do, vT, tl.zeros([q.shape[0], BLOCK_N], dtype=tl.float32))
        ds = p * (dp - delta[:, None])
        dq = dot(ds.to(kT.dtype), tl.trans(kT), dq)
    return dq


@triton.jit(do_not_specialize=["T"])  # T == 1 would otherwise become a constexpr
def _bwd_dq_kernel(Q, K, V, DO, DQ, LSE, Delta, qk_scale, sm_scale, T, HEAD_D: tl.constexpr,
                   CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """One program per BLOCK_M queries of one head; all tensors contiguous (B*H, T, D)."""
    start_m = tl.program_id(0) * BLOCK_M
    head = tl.program_id(1).to(tl.int64) * T * HEAD_D
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    q_off = head + offs_m[:, None] * HEAD_D + offs_d[None, :]
    q = tl.load(Q + q_off, mask=offs_m[:, None] < T, other=0.0)
    do = tl.load(DO + q_off, mask=offs_m[:, None] < T, other=0.0)
    lse = tl.load(LSE + tl.program_id(1) * T + offs_m, mask=offs_m < T, other=0.0)
    delta = tl.load(Delta + tl.program_id(1) * T + offs_m, mask=offs_m < T, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_D], dtype=tl.float32)
    if CAUSAL:
        lo, hi = start_m, tl.minimum(start_m + BLOCK_M, T)
    else:
        lo, hi = (T // BLOCK_N) * BLOCK_N, T
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K + head, V + head, offs_m, offs_d, T, qk_scale, 0, lo,
                       BLOCK_N, CAUSAL, False)
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K + head, V + head, offs_m, offs_d, T, qk_scale, lo, hi,
                       BLOCK_N, CAUSAL, True)
    tl.store(DQ + q_off, (dq * sm_scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < T)


def _tuned(kernel, configs: list, key: list):
    """Autotuned kernel on the GPU (GPU_AUTOTUNE=0: first config only, no tuning, fast start);
    the interpreter runs the kernel with fixed small blocks."""
    if INTERPRET:
        return kernel
    return triton.autotune(configs if os.environ.get("GPU_AUTOTUNE", "1") != "0" else configs[:1], key=key)(kernel)


def _cfgs(configs: list) -> list:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) tuples -> triton.Config list."""
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in configs]


# Constraints: the forward and dQ kernels need BLOCK_N | BLOCK_M, the dK/dV kernel BLOCK_M | BLOCK_N.
# Few configs on purpose: every one is compiled per (HEAD_D, CAUSAL) and timed per T.
_KEY = ["T", "HEAD_D", "CAUSAL"]
_fwd = _tuned(_fwd_kernel, _cfgs([(128, 64, 4, 3), (128, 64, 4, 4), (128, 64, 8, 3), (128, 128, 8, 3)]), _KEY)
_dkdv = _tuned(_bwd_dkdv_kernel, _cfgs([(32, 128, 4, 3), (32, 128, 4, 5), (64, 128, 8, 3)]), _KEY)
_dq = _tuned(_bwd_dq_kernel, _cfgs([(128, 32, 4, 3), (128, 32, 4, 5), (128, 64, 8, 3)]), _KEY)
_INTERP_BLOCKS = {"fwd": (32, 16), "dkdv": (16, 32), "dq": (32, 16)}  # exercise BLOCK_M != BLOCK_N


def _meta(name: str) -> dict:
    return dict(zip(("BLOCK_M", "BLOCK_N"), _INTERP_BLOCKS[name])) if INTERPRET else {}


def _grid(T: int, BH: int, block: str):
    return lambda meta: (triton.cdiv(T, meta[block]), BH)


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, is_causal: bool, sm_scale: float):
        B, H, T, D = q.shape
        q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
        o = torch.empty((B, H, T, D), device=q.device, dtype=q.dtype)
        lse = torch.empty((B * H, T), device=q.device, dtype=torch.float32)
        _fwd[_grid(T, B * H, "BLOCK_M")](
            q, k, v, o, lse, sm_scale * LOG2E, q.stride(0), q.stride(1), q.stride(2), k.stride(0),
            k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1),
            o.stride(2), H, T, HEAD_D=D, CAUSAL=is_causal, **_meta("fwd"))
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.is_causal, ctx.sm_scale = is_causal, sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        B, H, T, D = q.shape
        # the backward kernels index (B*H, T, D) densely; q/k/v from a model are usually strided
        q, k, v, do = (x.contiguous() for x in (q, k, v, do))
        delta = torch.empty_like(lse)
        _bwd_preprocess[(triton.cdiv(T, 64), B * H)](o, do, delta, T, HEAD_D=D, BLOCK=64)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        args = (ctx.sm_scale * LOG2E, ctx.sm_scale, T)
        _dkdv[_grid(T, B * H, "BLOCK_N")](q, k, v, do, dk, dv, lse, delta, *args, HEAD_D=D,
                                           CAUSAL=ctx.is_causal, **_meta("dkdv"))
        _dq[_grid(T, B * H, "BLOCK_M")](q, k, v, do, dq, lse, delta, *args, HEAD_D=D,
                                         CAUSAL=ctx.is_causal, **_meta("dq"))
        return dq, dk, dv, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                    sm_scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * sm_scale [+ causal mask]) v for q, k, v of shape (B, H, T, D).

    sm_scale defaults to 1/sqrt(D). D in (16, 32, 64, 128); dtype fp16, bf16 or fp32 (fp32 runs
    full-precision dots). Differentiable in q, k and v. Signature matches the transformer's
    attention backends: fn(q, k, v, is_causal) -> y.
    """
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must all be (B, H, T, D), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"q, k, v need one dtype of fp16/bf16/fp32, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"head dim {q.shape[-1]} not supported; use one of {HEAD_DIMS}")
    check_device(q, k, v)
    if q.numel() == 0:
        return torch.empty_like(q)
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    return _FlashAttention.apply(q, k, v, bool(is_causal), scale)
