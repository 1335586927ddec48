"""04_transformer: the model, its KV cache, attention backends, checkpoints and HF interop."""
import json
import math

import pytest
import torch

from transformer import GPT, IGNORE_INDEX, GPTConfig
from transformer.attention import get_backend, register_backend
from transformer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=300, block_size=64, n_layer=2, n_head=4, n_embd=64)
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


def test_init_loss_is_log_vocab():
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=4096, block_size=128, n_layer=4, n_head=4, n_embd=128))
    x = torch.randint(0, 4096, (8, 128))
    y = torch.randint(0, 4096, (8, 128))
    _, loss = model(x, y)
    assert abs(loss.item() - math.log(4096)) / math.log(4096) < 0.01


def test_init_scales_residual_projections():
    model = GPT(GPTConfig(vocab_size=1000, n_layer=8, n_embd=256, n_head=4))
    std = model.transformer.h[0].attn.c_proj.weight.std().item()
    assert abs(std - 0.02 / math.sqrt(16)) < 0.001
    assert abs(model.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.001
    assert model.lm_head.weight is model.transformer.wte.weight


def test_loss_ignores_masked_targets():
    model = tiny()
    x = torch.randint(0, 300, (2, 16))
    y = torch.randint(0, 300, (2, 16))
    y_masked = y.clone()
    y_masked[:, :8] = IGNORE_INDEX
    logits, loss = model(x, y_masked)
    expected = torch.nn.functional.cross_entropy(logits[:, 8:].reshape(-1, 300), y[:, 8:].reshape(-1))
    assert torch.allclose(loss, expected, atol=1e-6)


def test_sdpa_equals_manual():
    sdpa, manual = tiny(attn_backend="sdpa"), tiny(attn_backend="manual")
    x = torch.randint(0, 300, (3, 50))
    assert (sdpa(x)[0] - manual(x)[0]).abs().max() < 1e-5


def test_registered_backend_is_used():
    calls = []

    def spy(q, k, v, is_causal):
        calls.append(q.shape)
        return get_backend("manual")(q, k, v, is_causal)

    register_backend("spy", spy)
    model = tiny(attn_backend="spy")
    model(torch.randint(0, 300, (1, 10)))
    assert calls == [(1, 4, 10, 16)] * 2
    with pytest.raises(ValueError, match="unknown attention backend"):
        tiny(attn_backend="nope")(torch.zeros(1, 2, dtype=torch.long))


@pytest.mark.parametrize("backend", ["sdpa", "manual"])
def test_kv_cache_prefill_then_decode_matches_full_forward(backend):
    model = tiny(attn_backend=backend)
    x = torch.randint(0, 300, (2, 60))
    full, _ = model(x)
    cache = model.new_kv_cache(2)
    outs = [model(x[:, :10], kv_cache=cache)[0]]
    for t in range(10, 60):  # 50 decode steps
        outs.append(model(x[:, t:t + 1], kv_cache=cache)[0])
    assert (torch.cat(outs, 1) - full).abs().max() < 1e-5
    assert cache.lengths.tolist() == [60, 60]


def test_kv_cache_chunked_prefill_matches_full_forward():
    model = tiny()
    x = torch.randint(0, 300, (3, 64))
    full, _ = model(x)
    cache = model.new_kv_cache(3)
    chunks = [model(x[:, a:b], kv_cache=cache)[0] for a, b in [(0, 7), (7, 30), (30, 31), (31, 64)]]
    assert (torch.cat(chunks, 1) - full).abs().max() < 1e-5


def test_kv_cache_rows_with_different_lengths():
    model = tiny()
    x = torch.randint(0, 300, (3, 40))
    full, _ = model(x)
    cache = model.new_kv_cache(3)
    for row, n in enumerate([5, 17, 1]):  # each row prefilled alone into its own slot
        model(x[row:row + 1, :n], kv_cache=cache, rows=slice(row, row + 1))
    step = torch.stack([x[0, 5:8], x[1, 17:20], x[2, 1:4]])  # then 3 tokens for all rows at once
    out, _ = model(step, kv_cache=cache)
    for row, n in enumerate([5, 17, 1]):
        assert (out[row] - full[row, n:n + 3]).abs().max() < 1e-5
    cache.reset(slice(1, 2))  # a freed slot takes a new sequence
    out, _ = model(x[2:3, :12], kv_cache=cache, rows=slice(1, 2))
    assert (out[0] - full[2, :12]).abs().max() < 1e-5


def test_batched_prefill_of_different_lengths_equals_one_at_a_time():
    """GPT.prefill right-pads prompts into one forward: each row's last-token logits, its length and
    the decode steps after it are what a full forward over that row alone gives."""
    model = tiny()
    x = torch.randint(0, 300, (4, 40))
    full, _ = model(x)
    cache = model.new_kv_cache(4)
    model(x[:1, :9], kv_cache=cache, rows=slice(0, 1))  # row 0 is busy with another sequence
    lens = [5, 30, 1]
    with torch.no_grad():
        last = model.prefill([x[1 + i, :n].tolist() for i, n in enumerate(lens)], cache, first_row=1)
    assert last.shape == (3, 300) and cache.lengths.tolist() == [9] + lens
    for i, n in enumerate(lens):
        assert (last[i] - full[1 + i, n - 1]).abs().max() < 1e-5
    step = torch.stack([x[0, 9:11]] + [x[1 + i, n:n + 2] for i, n in enumerate(lens)])
    out, _ = model(step, kv_cache=cache)  # padding keys past a row's length are never read
    for row, n in enumerate([9] + lens):
        assert (out[row] - full[row, n:n + 2]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="must exist in the cache and be empty"):
        model.prefill([[1, 2]], cache, first_row=2)
    with pytest.raises(ValueError, match="no empty prompt"):
        model.prefill([[]], model.new_kv_cache(1))
    with pytest.raises(ValueError, match="does not fit"):
        model.prefill([[1] * 65], model.new_kv_cache(1))


def test_kv_cache_errors_past_block_size_and_reports_memory():
    model = tiny()
    cache = model.new_kv_cache(2)
    cfg = model.config
    assert cache.nbytes == 2 * cfg.n_layer * 2 * cfg.block_size * cfg.n_embd * 4
    model(torch.zeros(2, 60, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="max_len=64"):
        model(torch.zeros(2, 5, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_generate_greedy_equals_argmax_of_full_forward():
    model = tiny()
    x = torch.randint(0, 300, (2, 5))
    out = model.generate(x, 10, temperature=0)
    seq = x
    for _ in range(10):
        seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq)


def test_optimizer_decays_only_2d_weights():
    opt = tiny().configure_optimizer(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0


# ---------- checkpoints ----------

def test_checkpoint_round_trip(tmp_path):
    model = tiny()
    save_checkpoint(tmp_path / "ck", model, {"stage": "base", "step": 3})
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert meta["stage"] == "base" and meta["step"] == 3 and "time" in meta
    x = torch.randint(0, 300, (1, 20))
    assert torch.equal(model(x)[0], loaded(x)[0])
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    save_checkpoint(tmp_path / "ck", model, {"step": 4})  # overwriting is atomic too
    assert load_checkpoint(tmp_path / "ck")[1]["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp dirs left behind


def test_broken_checkpoints_name_the_problem(tmp_path):
    model = tiny()
    ck = save_checkpoint(tmp_path / "ck", model, {})
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    weights = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(ck)
    (ck / "model.safetensors").write_bytes(weights)
    cfg = json.loads((ck / "config.json").read_text())
    (ck / "config.json").write_text(json.dumps({**cfg, "n_embd": 32}))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(ck)
    (ck / "config.json").write_text(json.dumps({**cfg, "flux": 1}))
    with pytest.raises(CheckpointError, match="not a valid GPTConfig"):
        load_checkpoint(ck)
    (ck / "config.json").write_bytes(b"\xff{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(ck)
    (ck / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(ck)


def test_learned_loss_equals_the_full_forward_loss_and_gradient():
    """learned_loss projects to the vocabulary only where targets count: same loss, same gradients."""
    torch.manual_seed(0)
    a, b = tiny(), tiny()
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 300, (3, 20))
    y = torch.randint(0, 300, (3, 20))
    y[0, :12] = IGNORE_INDEX
    y[1, 5:9] = IGNORE_INDEX
    y[2, -1] = IGNORE_INDEX
    _, full = a(x, y)
    sparse = b.learned_loss(x, y)
    assert torch.allclose(full, sparse, atol=1e-6)
    full.backward()
    sparse.backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), name
    with pytest.raises(ValueError, match="block_size"):
        a.learned_loss(torch.zeros(1, a.config.block_size + 1, dtype=torch.long),
                       torch.zeros(1, a.config.block_size + 1, dtype=torch.long))
