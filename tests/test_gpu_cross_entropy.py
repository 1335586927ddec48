"""05_gpu's fused cross-entropy kernel vs torch.nn.functional.cross_entropy, forward and backward.

Runs in Triton's CPU interpreter without CUDA (gpu.triton_util sets TRITON_INTERPRET), on the GPU
when there is one."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from gpu.cross_entropy import cross_entropy  # noqa: E402
from gpu.triton_util import INTERPRET  # noqa: E402
from transformer import GPT, GPTConfig  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRET else "cpu"


def both(logits: torch.Tensor, targets: torch.Tensor):
    """(loss, grad) from the kernel and from PyTorch (in fp32) for the same inputs."""
    out = []
    for fn in (cross_entropy, lambda x, t: F.cross_entropy(x.float(), t, ignore_index=-100)):
        x = logits.detach().clone().requires_grad_()
        loss = fn(x, targets)
        loss.backward()
        out.append((loss.detach(), x.grad))
    return out


@pytest.mark.parametrize("N,V", [(2, 1), (6, 50), (5, 4096), (3, 5000)])  # V below, at and past one block
def test_matches_torch_fp32(N, V):
    g = torch.Generator().manual_seed(N * V)
    logits = (torch.randn(N, V, generator=g) * 4).to(DEVICE)
    targets = torch.randint(0, V, (N,), generator=g).to(DEVICE)
    targets[N // 2] = -100  # one ignored row
    (loss, grad), (ref_loss, ref_grad) = both(logits, targets)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)
    assert grad[N // 2].abs().max() == 0  # an ignored row gets no gradient


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_give_fp32_loss_and_a_gradient_in_their_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(8, 700, generator=g) * 3).to(DEVICE, dtype)
    targets = torch.randint(0, 700, (8,), generator=g).to(DEVICE)
    (loss, grad), (ref_loss, ref_grad) = both(logits, targets)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)  # both read the same rounded logits
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=2e-2, atol=2e-3)


def test_strided_logits_huge_values_and_a_scaled_upstream_gradient():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(10, 64, generator=g).to(DEVICE)
    base[0, 3] = 1e4  # online softmax must not overflow
    logits = base[::2, :33]  # row stride 128, not contiguous
    targets = torch.tensor([3, 0, 32, 5, -100], device=DEVICE)
    x = logits.clone().requires_grad_()
    (3 * cross_entropy(x, targets)).backward()
    y = logits.clone().requires_grad_()
    (3 * F.cross_entropy(y, targets)).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-6)


def test_every_row_ignored_is_nan_like_torch_and_bad_targets_are_nan():
    logits = torch.randn(3, 10, device=DEVICE)
    assert torch.isnan(cross_entropy(logits, torch.full((3,), -100, device=DEVICE)))
    assert torch.isnan(F.cross_entropy(logits, torch.full((3,), -100, device=DEVICE)))
    assert torch.isnan(cross_entropy(logits, torch.tensor([1, 10, 2], device=DEVICE)))  # 10 is past V


def test_bad_shapes_and_dtypes_are_clear_errors():
    with pytest.raises(ValueError, match=r"\(N, V\)"):
        cross_entropy(torch.randn(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, V\)"):
        cross_entropy(torch.randn(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="fp16, bf16 or fp32"):
        cross_entropy(torch.randn(2, 3).double(), torch.zeros(2, dtype=torch.long))


def test_model_loss_backends_agree_and_the_kernel_works_under_torch_compile():
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=16, vocab_size=96, n_layer=1, n_head=2, n_embd=16, loss_backend="triton")
    model = GPT(cfg).to(DEVICE)
    x = torch.randint(0, 96, (2, 16), device=DEVICE)
    y = x.clone()
    y[0, :4] = -100
    grads = []
    for backend in ("triton", "torch"):
        model.config.loss_backend = backend
        model.zero_grad()
        logits, loss = model(x, y)
        loss.backward()
        assert not logits.requires_grad  # with targets, the loss is the one differentiable output
        grads.append((loss.detach(), model.lm_head.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-7)
    model.config.loss_backend = "triton"
    model.zero_grad()
    sparse = model.learned_loss(x, y)  # the kernel on the (N, V) logits of the learned positions only
    sparse.backward()
    torch.testing.assert_close(sparse.detach(), grads[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.lm_head.weight.grad, grads[1][1], rtol=1e-4, atol=1e-7)
    compiled = torch.compile(lambda a, b: cross_entropy(a, b), fullgraph=True)  # opaque custom op, no graph break
    logits = torch.randn(4, 40, device=DEVICE)
    t = torch.tensor([1, 2, -100, 39], device=DEVICE)
    torch.testing.assert_close(compiled(logits, t), F.cross_entropy(logits, t), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown loss_backend"):
        GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=1, n_embd=8, loss_backend="cuda"))(
            torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))


def test_bf16_residual_keeps_the_residual_stream_in_the_autocast_dtype():
    seen = []
    model = GPT(GPTConfig(block_size=8, vocab_size=32, n_layer=2, n_head=1, n_embd=16, loss_backend="torch"))
    model.transformer.h[1].register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    x = torch.randint(0, 32, (2, 8))
    for flag in (True, False):
        model.config.bf16_residual = flag
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x, x)
        model(x, x)  # no autocast: fp32 either way
    assert seen == [torch.bfloat16, torch.float32, torch.float32, torch.float32]
