"""A residual add fused with the LayerNorm that reads its result: one kernel instead of two.

    x, h = add_layer_norm(x, r, weight, bias, eps)   # x, r (N, C)
        x = x + r            (rounded to x's dtype: the residual stream as the unfused model keeps it)
        h = LayerNorm(x) * weight + bias

A pre-LayerNorm transformer does this twice per block (x + attention -> ln_2, x + MLP -> next ln_1).
For a decode step at batch 1 each of those is a kernel of a few microseconds whose launch latency
is most of its cost; fusing them halves that count. One program per row: the row is loaded once,
the add, mean and variance are fp32 (two-pass variance on the row held in registers), and both
outputs are written in x's dtype. Inference only (no backward).
"""
import torch

from gpu.triton_util import check_device

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402


@triton.jit
def _add_ln_kernel(X, R, W, B, X_OUT, H_OUT, stride_x, stride_r, stride_xo, stride_ho, N, eps,
                   HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    live = cols < N
    x = tl.load(X + row * stride_x + cols, mask=live, other=0.0).to(tl.float32)
    x += tl.load(R + row * stride_r + cols, mask=live, other=0.0).to(tl.float32)
    x = x.to(X_OUT.dtype.element_ty)  # the residual stream's own rounding, then normalise that
    tl.store(X_OUT + row * stride_xo + cols, x, mask=live)
    x = x.to(tl.float32)
    mean = tl.sum(x, axis=0) / N
    diff = tl.where(live, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(diff * diff, axis=0) / N + eps)
    h = diff * rstd * tl.load(W + cols, mask=live, other=0.0).to(tl.float32)
    if HAS_BIAS:
        h += tl.load(B + cols, mask=live, other=0.0).to(tl.float32)
    tl.store(H_OUT + row * stride_ho + cols, h.to(H_OUT.dtype.element_ty), mask=live)


def add_layer_norm(x: torch.Tensor, r: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + r, layer_norm(x + r)) for x, r (N, C); both outputs in x's dtype."""
    if x.dim() != 2 or r.shape != x.shape:
        raise ValueError(f"x and r must both be (N, C), got {tuple(x.shape)} and {tuple(r.shape)}")
    N, C = x.shape
    if weight.shape != (C,) or (bias is not None and bias.shape != (C,)):
        raise ValueError(f"weight and bias must be ({C},)")
    check_device(x, r, weight, *([bias] if bias is not None else []))
    x, r = (t if t.stride(1) == 1 else t.contiguous() for t in (x, r))
    x_out, h_out = torch.empty_like(x), torch.empty_like(x)
    if N:
        _add_ln_kernel[(N,)](x, r, weight, bias if bias is not None else weight, x_out, h_out,
                             x.stride(0), r.stride(0), x_out.stride(0), h_out.stride(0), C, eps,
                             HAS_BIAS=bias is not None, BLOCK=triton.next_power_of_2(C),
                             num_warps=4 if C <= 2048 else 8)
    return x_out, h_out
