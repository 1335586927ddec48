"""Hugging Face GPT-2 interop, offline and without importing `transformers`.

A HF GPT-2 directory holds config.json (n_embd, n_layer, n_head, n_positions, vocab_size, ...)
and model.safetensors. Our module names are GPT-2's, so the only real work is the Conv1D layers:
HF stores their weights as (in, out), nn.Linear as (out, in), hence the transposes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import CheckpointError, check_state, load_state, read_json
from .model import GPT, GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _config_from_hf(hf: dict, attn_backend: str) -> GPTConfig:
    try:
        if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"activation {hf['activation_function']!r} is not GPT-2's tanh GELU")
        return GPTConfig(block_size=hf["n_positions"], vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
                         n_head=hf["n_head"], n_embd=hf["n_embd"], dropout=0.0, bias=True,
                         attn_backend=attn_backend)
    except KeyError as e:
        raise CheckpointError(f"HF config lacks {e}: is this a GPT-2 directory?") from None


def load_hf_gpt2(path: str | os.PathLike, device: str | torch.device = "cpu",
                 attn_backend: str = "sdpa") -> GPT:
    path = Path(path)
    config = _config_from_hf(read_json(path / "config.json", "HF config"), attn_backend)
    state = {}
    for k, v in load_state(path / "model.safetensors").items():
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue  # old checkpoints store the causal mask as a buffer
        k = k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k
        state[k] = v.t() if k.endswith(CONV1D) else v
    model = GPT(config)
    check_state(model, state, path / "model.safetensors")
    model.load_state_dict({k: v for k, v in state.items() if k != "lm_head.weight"}, strict=False)
    return model.to(device).eval()


def export_hf_gpt2(model: GPT, path: str | os.PathLike) -> Path:
    """Write `model` as a HF GPT-2 directory that GPT2LMHeadModel.from_pretrained can read."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    if not cfg.bias:
        raise ValueError("HF GPT-2 has biases everywhere; a bias=False model cannot be exported")
    state = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue  # tied to wte; HF re-ties it on load
        v = v.detach().cpu()
        state[k] = (v.t() if k.endswith(CONV1D) else v).contiguous()
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    hf_config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
        "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "tie_word_embeddings": True,
        "bos_token_id": cfg.vocab_size - 1, "eos_token_id": cfg.vocab_size - 1,
    }
    (path / "config.json").write_text(json.dumps(hf_config, indent=2))
    return path
