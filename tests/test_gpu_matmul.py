"""Triton matmul (gpu.matmul) vs torch.matmul on odd shapes; runs in Triton's CPU interpreter."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before gpu imports triton (read at kernel decoration)

import pytest  # noqa: E402
import torch  # noqa: E402

from gpu.matmul import matmul  # noqa: E402
from gpu.triton_util import INTERPRET  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRET else "cpu"


def test_interpreter_active_without_cuda() -> None:
    if not torch.cuda.is_available():
        assert INTERPRET, "gpu.triton_util must switch Triton to its interpreter when CUDA is absent"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1), (33, 65, 17), (100, 37, 129), (64, 64, 64), (7, 130, 40)])
def test_matmul_matches_torch(dtype: torch.dtype, shape: tuple) -> None:
    M, N, K = shape
    g = torch.Generator().manual_seed(M * 10007 + N * 101 + K)
    a = torch.randn(M, K, generator=g).to(DEVICE, dtype)
    b = torch.randn(K, N, generator=g).to(DEVICE, dtype)
    c = matmul(a, b)
    assert c.shape == (M, N) and c.dtype == dtype
    ref = (a.float() @ b.float())  # fp32 accumulation, like the kernel
    # the only difference allowed is rounding the fp32 result to the output dtype (plus tf32-free fp32 noise)
    ulp = {torch.float32: 1e-6, torch.float16: 2**-10, torch.bfloat16: 2**-7}[dtype]
    tol = 2 * ulp * ref.abs().max().item() + 1e-5 * K ** 0.5
    err = (c.float() - ref).abs().max().item()
    assert err <= tol, f"max abs err {err:.3g} > {tol:.3g} for {dtype} {shape}"


def test_matmul_noncontiguous_and_errors() -> None:
    a = torch.randn(40, 24).to(DEVICE)
    b = torch.randn(30, 24).to(DEVICE)
    torch.testing.assert_close(matmul(a, b.t()), a @ b.t(), rtol=1e-5, atol=1e-5)  # strided B
    with pytest.raises(ValueError, match="inner dimensions"):
        matmul(a, b)
    with pytest.raises(ValueError, match="dtypes"):
        matmul(a, b.t().half())
    with pytest.raises(ValueError, match="2-D"):
        matmul(a[None], b)
