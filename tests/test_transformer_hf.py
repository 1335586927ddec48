"""04_transformer: Hugging Face GPT-2 directories load into our model and ours export to them."""
import subprocess
import sys

import torch
import transformers

from transformer import GPT, GPTConfig
from transformer.hf import export_hf_gpt2, load_hf_gpt2


def hf_tiny(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=311, n_positions=48, n_embd=64, n_layer=3, n_head=4)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    return hf


def test_hf_directory_loads_with_equal_logits(tmp_path):
    hf = hf_tiny(tmp_path)
    ours = load_hf_gpt2(tmp_path / "hf")
    x = torch.randint(0, 311, (2, 48))
    with torch.no_grad():
        diff = (ours(x)[0] - hf(x).logits).abs().max().item()
    assert diff < 1e-4


def test_export_loads_into_hf_with_equal_logits(tmp_path):
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=257, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    export_hf_gpt2(ours, tmp_path / "out")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    x = torch.randint(0, 257, (3, 32))
    with torch.no_grad():
        assert (ours(x)[0] - hf(x).logits).abs().max().item() < 1e-4
    assert torch.equal(load_hf_gpt2(tmp_path / "out")(x)[0], ours(x)[0])


def test_loader_does_not_import_transformers(tmp_path):
    hf_tiny(tmp_path)
    code = ("import sys; from transformer.hf import load_hf_gpt2; load_hf_gpt2(sys.argv[1]); "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "hf")], check=True)
