"""Cross-entropy over a large vocabulary in Triton: one pass forward, one pass backward.

    loss = cross_entropy(logits, targets, ignore_index=-100)   # logits (N, V), targets (N,)

Why a kernel: for GPT-2 small at batch 32 x 1024 the logits are a (32768, 50304) bf16 matrix, 3.3 GB.
The loss is a few FLOPs per element, so its cost is memory traffic. torch.compile's version reads the
logits twice in the forward (max, then sum of exponentials), and the backward reads them again,
fills a gradient and writes it: about 7 ms of a 70 ms training step on an H100. Here:

- forward (one program per row): stream the row through once with an online log-sum-exp (a running
  max m and a sum s rescaled by exp(m_old - m_new) whenever the max grows, kept per lane and merged
  at the end), then pick the target's logit. It saves only lse (4 bytes per row).
- backward (one program per row): d loss / d logit_j = (exp(logit_j - lse) - [j == target]) * dloss,
  read once and written once in the logits' dtype.

That is 3 passes over the logits in all instead of 5 to 6. Everything is computed in fp32 whatever
the logits' dtype. Rows whose target is ignore_index add nothing and get a zero gradient; a target
outside [0, V) gives a NaN loss (no host-side check: that would stall the GPU every step).

The two kernels are registered as torch.library custom ops so torch.compile treats them as opaque
calls (it neither traces into nor re-fuses them) and autograd connects them.
"""
import torch

from gpu.triton_util import check_device

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402

BLOCK_V = 4096  # columns per loop iteration: 8 KB of bf16 per row in flight


@triton.jit
def _fwd_kernel(X, TARGET, LSE, LOSS, stride_x, V, ignore_index, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = X + row * stride_x
    offs = tl.arange(0, BLOCK)
    # finite start so that exp(m - m_new) is exp(0) = 1, never exp(-inf + inf) = NaN, on empty lanes
    m = tl.full([BLOCK], -1e30, tl.float32)
    s = tl.zeros([BLOCK], tl.float32)
    for start in range(0, V, BLOCK):
        cols = start + offs
        x = tl.load(x_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, x)
        s = s * tl.exp(m - m_new) + tl.exp(x - m_new)
        m = m_new
    m_row = tl.max(m, axis=0)
    lse = m_row + tl.log(tl.sum(s * tl.exp(m - m_row), axis=0))
    t = tl.load(TARGET + row)
    in_range = (t >= 0) & (t < V)
    x_t = tl.load(x_row + t, mask=in_range, other=float("nan")).to(tl.float32)
    loss = tl.where(t == ignore_index, 0.0, lse - x_t)
    tl.store(LSE + row, lse)
    tl.store(LOSS + row, loss)


@triton.jit
def _bwd_kernel(X, TARGET, LSE, DLOSS, DX, stride_x, stride_dx, V, ignore_index, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row, dx_row = X + row * stride_x, DX + row * stride_dx
    offs = tl.arange(0, BLOCK)
    t = tl.load(TARGET + row)
    lse = tl.load(LSE + row)
    scale = tl.where(t == ignore_index, 0.0, tl.load(DLOSS + row))
    for start in range(0, V, BLOCK):
        cols = start + offs
        x = tl.load(x_row + cols, mask=cols < V, other=0.0).to(tl.float32)
        g = (tl.exp(x - lse) - tl.where(cols == t, 1.0, 0.0)) * scale
        tl.store(dx_row + cols, g.to(DX.dtype.element_ty), mask=cols < V)


def _block(V: int) -> int:
    return min(BLOCK_V, triton.next_power_of_2(V))


@torch.library.custom_op("llmstack::cross_entropy_rows", mutates_args=())
def _rows(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row losses (N,) fp32 (0 where ignored) and log-sum-exps (N,) fp32."""
    N, V = logits.shape
    loss = torch.empty(N, device=logits.device, dtype=torch.float32)
    lse = torch.empty(N, device=logits.device, dtype=torch.float32)
    if N:
        _fwd_kernel[(N,)](logits, targets, lse, loss, logits.stride(0), V, ignore_index, BLOCK=_block(V),
                          num_warps=8)
    return loss, lse


@_rows.register_fake
def _(logits, targets, ignore_index):
    N = logits.shape[0]
    return logits.new_empty(N, dtype=torch.float32), logits.new_empty(N, dtype=torch.float32)


@torch.library.custom_op("llmstack::cross_entropy_rows_backward", mutates_args=())
def _rows_backward(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor, dloss: torch.Tensor,
                   ignore_index: int) -> torch.Tensor:
    N, V = logits.shape
    dx = torch.empty_like(logits)
    if N:
        _bwd_kernel[(N,)](logits, targets, lse, dloss.contiguous(), dx, logits.stride(0), dx.stride(0), V,
                          ignore_index, BLOCK=_block(V), num_warps=8)
    return dx


@_rows_backward.register_fake
def _(logits, targets, lse, dloss, ignore_index):
    return torch.empty_like(logits)


def _setup(ctx, inputs, output):
    logits, targets, ignore_index = inputs
    ctx.save_for_backward(logits, targets, output[1])
    ctx.ignore_index = ignore_index


def _backward(ctx, dloss, _dlse):  # lse is an internal output: its gradient is not propagated
    logits, targets, lse = ctx.saved_tensors
    return _rows_backward(logits, targets, lse, dloss, ctx.ignore_index), None, None


_rows.register_autograd(_backward, setup_context=_setup)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of logits (N, V) against targets (N,) over the rows whose target is not
    ignore_index (NaN when every row is ignored, like torch.nn.functional.cross_entropy).
    Differentiable in logits; the gradient comes back in the logits' dtype."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"need logits (N, V) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if logits.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"logits must be fp16, bf16 or fp32, got {logits.dtype}")
    check_device(logits, targets)
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    loss_rows, _ = _rows(logits, targets.contiguous(), int(ignore_index))
    n_valid = (targets != ignore_index).sum()
    return loss_rows.sum() / n_valid
