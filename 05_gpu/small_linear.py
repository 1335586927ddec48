"""A linear layer for a few rows (decoding), with the LayerNorm before it and the GELU or the residual
add after it fused in: one kernel per matmul of a decode step.

    y = small_linear(x, weight, bias, norm=(g, b, eps), gelu=False, residual=None)
        x (B, K), weight (N, K) as nn.Linear keeps it, bias (N,) or None  ->  y (B, N)
        y = [residual +] [gelu](LayerNorm(x) @ weight.T + bias)

Why: at batch 1 a decode step of GPT-2 small reads 250 MB of weights and does almost no math. With
cuBLAS its 49 matmuls took ~250 us of a 554 us step on the H100: each is a few microseconds of launch
and ramp-up on too few blocks for a (1 x 768) @ (768 x 2304) product to keep the memory system busy,
and needs neighbours (LayerNorm, GELU, residual add) that are kernels of their own. Here one program
computes BLOCK_N outputs for all B rows:

- it streams its BLOCK_N weight rows (contiguous in K) once, whatever B is, in BLOCK_K chunks;
- the LayerNorm of x is recomputed by every program (x is a few KB and stays in cache), on the whole
  row in registers, while the program's weights are on their way;
- bias, GELU (tanh form) and the residual add are applied to the accumulator before the one store;
- on Hopper it is launched with programmatic dependent launch (triton_util.PDL): it lets the next
  kernel start at once, and loads its own first weights before it waits for the kernel before it,
  so a chain of these overlaps each kernel's launch and weight fetch with its predecessor's work.

Rounding follows the unfused bf16 model: the normalised x, the matmul output and the GELU output are
rounded to the weights' dtype where the PyTorch path would store them, so both paths agree to bf16
precision. Accumulation is fp32. Inference only (no backward). Beyond a few rows cuBLAS wins: it
multiplies on tensor cores, while this kernel's products run on CUDA cores and hold registers that
grow with the rows (reports/small_linear_h100.json: 1.9x faster per layer at 1 row, 1.09x at 4).
"""
import torch

from gpu.triton_util import PDL_LAUNCH, check_device, release_dependents, wait_for_inputs

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402

MAX_ROWS = 4  # rows per call; for more, cuBLAS reads each weight once for many rows and wins
MAX_NORM_K = 4096  # a fused LayerNorm holds the whole row in registers


@triton.jit
def _round(x, dtype: tl.constexpr):
    """x rounded to dtype and back to fp32: what storing it in dtype and reading it back gives."""
    return x.to(dtype).to(tl.float32)


@triton.jit
def linear_tile(X, W, BIAS, G, BETA, B, N, K, stride_x, stride_w, eps, rows, n,
                HAS_BIAS: tl.constexpr, HAS_NORM: tl.constexpr, HAS_NORM_BIAS: tl.constexpr,
                BLOCK_K: tl.constexpr):
    """One program's tile: [LayerNorm](X[rows]) @ W[n].T + bias -> (len(rows), len(n)) fp32, rounded to
    W's dtype as the unfused model stores it. Loads its first weights, then waits for its inputs."""
    n_ok, row_ok = n < N, rows < B
    x_rows = X + rows[:, None] * stride_x
    w_rows = W + n[:, None] * stride_w
    k = tl.arange(0, BLOCK_K)
    k_ok = k < K
    # the weights first: their load is the long wait, and the norm's arithmetic can hide under it
    w = tl.load(w_rows + k[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
    wait_for_inputs()  # x (and a residual) come from the kernels before
    ok = row_ok[:, None] & k_ok[None, :]
    x = tl.load(x_rows + k[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_NORM:  # the whole row is one chunk (BLOCK_K >= K): normalise it in registers
        d = tl.where(ok, x - (tl.sum(x, axis=1) / K)[:, None], 0.0)  # two-pass variance, exact in fp32
        x = d * (1.0 / tl.sqrt(tl.sum(d * d, axis=1) / K + eps))[:, None]
        x *= tl.load(G + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
        if HAS_NORM_BIAS:
            x += tl.load(BETA + k, mask=k_ok, other=0.0).to(tl.float32)[None, :]
        x = _round(x, W.dtype.element_ty)  # the LayerNorm's output, as the unfused model stores it
    acc = tl.sum(x[:, None, :] * w[None, :, :], axis=2)  # (BLOCK_B, BLOCK_N)
    for k0 in range(BLOCK_K, K, BLOCK_K):  # (only without a norm) the rest of K
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < K
        w = tl.load(w_rows + k[None, :], mask=n_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
        x = tl.load(x_rows + k[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(x[:, None, :] * w[None, :, :], axis=2)
    if HAS_BIAS:
        acc += tl.load(BIAS + n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    return _round(acc, W.dtype.element_ty)  # the matmul's output, as the unfused model stores it


@triton.jit
def _small_linear_kernel(X, W, BIAS, G, BETA, RES, Y, B, N, K, stride_x, stride_w, stride_r, stride_y, eps,
                         HAS_BIAS: tl.constexpr, HAS_NORM: tl.constexpr, HAS_NORM_BIAS: tl.constexpr,
                         GELU: tl.constexpr,
                         HAS_RES: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr):
    release_dependents()  # the next kernel may start loading its weights now
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.arange(0, BLOCK_B)
    acc = linear_tile(X, W, BIAS, G, BETA, B, N, K, stride_x, stride_w, eps, rows, n,
                      HAS_BIAS, HAS_NORM, HAS_NORM_BIAS, BLOCK_K)
    if GELU:  # tanh approximation, as GPT-2; tanh(u) = 2 sigmoid(2u) - 1
        u = 0.7978845608028654 * (acc + 0.044715 * acc * acc * acc)
        acc = _round(0.5 * acc * (1.0 + (2.0 * tl.sigmoid(2.0 * u) - 1.0)), W.dtype.element_ty)
    out_ok = (rows < B)[:, None] & (n < N)[None, :]
    if HAS_RES:
        acc += tl.load(RES + rows[:, None] * stride_r + n[None, :], mask=out_ok, other=0.0).to(tl.float32)
    tl.store(Y + rows[:, None] * stride_y + n[None, :], acc.to(Y.dtype.element_ty), mask=out_ok)


def _config(B: int, K: int) -> tuple[int, int, int, int]:
    """(BLOCK_B, BLOCK_N, BLOCK_K, num_warps): few outputs per program (many programs keep every SM
    loading) and long K chunks, at most 8192 products in registers per iteration. Picked by a sweep
    on the H100 at GPT-2 small's shapes, B = 1 and 4 (03_model/README.md)."""
    block_b = triton.next_power_of_2(B)
    return block_b, 4 if block_b <= 2 else 2, min(1024, triton.next_power_of_2(K)), 2


def small_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 norm: tuple[torch.Tensor, torch.Tensor | None, float] | None = None, gelu: bool = False,
                 residual: torch.Tensor | None = None) -> torch.Tensor:
    """[residual +] [gelu](layer_norm(x) @ weight.T + bias) for x (B, K) with B <= MAX_ROWS -> (B, N) in
    weight's dtype. norm = (gamma, beta or None, eps) of the LayerNorm applied to x first."""
    if x.dim() != 2 or weight.dim() != 2 or x.size(1) != weight.size(1):
        raise ValueError(f"need x (B, K) and weight (N, K), got {tuple(x.shape)} and {tuple(weight.shape)}")
    B, K = x.shape
    N = weight.size(0)
    if not 0 < B <= MAX_ROWS:
        raise ValueError(f"small_linear takes 1 to {MAX_ROWS} rows, got {B}: use a matmul for more")
    if bias is not None and bias.shape != (N,):
        raise ValueError(f"bias must be ({N},), got {tuple(bias.shape)}")
    if residual is not None and residual.shape != (B, N):
        raise ValueError(f"residual must be ({B}, {N}), got {tuple(residual.shape)}")
    g, beta, eps = norm if norm is not None else (None, None, 0.0)
    if g is not None and (g.shape != (K,) or (beta is not None and beta.shape != (K,))):
        raise ValueError(f"the norm's weight and bias must be ({K},)")
    tensors = [t for t in (x, weight, bias, g, beta, residual) if t is not None]
    check_device(*tensors)
    x, weight = (t if t.stride(1) == 1 else t.contiguous() for t in (x, weight))
    if residual is not None and residual.stride(1) != 1:
        residual = residual.contiguous()
    y = torch.empty(B, N, device=x.device, dtype=weight.dtype)
    BLOCK_B, BLOCK_N, BLOCK_K, warps = _config(B, K)
    if g is not None:  # the LayerNorm needs the whole row in one chunk
        if K > MAX_NORM_K:
            raise ValueError(f"a fused LayerNorm needs K <= {MAX_NORM_K}, got {K}")
        BLOCK_K = triton.next_power_of_2(K)
    dummy = weight  # stands in for absent optional tensors (never read: the flags are off)
    _small_linear_kernel[(triton.cdiv(N, BLOCK_N),)](
        x, weight, bias if bias is not None else dummy, g if g is not None else dummy,
        beta if beta is not None else dummy, residual if residual is not None else dummy, y,
        B, N, K, x.stride(0), weight.stride(0), residual.stride(0) if residual is not None else 0, y.stride(0),
        eps, HAS_BIAS=bias is not None, HAS_NORM=g is not None, HAS_NORM_BIAS=beta is not None,
        GELU=gelu, HAS_RES=residual is not None, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, num_warps=warps, **PDL_LAUNCH)
    return y
