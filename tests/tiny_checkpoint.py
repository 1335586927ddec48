"""A tiny run directory for tests: tokenizer + a checkpoint that has memorised two conversations.

`make_tiny_run(tmp_path)` writes
    tmp_path/tokenizer/            (Tokenizer.save)
    tmp_path/agent/                (save_checkpoint; meta["tokenizer"] points at the tokenizer)
and returns the checkpoint directory. The model (2 layers, 64 wide, ~300-token vocab, block 256)
is overfit for a few seconds on CONVERSATIONS, so its greedy output is known:
- after TOOL_PROMPT it emits `<|thought|>I need to compute 1234 + 5678.<|action|>calc(1234 + 5678)<|observation|>`,
- after the observation "6912" it emits `<|answer|>6912.<|end|>`,
- after CHAT_PROMPT it emits `<|thought|>A greeting.<|answer|>Hello! How can I help?<|end|>`.
Use it wherever a real (small) checkpoint is needed; it is not a language model.
"""
from __future__ import annotations

from pathlib import Path

import torch

from transformer import GPT, GPTConfig
from transformer.chat import render
from transformer.checkpoint import save_checkpoint
from transformer.tokenizer import Tokenizer

TOOL_PROMPT = "What is 1234 plus 5678?"
CHAT_PROMPT = "Hi there!"
TOOL_CALL = {"id": "call_1", "type": "function",
             "function": {"name": "calc", "arguments": '{"expression": "1234 + 5678"}'}}
CONVERSATIONS = [
    [{"role": "user", "content": TOOL_PROMPT},
     {"role": "assistant", "content": None, "reasoning_content": "I need to compute 1234 + 5678.",
      "tool_calls": [TOOL_CALL]},
     {"role": "tool", "tool_call_id": "call_1", "content": "6912"},
     {"role": "assistant", "content": "6912."}],
    [{"role": "user", "content": CHAT_PROMPT},
     {"role": "assistant", "content": "Hello! How can I help?", "reasoning_content": "A greeting."}],
]
TEXT = ("The quick brown fox jumps over the lazy dog. Numbers like 1234 and 5678 add up. "
        "Hello there, how can I help you today? héllo wörld ✓ ") * 4


def make_tiny_run(tmp_path: str | Path, steps: int = 150, seed: int = 0) -> Path:
    tmp_path = Path(tmp_path)
    texts = [TEXT] + [str(m.get("content") or "") + str(m.get("reasoning_content") or "")
                      for conv in CONVERSATIONS for m in conv]
    tok = Tokenizer.train(texts, vocab_size=320)
    tok.save(str(tmp_path / "tokenizer"))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=256, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=64))
    rows = [render(conv, tok) for conv in CONVERSATIONS]
    T = max(len(ids) for ids, _ in rows)
    x = torch.zeros(len(rows), T, dtype=torch.long)
    y = torch.full((len(rows), T), -100, dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        x[i, :len(ids)] = torch.tensor(ids)
        y[i, :len(ids) - 1] = torch.tensor([t if m else -100 for t, m in zip(ids[1:], mask[1:])])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra threads only add contention (10x slower on 2 busy cores)
    try:
        model.train()
        for _ in range(steps):
            _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    ckpt = tmp_path / "agent"
    save_checkpoint(ckpt, model, {"stage": "agent", "step": steps, "loss": loss.item(),
                                  "tokenizer": str(tmp_path / "tokenizer")})
    return ckpt


def load_tiny_run(tmp_path: str | Path) -> tuple[GPT, Tokenizer]:
    """make_tiny_run, then the model (one torch thread: tiny models run fastest so) and its tokenizer."""
    from transformer.checkpoint import load_checkpoint
    torch.set_num_threads(1)
    model, meta = load_checkpoint(make_tiny_run(tmp_path))
    return model, Tokenizer.load(meta["tokenizer"])
