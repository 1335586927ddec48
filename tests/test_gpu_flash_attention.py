"""Triton flash attention (gpu.flash_attention) vs a plain PyTorch reference, forward and backward.

Runs in Triton's CPU interpreter. TRITON_INTERPRET is read when a kernel is decorated, i.e. when
gpu.flash_attention is imported, so it is set before that import; gpu.triton_util also sets it on
any machine without CUDA, so the order in which pytest imports test files does not matter.
Without CUDA the kernels always run interpreted. bf16 runs too: Triton's interpreter gets bf16
tl.dot wrong, so gpu.triton_util.dot upcasts bf16 to fp32 there (interpreter only).
"""
import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from gpu.flash_attention import flash_attention  # noqa: E402
from gpu.triton_util import INTERPRET  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRET else "cpu"
LOWP = (torch.float16, torch.bfloat16)


def reference(q, k, v, is_causal: bool, sm_scale: float | None = None):
    """matmul -> softmax -> matmul in the inputs' dtype (fp32 inputs give the exact reference)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    s = (q @ k.transpose(-1, -2)) * scale
    if is_causal:
        T = q.shape[-2]
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    return torch.softmax(s.float(), dim=-1).to(q.dtype) @ v


def run(fn, q, k, v, do, **kw):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    o = fn(q, k, v, **kw)
    o.backward(do)
    return [o.detach(), q.grad, k.grad, v.grad]


def check(q, k, v, is_causal: bool, sm_scale: float | None = None) -> None:
    do = torch.randn_like(q)
    ours = run(flash_attention, q, k, v, do, is_causal=is_causal, sm_scale=sm_scale)
    exact = run(reference, q.float(), k.float(), v.float(), do.float(), is_causal=is_causal, sm_scale=sm_scale)
    if q.dtype in LOWP:
        # a low-precision kernel can only be judged against what low precision allows: PyTorch's own
        # attention in that dtype. Ours must be no worse than 2x its error (plus a rounding floor).
        torch_lowp = run(reference, q, k, v, do, is_causal=is_causal, sm_scale=sm_scale)
        floor = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[q.dtype]
    for i, name in enumerate(["out", "dq", "dk", "dv"]):
        assert ours[i].dtype == q.dtype and ours[i].shape == q.shape
        err = (ours[i].float() - exact[i]).abs().max().item()
        if q.dtype == torch.float32:
            tol = 1e-5 * max(1.0, exact[i].abs().max().item())
        else:
            tol = 2 * (torch_lowp[i].float() - exact[i]).abs().max().item() + floor
        assert err <= tol, f"{name}: max err {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("is_causal", [False, True])
@pytest.mark.parametrize("D,T", [(32, 77), (64, 40), (128, 33)])
def test_matches_reference(dtype: torch.dtype, is_causal: bool, D: int, T: int) -> None:
    # T is never a multiple of the block sizes (16/32 in the interpreter): ragged tails are masked
    torch.manual_seed(D * 1000 + T + is_causal)
    B, H = 2, 2
    q, k, v = (torch.randn(B, H, T, D, device=DEVICE).to(dtype) for _ in range(3))
    check(q, k, v, is_causal)


@pytest.mark.parametrize("T", [1, 5, 16, 64])
def test_short_and_block_multiple_lengths(T: int) -> None:
    torch.manual_seed(T)
    q, k, v = (torch.randn(1, 3, T, 16, device=DEVICE) for _ in range(3))
    check(q, k, v, is_causal=True)
    check(q, k, v, is_causal=False)


def test_custom_scale_and_strided_inputs() -> None:
    # the model hands in q, k, v as (B, T, H, D).transpose(1, 2): strided, not contiguous
    torch.manual_seed(0)
    qkv = torch.randn(2, 50, 3, 4, 32, device=DEVICE)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    assert not q.is_contiguous()
    check(q, k, v, is_causal=True, sm_scale=0.3)


def test_causal_first_row_attends_only_to_itself() -> None:
    q, k, v = (torch.randn(1, 1, 20, 32, device=DEVICE) for _ in range(3))
    y = flash_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(y[0, 0, 0], v[0, 0, 0], rtol=1e-5, atol=1e-5)


def test_backend_signature_positional() -> None:
    # transformer registers it as fn(q, k, v, is_causal) -> y
    q, k, v = (torch.randn(1, 2, 24, 32, device=DEVICE) for _ in range(3))
    torch.testing.assert_close(flash_attention(q, k, v, True), reference(q, k, v, True), rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_clear_errors() -> None:
    q = torch.randn(1, 2, 8, 32, device=DEVICE)
    with pytest.raises(ValueError, match="head dim"):
        flash_attention(q[..., :24], q[..., :24], q[..., :24])
    with pytest.raises(ValueError, match=r"\(B, H, T, D\)"):
        flash_attention(q, q[:, :, :4], q)
    with pytest.raises(ValueError, match="dtype"):
        flash_attention(q, q.half(), q)
