"""app.trace prints a query's path through every layer (tiny random model: the path, not the answer)."""
import re
import subprocess
import sys

from transformer import GPT, GPTConfig
from transformer.checkpoint import save_checkpoint
from transformer.tokenizer import Tokenizer


def test_trace_shows_every_layer(tmp_path):
    tok = Tokenizer.train("What is 1234 plus 5678? It is 6912. calc lookup answer " * 40, 320)
    tok.save(tmp_path / "tokenizer")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32))
    save_checkpoint(tmp_path / "agent", model, {"tokenizer": str(tmp_path / "tokenizer")})
    out = subprocess.run([sys.executable, "-m", "app.trace", "What is 1234 plus 5678?", "--checkpoint",
                          str(tmp_path / "agent"), "--max-tokens", "8", "--attn-backend", "manual"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    for hop in ("browser -> 01_app", "02_agent -> 03_model", "encode with our BPE", "greedy decoding"):
        assert hop in out
    assert "<|user|>What is 1234 plus 5678?<|end|><|assistant|>" in out  # the rendered prompt
    assert re.search(r"transformer.h.0.attn.c_attn +\(1, (\d+), 32\) +-> \(1, \1, 96\)", out)
    kernels = re.search(r"attention backend: 'manual'; attention kernels run: (.*)", out).group(1)
    assert "aten::softmax" in kernels and "scaled_dot_product" not in kernels  # unfused path really ran
    assert "KV cache:" in out
