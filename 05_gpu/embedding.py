"""GPT-2's input embedding for decoding rows, as one kernel that can sit in a PDL chain.

    x = embed(idx, pos, wte, wpe)    # idx, pos (B,) int -> x (B, C) = wte[idx] + wpe[pos]

Why: in PyTorch this is three kernels (two gathers and an add), each of which waits for the kernel
before it to finish completely. At batch 1 they are ~5 us of a ~0.3 ms decode step; as one kernel
launched with programmatic dependent launch it starts while the step before is finishing. The sum is
fp32 rounded once to the output dtype, as PyTorch's add does.
"""
import torch

from gpu.triton_util import PDL_LAUNCH, check_device, release_dependents, wait_for_inputs

import triton  # noqa: E402  (after triton_util, which picks interpreter vs GPU)
import triton.language as tl  # noqa: E402


@triton.jit
def _embed_kernel(IDX, POS, WTE, WPE, X, C, stride_te, stride_pe, stride_x, BLOCK: tl.constexpr):
    release_dependents()
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = c < C
    wait_for_inputs()  # the ids and positions come from the step before
    i, p = tl.load(IDX + b).to(tl.int64), tl.load(POS + b).to(tl.int64)
    x = tl.load(WTE + i * stride_te + c, mask=ok).to(tl.float32) + tl.load(WPE + p * stride_pe + c, mask=ok).to(tl.float32)
    tl.store(X + b * stride_x + c, x.to(X.dtype.element_ty), mask=ok)


def embed(idx: torch.Tensor, pos: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
    """wte[idx] + wpe[pos] for idx, pos (B,) -> (B, C) in wte's dtype. Ids and positions are not
    range-checked on the device (a graph cannot raise): callers keep them in range."""
    if idx.dim() != 1 or pos.shape != idx.shape or wte.dim() != 2 or wpe.dim() != 2 or wte.size(1) != wpe.size(1):
        raise ValueError(f"need idx, pos (B,) and wte (V, C), wpe (L, C), got {tuple(idx.shape)}, "
                         f"{tuple(pos.shape)}, {tuple(wte.shape)}, {tuple(wpe.shape)}")
    if wte.stride(1) != 1 or wpe.stride(1) != 1:
        raise ValueError("embedding tables must have contiguous rows")
    check_device(idx, pos, wte, wpe)
    idx, pos = idx.contiguous(), pos.contiguous()
    B, C = idx.numel(), wte.size(1)
    x = torch.empty(B, C, device=wte.device, dtype=wte.dtype)
    BLOCK = min(1024, triton.next_power_of_2(C))
    if B:
        _embed_kernel[(B, triton.cdiv(C, BLOCK))](idx, pos, wte, wpe, x, C, wte.stride(0), wpe.stride(0),
                                                  x.stride(0), BLOCK=BLOCK, num_warps=4, **PDL_LAUNCH)
    return x
