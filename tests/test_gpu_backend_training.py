"""Training a tiny GPT with attn_backend="triton" (our flash attention) tracks attn_backend="sdpa".

The Triton kernels run in the CPU interpreter here (see test_gpu_flash_attention.py).
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from transformer import GPT, GPTConfig  # noqa: E402


def train_losses(backend: str, steps: int = 4) -> list[float]:
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, vocab_size=64, n_layer=2, n_head=2, n_embd=64, attn_backend=backend)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    batch = torch.randint(0, cfg.vocab_size, (3, 25), generator=g)  # T=24: not a block multiple
    losses = []
    for _ in range(steps):  # the same batch each step: its loss must fall
        _, loss = model(batch[:, :-1], targets=batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_triton_backend_trains_like_sdpa() -> None:
    sdpa, triton = train_losses("sdpa"), train_losses("triton")
    assert sdpa[-1] < sdpa[0] - 0.05, f"tiny model did not learn its batch: {sdpa}"
    for step, (a, b) in enumerate(zip(sdpa, triton)):
        assert abs(a - b) < 1e-4, f"step {step}: sdpa loss {a:.6f} vs triton {b:.6f}"
